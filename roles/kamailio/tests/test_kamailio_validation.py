"""Bad inventory input stops the kamailio role in its validation step, with a message naming the fix.

Runs the real role against localhost with --tags kamailio_validate: only the argument specs and
tasks/validate.yml run, so nothing on this machine is touched.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kamailio_role import run_playbook

GOOD = {
    "kamailio_provider_networks": ["198.51.100.7"],
    "kamailio_provider_host": "198.51.100.7",
    "kamailio_boxes": [{"name": "pbx1", "address": "10.0.0.11"}, {"name": "pbx2", "address": "10.0.0.12"}],
}


def validate(tmp_path: Path, **extra: Any) -> tuple[int, str]:
    result = run_playbook("validate.yml", {**GOOD, **extra}, tmp_path, "--tags", "kamailio_validate")
    return result.returncode, " ".join((result.stdout + result.stderr).split())


def test_good_input_is_accepted(tmp_path):
    rc, out = validate(tmp_path)
    assert rc == 0, out
    assert "kamailio input accepted" in out


@pytest.mark.parametrize("networks", [[], ["sip.provider.example"], ["198.51.100.0/33"]])
def test_the_provider_networks_must_be_addresses(tmp_path, networks):
    rc, out = validate(tmp_path, kamailio_provider_networks=networks)
    assert rc != 0
    assert "kamailio_provider_networks must list the addresses or CIDR ranges" in out
    assert "asterisk_sip_trunk.provider_networks" in out
    assert "kamailio input accepted" not in out


def test_no_box_is_refused(tmp_path):
    rc, out = validate(tmp_path, kamailio_boxes=[])
    assert rc != 0
    assert "put at least one box in that group" in out


@pytest.mark.parametrize(
    "boxes",
    [
        [{"name": "pbx1", "address": "10.0.0.11"}, {"name": "pbx1", "address": "10.0.0.12"}],
        [{"name": "pbx1", "address": "10.0.0.11"}, {"name": "pbx2", "address": "10.0.0.11"}],
        [{"name": "pbx 1", "address": "10.0.0.11"}],
        [{"name": "pbx1", "address": "10.0.0.11;lr"}],
        [{"name": "pbx1", "address": "10.0.0.11", "max_calls": -1}],
    ],
    ids=["same-name", "same-address", "space-in-name", "uri-params", "negative-max-calls"],
)
def test_bad_boxes_are_refused_naming_the_list(tmp_path, boxes):
    rc, out = validate(tmp_path, kamailio_boxes=boxes)
    assert rc != 0
    assert "kamailio_boxes must list each box once" in out
    assert "kamailio input accepted" not in out


def test_a_box_without_an_address_is_refused_by_the_argument_specs(tmp_path):
    rc, out = validate(tmp_path, kamailio_boxes=[{"name": "pbx1"}])
    assert rc != 0
    assert "address" in out
    assert "kamailio input accepted" not in out


@pytest.mark.parametrize(
    "extra",
    [
        {"kamailio_probe_interval": 0},
        {"kamailio_probe_timeout": 0},
        {"kamailio_probe_timeout": 6, "kamailio_probe_interval": 5},
        {"kamailio_box_timeout_ms": 70000},
        {"kamailio_flood_requests": 0},
    ],
)
def test_bad_timing_is_refused(tmp_path, extra):
    rc, out = validate(tmp_path, **extra)
    assert rc != 0
    assert "Invalid timing" in out


def test_advertise_needs_listen_addresses(tmp_path):
    rc, out = validate(tmp_path, kamailio_advertise_address="203.0.113.50")
    assert rc != 0
    assert "kamailio_advertise_address" in out
    assert "needs them" in out


def test_an_unknown_algorithm_is_refused_by_the_argument_specs(tmp_path):
    rc, out = validate(tmp_path, kamailio_dispatcher_algorithm="least-cost")
    assert rc != 0
    assert "kamailio_dispatcher_algorithm" in out
    assert "call-load" in out
