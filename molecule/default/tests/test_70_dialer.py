"""The outbound dialer as deployed: a campaign dials SIPp customers' phones through the trunk.

SIPp plays the phones behind the provider (files/sipp/customer_phones.xml on the trunk's address): numbers
ending in 9001 are busy, 9002 never answer, the others answer with a person's voice. People answered reach
the assistant (AMD, then the Stasis app), and the fake Realtime server records a promise to pay with the
dialer's tool. The dialer is killed mid-campaign and restarted by systemd: nobody is dialled twice.
"""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime

import pytest
from conftest import BOX, SIPP_DIR, dialer_query
from prometheus_client.parser import text_string_to_metric_families

testinfra_hosts = [f"podman://{BOX}"]

IN_CAMPAIGN = "JOIN campaigns c ON c.id = t.campaign_id AND c.name = 'molecula'"
CUSTOMERS = {  # customer id -> number as the file writes it; answered unless the number says otherwise
    "M1": "+5215550071003",  # Mexico's retired mobile "1" after +52, as old billing exports still have it
    "M2": "+52 1 555 007 2003",
    "M3": "5550073003",  # national: DIALER_COUNTRY_CODE=52
    "M4": "+525550079001",  # busy
    "M5": "525550079002",  # no answer; the country code already in a national number
}
# What the dialer dials: each number in E.164 as libphonenumber writes it.
DIALLED = ["+525550071003", "+525550072003", "+525550073003", "+525550079001", "+525550079002"]


@pytest.fixture(scope="module")
def campaign(host):
    assert host.service("openai-outbound-calls").is_running
    # The phones: one SIPp instance answers every call of the campaign.
    host.run("pkill -x sipp")
    host.check_output(
        f"cd {SIPP_DIR} && (timeout 240 sipp -sf customer_phones.xml -i 127.0.0.1 -p 5070 -m 50 "
        "-nostdin > /tmp/phones.out 2>&1 &)"
    )
    log_start = int(host.check_output("stat -c %s /var/log/asterisk/full"))
    # Each customer in a zone where it is about noon now: the calling window (and its end margin) never depends on
    # the hour the test runs at. Without a zone the dialer checks every zone the number may be in.
    zone = f"Etc/GMT{-(12 - datetime.now(UTC).hour):+d}" if datetime.now(UTC).hour != 12 else "Etc/GMT"
    rows = "".join(f"{cid},Cliente {cid},{number},250.00,2026-10-31,{zone}\n" for cid, number in CUSTOMERS.items())
    host.check_output(f"printf 'id_cliente,nombre,telefono,monto,vencimiento,zona_horaria\\n{rows}' > /tmp/morosos.csv")
    imported = host.run("centralita campaign import /tmp/morosos.csv --campaign molecula")
    assert imported.rc == 0, imported.stderr
    assert host.run("centralita campaign start molecula").rc == 0
    # Kill the dialer as soon as its first calls are out; systemd starts it again.
    deadline = time.monotonic() + 60
    while (
        time.monotonic() < deadline
        and not dialer_query(
            host,
            f"SELECT count(*) FROM attempts a JOIN targets t ON t.id = a.target_id {IN_CAMPAIGN} "
            "WHERE a.dialed_at IS NOT NULL",
        )[0][0]
    ):
        time.sleep(0.5)
    old_pid = host.service("openai-outbound-calls").systemd_properties["MainPID"]
    host.check_output("systemctl kill --signal=SIGKILL openai-outbound-calls")
    deadline = time.monotonic() + 200
    while time.monotonic() < deadline:
        open_attempts = dialer_query(
            host,
            f"SELECT count(*) FROM attempts a JOIN targets t ON t.id = a.target_id {IN_CAMPAIGN} "
            "WHERE a.ended_at IS NULL",
        )[0][0]
        dialled = dialer_query(
            host,
            f"SELECT count(DISTINCT a.target_id) FROM attempts a JOIN targets t ON t.id = a.target_id {IN_CAMPAIGN}",
        )[0][0]
        if dialled == len(CUSTOMERS) and open_attempts == 0:
            break
        time.sleep(2)
    new_pid = host.service("openai-outbound-calls").systemd_properties["MainPID"]
    time.sleep(2)
    host.run("pkill -x sipp")
    return {
        "old_pid": old_pid,
        "new_pid": new_pid,
        "status": host.check_output("centralita campaign status molecula"),
        "asterisk_log": host.check_output(f"tail -c +{log_start + 1} /var/log/asterisk/full"),
    }


