"""Re-running the playbook: reload instead of restart, and ownership put back after root edits.

These tests change the box, so they run last (file order) and leave it as converge made it.
"""

from __future__ import annotations

import pytest
from conftest import BOX, run_playbook

testinfra_hosts = [f"podman://{BOX}"]


def asterisk_main_pid(host) -> str:
    return host.check_output("systemctl show -p MainPID --value asterisk")


def test_dialplan_change_reloads_without_restarting_asterisk(host):
    """A dialplan setting changed the way the operator's guide says: the Asterisk part of the playbook only."""
    pid_before = asterisk_main_pid(host)
    changed = run_playbook("-e", "asterisk_operator_timeout=17", "--tags", "asterisk")
    assert changed.returncode == 0, changed.stdout[-3000:]
    assert "RUNNING HANDLER [asterisk : Reload asterisk dialplan]" in changed.stdout
    assert "RUNNING HANDLER [asterisk : Restart asterisk]" not in changed.stdout
    assert asterisk_main_pid(host) == pid_before
    globals_out = host.check_output("asterisk -rx 'dialplan show globals'")
    assert "CENTRALITA_OPERATOR_TIMEOUT=17" in globals_out


@pytest.fixture(scope="module")
def tampered_rerun(host):
    """One re-run of the playbook on a box that root, Asterisk's user and the operator have each tampered with:
    root-edited files in /etc/asterisk, a link planted there by Asterisk's user, a venv the operator partly owns
    (a box from before the venv was root's), and the operator's old git checkout of the app directory. One run
    for all (a playbook run is the slow part); each test below checks what it must have put right."""
    host.run_expect([0], "chown root:root /etc/asterisk/pjsip_trunk.conf /etc/asterisk/extensions.conf")
    host.run_expect([0], "install -o root -g root -m 0600 /dev/null /etc/asterisk/created-by-root.conf")
    # Asterisk's user could plant a link in its directory: the rerun must not hand over what it points to.
    host.run_expect([0], "ln -s /etc/centralita/ari-password /etc/asterisk/planted-link.conf")
    host.run_expect([0], "chown -h asterisk:asterisk /etc/asterisk/planted-link.conf")
    host.run_expect([0], "chown -R soporte /usr/local/asterisk/venv/bin")
    host.run_expect([0], "install -o soporte -m 0755 /dev/null /usr/local/asterisk/venv/bin/planted-by-operator")
    host.run_expect(
        [0], "sudo -u soporte git init -q /tmp/operator-repo && mv /tmp/operator-repo/.git /usr/local/asterisk/"
    )
    try:
        rerun = run_playbook()
        assert rerun.returncode == 0, rerun.stdout[-3000:]
        yield rerun
    finally:
        host.run("rm -f /etc/asterisk/created-by-root.conf /etc/asterisk/planted-link.conf")
        host.run("rm -rf /usr/local/asterisk/.git /tmp/operator-repo")
        host.run("sudo -u soporte git config --global --unset-all safe.directory")


def test_rerun_gives_root_edited_files_back_to_asterisk(host, tampered_rerun):
    for name in ("pjsip_trunk.conf", "extensions.conf", "created-by-root.conf"):
        f = host.file(f"/etc/asterisk/{name}")
        assert (f.user, f.group) == ("asterisk", "asterisk"), name
    assert host.file("/etc/asterisk/pjsip_trunk.conf").mode == 0o640
    out = host.check_output("asterisk -rx 'pjsip show endpoints'")
    assert "Endpoint:  provider" in out
    globals_out = host.check_output("asterisk -rx 'dialplan show globals'")
    assert "CENTRALITA_OPERATOR_TIMEOUT=30" in globals_out
    secret = host.file("/etc/centralita/ari-password")
    assert (secret.user, secret.group, secret.mode) == ("root", "root", 0o600)


def test_rerun_rebuilds_a_venv_the_operator_could_change(host, tampered_rerun):
    """The rerun does not chown the operator's part of the venv (root would then run what the operator may have
    put there): it removes it and installs it again, root's."""
    assert "TASK [bridge : Remove a venv and wheelhouse someone else could change]" in tampered_rerun.stdout
    assert not host.file("/usr/local/asterisk/venv/bin/planted-by-operator").exists
    stray = host.check_output("find /usr/local/asterisk/venv ! -user root -print")
    assert stray == ""
    assert host.service("openai-inbound-calls").is_running
    assert "centralita" in host.check_output("asterisk -rx 'ari show apps'").split()


def test_the_operators_old_checkout_of_the_app_directory_is_trusted_by_their_git_only(host, tampered_rerun):
    """A checkout of the whole app directory from an older setup: the directory is root's now, so git refuses it
    ("dubious ownership") until the operator's own git trusts it. Root's git must not: it would run the
    operator's hooks as root."""
    assert host.run("sudo -u soporte git -C /usr/local/asterisk status --short").rc == 0
    assert "/usr/local/asterisk" in host.check_output("sudo -u soporte git config --global --get-all safe.directory")
    assert host.run("git config --global --get-all safe.directory").stdout.strip() == ""
    assert host.run("git config --system --get-all safe.directory").stdout.strip() == ""
    refused = host.run("git -C /usr/local/asterisk status")
    assert refused.rc != 0
    assert "dubious ownership" in refused.stderr
