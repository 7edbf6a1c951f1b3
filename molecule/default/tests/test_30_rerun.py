"""Re-running the playbook: reload instead of restart, and ownership put back after root edits.

These tests change the box, so they run last (file order) and leave it as converge made it.
"""

from __future__ import annotations

from conftest import BOX, run_playbook

testinfra_hosts = [f"podman://{BOX}"]


def asterisk_main_pid(host) -> str:
    return host.check_output("systemctl show -p MainPID --value asterisk")


def test_dialplan_change_reloads_without_restarting_asterisk(host):
    pid_before = asterisk_main_pid(host)
    changed = run_playbook("-e", "asterisk_operator_timeout=17")
    assert changed.returncode == 0, changed.stdout[-3000:]
    assert "RUNNING HANDLER [asterisk : Reload asterisk dialplan]" in changed.stdout
    assert "RUNNING HANDLER [asterisk : Restart asterisk]" not in changed.stdout
    assert asterisk_main_pid(host) == pid_before
    globals_out = host.check_output("asterisk -rx 'dialplan show globals'")
    assert "CENTRALITA_OPERATOR_TIMEOUT=17" in globals_out


def test_rerun_gives_root_edited_files_back_to_asterisk(host):
    host.run_expect([0], "chown root:root /etc/asterisk/pjsip_trunk.conf /etc/asterisk/extensions.conf")
    host.run_expect([0], "install -o root -g root -m 0600 /dev/null /etc/asterisk/created-by-root.conf")
    # The guide's git problem: root created files in the operator's app directory.
    host.run_expect([0], "install -o root -g root -m 0644 /dev/null /usr/local/asterisk/notes-by-root.txt")
    try:
        rerun = run_playbook()
        assert rerun.returncode == 0, rerun.stdout[-3000:]
        for name in ("pjsip_trunk.conf", "extensions.conf", "created-by-root.conf"):
            f = host.file(f"/etc/asterisk/{name}")
            assert (f.user, f.group) == ("asterisk", "asterisk"), name
        assert host.file("/etc/asterisk/pjsip_trunk.conf").mode == 0o640
        out = host.check_output("asterisk -rx 'pjsip show endpoints'")
        assert "Endpoint:  provider" in out
        globals_out = host.check_output("asterisk -rx 'dialplan show globals'")
        assert "CENTRALITA_OPERATOR_TIMEOUT=30" in globals_out
        assert host.file("/usr/local/asterisk/notes-by-root.txt").user == "soporte"
    finally:
        host.run("rm -f /etc/asterisk/created-by-root.conf /usr/local/asterisk/notes-by-root.txt")
