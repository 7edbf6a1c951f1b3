"""Live SIP calls: SIPp plays the VoIP provider, and a stranger, inside the box."""

from __future__ import annotations

import re

import pytest
from conftest import BOX, log_since, log_size, sipp

testinfra_hosts = [f"podman://{BOX}"]


def test_provider_call_to_the_echo_extension_is_answered(host):
    before = log_size(host)
    result = sipp(host, "provider_call.xml", "6000", extra="-d 2000")
    assert result.rc == 0, result.output
    assert result.successful_calls == 1
    log = log_since(host, before)
    # Answered after the box's call limit let it in (the echo test counts as a call from the trunk).
    assert re.search(r"Executing \[6000@from-voip:\d+\] Answer\(", log), log
    assert "Echo(" in log


@pytest.mark.usefixtures("assistant_stopped")
def test_call_without_the_assistant_is_answered_and_sent_to_the_operator(host):
    # The assistant's service is down: Stasis fails, the caller is answered and hears a Spanish prompt
    # instead of a dead line, and the log says why.
    before = log_size(host)
    result = sipp(host, "provider_call_box_hangs_up.xml", "5215550002222", timeout_s=60)
    assert result.rc == 0, result.output
    log = log_since(host, before)
    assert "Stasis(" in log
    assert "centralita,inbound,5215550002222" in log
    assert "the assistant cannot take the call from 5215550001111 (stasis_app_not_connected)" in log
    assert "Playback(" in log
    assert "centralita/asistente-no-disponible" in log
    assert "tt-allbusy" in log
    assert "Playback failed" not in log


def test_call_from_an_address_that_is_not_the_provider_is_refused(host):
    before = log_size(host)
    result = sipp(host, "stranger_call.xml", "5215550002222", source="127.0.0.2", port=5071, timeout_s=10)
    assert result.rc == 0, result.output  # the scenario only passes on 403 Forbidden
    log = log_since(host, before)
    assert "Incoming SIP message from 127.0.0.2" in log
    assert "did not pass ACL" in log
    assert "Executing [5215550002222@from-voip" not in log


@pytest.mark.usefixtures("assistant_stopped")
def test_caller_input_is_filtered(host):
    # A dialled number carrying dial-string characters reaches the assistant stripped to digits.
    before = log_size(host)
    result = sipp(host, "provider_call_box_hangs_up.xml", "5215550002222&PJSIP/evil", timeout_s=60)
    assert result.rc == 0, result.output
    stasis_lines = [line for line in log_since(host, before).splitlines() if "Stasis(" in line]
    # One Stasis() per worker the dialplan tried (bridge_workers; the assistant is stopped, so each one fails),
    # the first one worker 1's app, each with the DID stripped to digits.
    assert 1 <= len(stasis_lines) <= 2, stasis_lines
    assert '"centralita,inbound,5215550002222")' in stasis_lines[0]
    for line in stasis_lines:
        assert re.search(r'"centralita(-2)?,inbound,5215550002222"\)', line), line
