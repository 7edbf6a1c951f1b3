"""Asterisk restarted during a call, and the whole box rebooted: Asterisk's own unit brings it back fully booted,
the bridge waits for ARI without filling its log with errors, and the next call is answered."""

from __future__ import annotations

import subprocess

from conftest import (
    BOX,
    BRIDGE_LOG,
    app_registered,
    fully_booted,
    log_since,
    log_size,
    sipp,
    sipp_in_background,
    wait_until,
)

testinfra_hosts = [f"podman://{BOX}"]


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if " ERROR " in line or " CRITICAL " in line]


def test_a_restart_during_a_call_brings_asterisk_back_and_the_next_call_is_answered(host):
    bridge_before = log_size(host, BRIDGE_LOG)
    pid_before = host.service("asterisk").systemd_properties["MainPID"]
    # A long echo call, in the background, up while Asterisk restarts.
    with sipp_in_background(
        host,
        "-sf provider_call.xml -s 6000 127.0.0.1:5060 -i 127.0.0.1 -p 5073 -m 1 -d 60000 -timeout 90s",
        "long-call",
    ):
        assert wait_until(lambda: "1 active call" in host.run("asterisk -rx 'core show channels count'").stdout, 30)
        host.run_expect([0], "systemctl restart asterisk")
        assert wait_until(lambda: fully_booted(host), 90)
        props = host.service("asterisk").systemd_properties
        assert props["ActiveState"] == "active"
        assert props["SubState"] == "running"  # not "exited": a real daemon, watched by systemd
        assert props["MainPID"] != pid_before
        assert wait_until(lambda: app_registered(host), 60)  # the bridge reconnected to ARI
        result = sipp(host, "provider_call.xml", "6000", extra="-d 1000")
        assert result.rc == 0, result.output
        assert result.successful_calls == 1
    bridge_log = log_since(host, bridge_before, BRIDGE_LOG)
    assert "ARI events connection lost" in bridge_log
    assert "ARI connected: app centralita is ready for calls" in bridge_log
    assert error_lines(bridge_log) == []


def test_after_a_reboot_everything_comes_back_and_the_bridge_log_has_no_errors(host):
    # The box restarts (the container: systemd boots again). Asterisk's unit is Type=notify, so the bridge
    # (After=asterisk.service) starts once ARI answers; whatever the order, it waits quietly.
    bridge_before = log_size(host, BRIDGE_LOG)
    subprocess.run(["podman", "restart", "--time", "30", BOX], check=True, capture_output=True, timeout=120)
    assert wait_until(lambda: host.run("systemctl is-system-running").stdout.strip() in ("running", "degraded"), 120)
    assert wait_until(lambda: fully_booted(host), 90)
    assert host.service("asterisk").is_running
    assert host.file("/run/asterisk").is_directory  # made by systemd for the asterisk user (RuntimeDirectory)
    assert wait_until(lambda: app_registered(host), 90)
    assert host.service("openai-inbound-calls").is_running
    assert host.service("openai-outbound-calls").is_running
    bridge_log = log_since(host, bridge_before, BRIDGE_LOG)
    assert "ARI connected: app centralita is ready for calls" in bridge_log
    assert error_lines(bridge_log) == []
    assert "still unreachable" not in bridge_log
    result = sipp(host, "provider_call.xml", "6000", extra="-d 1000")
    assert result.rc == 0, result.output
    assert result.successful_calls == 1
