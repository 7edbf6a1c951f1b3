"""Re-running the playbook on the chan_sip box. Runs last: it leaves the trunk qualified (towards a SIPp provider
that is not there any more), which no later call must depend on.

* An operator dial string of the other SIP driver is refused before anything changes.
* The box as an ISP migrating its old box would run it: asterisk_install_method: existing on the Asterisk 20
  just built (no build; chan_sip chosen by itself). A run that must restart Asterisk during a call waits until
  Asterisk is fully booted again (the restart handler), and a changed qualify_seconds reaches sip.conf and the
  running peer.
"""

from __future__ import annotations

import json

from conftest import BOX, fully_booted, run_playbook, sipp, sipp_in_background, wait_until

testinfra_hosts = [f"podman://{BOX}"]

TRUNK = {
    "name": "provider",
    "host": "127.0.0.1",
    "port": 5070,
    "username": "centralita-test",
    "secret": "not;a-real-secret",
    "register": False,
    "codecs": ["ulaw", "alaw"],
    "context": "from-voip",
    "provider_networks": ["127.0.0.1/32", "127.0.0.64/28"],
    "qualify_seconds": 25,
}


def test_a_pjsip_operator_dial_string_is_refused_on_chan_sip(host):
    mtime = host.check_output("stat -c %Y /etc/asterisk/extensions.conf")
    refused = run_playbook("-e", "asterisk_operator_dial=PJSIP/5215550009999@provider")
    assert refused.returncode != 0
    text = " ".join((refused.stdout + refused.stderr).split())
    assert "asterisk_operator_dial 'PJSIP/5215550009999@provider' dials through PJSIP" in text
    assert "SIP/operator or SIP/provider/5551234567" in text
    assert host.check_output("stat -c %Y /etc/asterisk/extensions.conf") == mtime  # nothing was changed


def test_existing_asterisk_20_rerun_restarts_during_a_call_waits_for_it_and_qualify_reaches_the_peer(host):
    pid_before = host.service("asterisk").systemd_properties["MainPID"]
    # A file the role does not render, edited as root (amd.conf, from the build's samples): the run gives it back
    # to asterisk and restarts Asterisk (Asterisk may have declined to read it), during the call.
    host.run_expect([0], "chown root:root /etc/asterisk/amd.conf")
    with sipp_in_background(
        host,
        "-sf provider_call.xml -s 6000 127.0.0.1:5060 -i 127.0.0.1 -p 5074 -m 1 -d 120000 -timeout 150s",
        "rerun-call",
    ):
        assert wait_until(lambda: "1 active call" in host.run("asterisk -rx 'core show channels count'").stdout, 30)
        rerun = run_playbook("-e", json.dumps({"asterisk_install_method": "existing", "asterisk_sip_trunk": TRUNK}))
    assert rerun.returncode == 0, rerun.stdout[-4000:]
    # The task's outcome line (a timing callback may print a line between the header and the outcome).
    after_compile = rerun.stdout.split("TASK [asterisk : Compile", 1)[1].splitlines()[1:]
    outcome = next(line for line in after_compile if line.startswith(("ok:", "changed:", "skipping:", "fatal:")))
    assert outcome.startswith("skipping:")  # existing: nothing is built
    restart = rerun.stdout.index("RUNNING HANDLER [asterisk : Restart asterisk]")
    waited = rerun.stdout.index("RUNNING HANDLER [asterisk : Wait for Asterisk after the restart]")
    assert restart < waited
    assert "Wait for Asterisk to be fully booted" in rerun.stdout[waited:]
    assert host.service("asterisk").systemd_properties["MainPID"] != pid_before
    assert fully_booted(host)
    amd = host.file("/etc/asterisk/amd.conf")
    assert (amd.user, amd.group) == ("asterisk", "asterisk")
    assert "qualifyfreq=25" in host.file("/etc/asterisk/sip.conf").content_string
    peer = host.check_output("asterisk -rx 'sip show peer provider'")
    assert "Qualify Freq : 25000 ms" in peer
    # The next call is answered by the restarted Asterisk (from another port than the trunk's 5070, which the
    # qualify OPTIONS now go to).
    result = sipp(host, "provider_call.xml", "6000", port=5075, extra="-d 1000")
    assert result.rc == 0, result.output
    assert result.successful_calls == 1
