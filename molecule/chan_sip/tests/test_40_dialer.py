"""The outbound dialer on chan_sip: a campaign dials SIPp customers' phones through SIP/provider/<number>.

SIPp plays the phones behind the provider (files/sipp/customer_phones.xml on the trunk's address): a number ending
in 9001 is busy, the others answer with a person's voice, pass AMD and talk with the assistant (the fake Realtime
server records a promise to pay). Before the dial string followed the SIP driver, every call failed with
"No channel type registered for 'PJSIP'".
"""

from __future__ import annotations

import re
import time

import pytest
from conftest import BOX, FULL_LOG, dialer_query, log_since, log_size, sipp_in_background, wait_until

testinfra_hosts = [f"podman://{BOX}"]

# Customers and numbers of their own on every run: the calling rules (one dial per number and day) must not see
# an earlier run's campaign when the tests run again on the same box.
RUN = f"{1000 + int(time.time()) % 9000}"
CAMPAIGN = f"viejo{RUN}"
IN_CAMPAIGN = f"JOIN campaigns c ON c.id = t.campaign_id AND c.name = '{CAMPAIGN}'"
CUSTOMERS = {  # customer id -> number; the phone answers unless the number ends in 9001 (busy)
    f"V{RUN}-1": f"+5255{RUN}1003",  # Mexico City numbers: +52 55 and eight digits
    f"V{RUN}-2": f"+5255{RUN}2003",
    f"V{RUN}-3": f"+5255{RUN}9001",
}
BUSY = f"V{RUN}-3"


@pytest.fixture(scope="module")
def campaign(host):
    assert host.service("openai-outbound-calls").is_running
    start = log_size(host)
    dialer_start = log_size(host, "/var/log/asterisk/outbound_openai.log")
    rows = "".join(f"{cid},Cliente {cid},{number},250.00,2026-10-31\n" for cid, number in CUSTOMERS.items())
    host.check_output(f"printf 'id_cliente,nombre,telefono,monto,vencimiento\\n{rows}' > /tmp/{CAMPAIGN}.csv")

    def done() -> bool:
        open_attempts = dialer_query(host, "SELECT count(*) FROM attempts WHERE ended_at IS NULL")[0][0]
        dialled = dialer_query(
            host,
            f"SELECT count(DISTINCT a.target_id) FROM attempts a JOIN targets t ON t.id = a.target_id {IN_CAMPAIGN}",
        )[0][0]
        return dialled == len(CUSTOMERS) and open_attempts == 0

    # The phones: one SIPp instance on the trunk's address answers every call of the campaign.
    with sipp_in_background(host, "-sf customer_phones.xml -i 127.0.0.1 -p 5070 -m 20", "phones"):
        imported = host.run(f"centralita campaign import /tmp/{CAMPAIGN}.csv --campaign {CAMPAIGN}")
        assert imported.rc == 0, imported.stderr
        assert host.run(f"centralita campaign start {CAMPAIGN}").rc == 0
        finished = wait_until(done, 180, 2)
    return {
        "finished": finished,
        "status": host.check_output(f"centralita campaign status {CAMPAIGN}"),
        "asterisk_log": log_since(host, start, FULL_LOG),
        "dialer_log": log_since(host, dialer_start, "/var/log/asterisk/outbound_openai.log"),
    }


def test_every_customer_is_dialled_once_through_chan_sip(host, campaign):
    assert campaign["finished"], campaign["status"]
    dialled = re.findall(r"dial\.c: Called provider/(\+\d+)", campaign["asterisk_log"])  # chan_sip's device
    assert sorted(dialled) == sorted(CUSTOMERS.values())
    assert "No channel type registered" not in campaign["asterisk_log"] + campaign["dialer_log"]


def test_outcomes_are_recorded(host, campaign):
    results = dict(
        dialer_query(
            host, f"SELECT t.customer_id, a.outcome FROM attempts a JOIN targets t ON t.id = a.target_id {IN_CAMPAIGN}"
        )
    )
    assert results[BUSY] == "busy", campaign["status"]
    promises = dialer_query(
        host,
        "SELECT count(*) FROM outcomes o JOIN attempts a ON a.id = o.attempt_id JOIN targets t ON t.id = a.target_id "
        f"{IN_CAMPAIGN} WHERE o.outcome = 'promise-to-pay' AND o.source = 'assistant'",
    )
    assert promises[0][0] == 2, campaign["status"]  # both people who answered talked with the assistant


def test_answered_calls_went_through_amd_to_the_assistant(host, campaign):
    log = campaign["asterisk_log"]
    assert log.count("Centralita: AMD says HUMAN") == 2
    assert 'Stasis("SIP/provider-' in log
