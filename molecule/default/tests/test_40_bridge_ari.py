"""The bridge's ARI client against the box's real Asterisk (bridge/integration, run inside the box).

Runs last: one of those tests restarts Asterisk to prove the events connection comes back.
"""

from __future__ import annotations

from conftest import BOX

testinfra_hosts = [f"podman://{BOX}"]


def test_bridge_ari_integration_suite_passes_inside_the_box(host):
    result = host.run("cd /opt/centralita-test && venv/bin/python -m pytest -q -p no:cacheprovider integration 2>&1")
    print(result.stdout)
    assert result.rc == 0, result.stdout[-4000:]
    assert " passed" in result.stdout
    assert "skipped" not in result.stdout
