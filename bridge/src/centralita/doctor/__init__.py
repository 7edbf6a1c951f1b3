"""``centralita doctor``: checks the box end to end and says, for each problem, the command that fixes it.

One module per job:

* ``model``: a check's result (OK / WARN / FAIL, what was seen, the fix) and the repair ``--fix`` may run;
* ``commands``, ``probes``: the outside world the checks read (``asterisk -rx``, ``systemctl``, DNS, routes),
  each one replaceable so the tests run without Asterisk or systemd;
* ``context``: the inputs of one run (paths, timeouts, the probes) and the ``.env`` as read;
* ``sipconf``: what the Asterisk files say (SIP driver, trunk host, registration, inbound context);
* ``envfile``, ``asterisk``, ``system``, ``health``, ``apis``, ``network``: the checks themselves (``health``
  reads the running service's health snapshot);
* ``fixes``: the safe repairs (owners and modes, starting a stopped service);
* ``runner``: the checks in order, and the ``--fix`` pass; ``report``: text and JSON output;
* ``cli``: the ``doctor`` subcommand.
"""
