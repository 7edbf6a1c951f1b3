"""Live SIP calls into chan_sip: SIPp plays the provider (from its server and from inside one of its ranges), a
caller while the assistant is down (the failover notice must be heard to its end), and a stranger."""

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
    assert re.search(r"Executing \[6000@from-voip:\d+\] Answer\(", log), log  # after the call limit let it in
    assert "Echo(" in log
    assert '"SIP/provider-' in log  # the call came in on the trunk's own peer


def test_provider_call_from_inside_a_range_reaches_from_voip(host):
    # 127.0.0.70 is in provider_networks 127.0.0.64/28: chan_sip must match it to a provider peer (before, a range
    # was only permitted, no peer matched, and the call got 401).
    before = log_size(host)
    result = sipp(host, "provider_call.xml", "6000", source="127.0.0.70", port=5072, extra="-d 1000")
    assert result.rc == 0, result.output
    assert result.successful_calls == 1
    log = log_since(host, before)
    assert re.search(r"Executing \[6000@from-voip:\d+\] Answer\(", log), log  # after the call limit let it in
    assert "Failed to authenticate" not in log


@pytest.mark.usefixtures("assistant_stopped")
def test_call_without_the_assistant_hears_the_whole_notice_then_the_operator_prompt(host):
    # The failover notice lives in /var/lib/asterisk/sounds on a source build: it must play to its end (the
    # dialplan only goes on to the operator context after Playback returns), with no "Playback failed".
    before = log_size(host)
    result = sipp(host, "provider_call_box_hangs_up.xml", "5215550002222", timeout_s=60)
    assert result.rc == 0, result.output
    log = log_since(host, before)
    assert "centralita,inbound,5215550002222" in log
    assert "the assistant cannot take the call from 5215550001111 (stasis_app_not_connected)" in log
    lines = log.splitlines()
    notice = next(i for i, line in enumerate(lines) if 'Playback("SIP/' in line and "asistente-no-disponible" in line)
    playing = next(i for i, line in enumerate(lines) if "Playing 'centralita/asistente-no-disponible.ulaw'" in line)
    operator = next(i for i, line in enumerate(lines) if "Executing [s@centralita-operator:1]" in line)
    allbusy = next(i for i, line in enumerate(lines) if "Playing 'tt-allbusy.gsm' (language 'es')" in line)
    assert notice < playing < operator < allbusy
    assert "Playback failed" not in log
    assert "Unable to open" not in log


def test_a_stranger_is_challenged_then_refused(host):
    # chan_sip (allowguest=no, alwaysauthreject=yes): 401 to an unknown address whatever user it names, then 403
    # to its guessed credentials; it never reaches a dialplan. PJSIP answers 403 at once (scenario default).
    before = log_size(host)
    result = sipp(host, "stranger_call_chan_sip.xml", "5215550002222", source="127.0.0.2", port=5071, timeout_s=15)
    assert result.rc == 0, result.output  # the scenario only passes on 401 then 403
    log = log_since(host, before)
    assert "from-voip" not in log
    assert "Failed to authenticate device" in log
    security = host.check_output("tail -n 50 /var/log/asterisk/security")
    assert "127.0.0.2" in security