def test_every_customer_is_dialled_exactly_once_despite_the_crash(host, campaign):
    assert campaign["new_pid"] not in (campaign["old_pid"], "0")  # systemd restarted the killed dialer
    per_customer = dialer_query(
        host,
        f"SELECT t.customer_id, count(a.id) FROM targets t LEFT JOIN attempts a ON a.target_id = t.id {IN_CAMPAIGN} "
        "GROUP BY t.customer_id",
    )
    assert dict(per_customer) == dict.fromkeys(CUSTOMERS, 1), campaign["status"]
    # What Asterisk really dialled through the trunk: each number once.
    dialled = re.findall(r"dial\.c: Called (\+?\d+)@", campaign["asterisk_log"])
    assert sorted(dialled) == DIALLED


def test_outcomes_are_recorded(host, campaign):
    results = dict(
        dialer_query(
            host, f"SELECT t.customer_id, a.outcome FROM attempts a JOIN targets t ON t.id = a.target_id {IN_CAMPAIGN}"
        )
    )
    assert results["M4"] == "busy", campaign["status"]
    assert results["M5"] == "no-answer", campaign["status"]
    # People who answered talked with the assistant, which recorded their promise to pay through its tool.
    promises = dialer_query(
        host,
        "SELECT count(*) FROM outcomes o JOIN attempts a ON a.id = o.attempt_id JOIN targets t ON t.id = a.target_id "
        f"{IN_CAMPAIGN} WHERE o.outcome = 'promise-to-pay' AND o.source = 'assistant'",
    )
    assert promises[0][0] >= 2, campaign["status"]
    assert dialer_query(host, "SELECT count(*) FROM attempts WHERE ended_at IS NULL")[0][0] == 0  # none left open


def test_the_concurrency_cap_is_never_exceeded(host, campaign):
    spans = dialer_query(
        host,
        f"SELECT a.dialed_at, a.ended_at FROM attempts a JOIN targets t ON t.id = a.target_id {IN_CAMPAIGN} "
        "WHERE a.dialed_at IS NOT NULL",
    )
    moments = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    live = peak = 0
    for _moment, step in moments:
        live += step
        peak = max(peak, live)
    assert 1 <= peak <= 2  # bridge_dialer_max_concurrent in the scenario's inventory


def test_answered_calls_are_in_the_call_records_as_outbound(host, campaign):
    script = (
        "import json; from centralita.storage.records import CallRecords; "
        "print(json.dumps(CallRecords('/var/lib/centralita/centralita.db').recent_calls(50)))"
    )
    calls = json.loads(host.check_output(f'/usr/local/asterisk/venv/bin/python -c "{script}"'))
    # An outbound call's record names its campaign, and the customer's number as the number called.
    outbound = [call for call in calls if call["direction"] == "outbound" and call["campaign"] == "molecula"]
    assert len(outbound) >= 2
    numbers = {row[0] for row in dialer_query(host, f"SELECT t.phone FROM targets t {IN_CAMPAIGN}")}
    assert {call["callee"] for call in outbound} <= numbers


def test_the_dialers_metrics_carry_the_campaign(host, campaign):
    """openai-outbound-calls serves its metrics on loopback (bridge_dialer_metrics_port), read from the campaign
    database: the campaign's attempts are there by result, across the killed dialer and its successor."""
    # The restarted dialer may still be starting: wait for its endpoint.
    deadline = time.monotonic() + 60
    while host.run("curl -sf -m 5 -o /dev/null http://127.0.0.1:9465/metrics").rc != 0 and time.monotonic() < deadline:
        time.sleep(0.5)
    listening = [line.split()[3] for line in host.check_output("ss -Hltn 'sport = :9465'").splitlines()]
    assert listening == ["127.0.0.1:9465"], listening
    text = host.check_output("curl -sf -m 10 http://127.0.0.1:9465/metrics")
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    by_result = {
        dict(labels)["result"]: value
        for (name, labels), value in samples.items()
        if name == "centralita_dialer_attempts_total"
    }
    # The whole database's ended attempts, by outcome: what the metrics must say.
    stored = dict(dialer_query(host, "SELECT outcome, count(*) FROM attempts WHERE state = 'ended' GROUP BY outcome"))
    assert {result: count for result, count in by_result.items() if count} == stored, campaign["status"]
    assert by_result["busy"] >= 1, by_result
    assert by_result["no-answer"] >= 1, by_result
    promised = dialer_query(host, "SELECT count(*) FROM attempts WHERE outcome = 'promise-to-pay'")[0][0]
    assert samples[("centralita_dialer_promises_to_pay_total", ())] == promised
    assert samples[("centralita_dialer_active_calls", ())] == 0
    assert samples[("centralita_dialer_database_up", ())] == 1
    states = {
        dict(labels)["state"]: v for (name, labels), v in samples.items() if name == "centralita_dialer_campaigns"
    }
    assert sum(states.values()) == dialer_query(host, "SELECT count(*) FROM campaigns")[0][0]
    assert states["running"] + states["finished"] >= 1, states  # molecula
