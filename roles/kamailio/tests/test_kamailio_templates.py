"""The kamailio role's configuration rendered by real Ansible: the ACL, the flood limit, the dispatcher set.

Kamailio itself checks the rendered kamailio.cfg (``kamailio -c``, the template's ``validate:``) when the role
runs in the Molecule scenario ``cluster``, which also places the calls; these tests pin what the variables do.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from kamailio_role import modparams, route_block, run_playbook

BOXES = [
    {"name": "pbx1", "address": "10.0.0.11", "port": 5060, "max_calls": 40},
    {"name": "pbx2", "address": "10.0.0.12", "port": 5080, "max_calls": 0},
    {"name": "pbx3", "address": "fd00::13", "transport": "tcp"},
]
PROVIDER = {
    "kamailio_provider_networks": ["198.51.100.7", "203.0.113.0/28", "2001:db8::5"],
    "kamailio_provider_host": "198.51.100.7",
    "kamailio_provider_port": 5070,
}


def render(tmp_path: Path, **overrides: object) -> dict[str, str]:
    extra = {"render_dir": str(tmp_path), "kamailio_boxes": BOXES, **PROVIDER, **overrides}
    result = run_playbook("render.yml", extra, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    return {name: (tmp_path / name).read_text() for name in ("kamailio.cfg", "dispatcher.list")}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return render(tmp_path_factory.mktemp("kamailio"))


def dispatcher_lines(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines() if line and not line.startswith("#")]


def test_both_files_carry_the_managed_header(files):
    assert files["kamailio.cfg"].startswith("#!KAMAILIO\n#\n# Ansible managed")
    assert files["dispatcher.list"].startswith("#\n# Ansible managed")


def test_the_dispatcher_set_lists_every_box_in_the_inventory_order(files):
    lines = dispatcher_lines(files["dispatcher.list"])
    assert lines == [
        ["1", "sip:10.0.0.11:5060", "0", "3", "duid=pbx1;maxload=40"],
        ["1", "sip:10.0.0.12:5080", "0", "2", "duid=pbx2;maxload=0"],
        ["1", "sip:[fd00::13]:5060;transport=tcp", "0", "1", "duid=pbx3;maxload=0"],
    ]


def test_only_the_provider_networks_are_admitted(files):
    classify = route_block(files["kamailio.cfg"], "route[CLASSIFY]")
    assert "if (src_ip == 198.51.100.7/32) {" in classify
    assert "if (src_ip == 203.0.113.0/28) {" in classify
    assert "if (src_ip == 2001:db8::5/128) {" in classify
    # The boxes are recognised by the dispatcher set; anyone else is refused with 403 and counted.
    assert 'ds_is_from_list("1", "3")' in classify
    assert 'sl_send_reply("403", "Forbidden");' in classify
    assert 'update_stat("centralita:refused_requests", "+1");' in classify


def test_floods_are_limited_with_the_variables(tmp_path):
    cfg = render(tmp_path, kamailio_flood_requests=15, kamailio_flood_seconds=3, kamailio_ban_seconds=90)[
        "kamailio.cfg"
    ]
    pike = modparams(cfg, "pike")
    assert pike["sampling_time_unit"] == ["3"]
    assert pike["reqs_density_per_unit"] == ["15"]
    assert "banned=>size=10;autoexpire=90;" in modparams(cfg, "htable")["htable"]
    classify = route_block(cfg, "route[CLASSIFY]")
    assert classify.count("pike_check_req()") == 2
    assert 'sl_send_reply("503", "Rate Limited");' in classify
    assert 'update_stat("centralita:flood_limited", "+1");' in classify


def test_probing_uses_the_variables(tmp_path):
    cfg = render(
        tmp_path,
        kamailio_probe_interval=7,
        kamailio_probe_timeout=3,
        kamailio_probe_failures=3,
        kamailio_probe_successes=2,
    )["kamailio.cfg"]
    ds = modparams(cfg, "dispatcher")
    assert ds["ds_ping_method"] == ["OPTIONS"]
    assert ds["ds_ping_interval"] == ["7"]
    assert ds["ds_ping_fr_timer"] == ["3"]
    assert ds["ds_probing_threshold"] == ["3"]
    assert ds["ds_inactive_threshold"] == ["2"]
    assert ds["ds_probing_mode"] == ["1"]
    assert ds["list_file"] == ["/etc/kamailio/dispatcher.list"]


def test_calls_record_the_route_and_fail_over_on_timeout_408_and_5xx(files):
    cfg = files["kamailio.cfg"]
    to_box = route_block(cfg, "route[TO_BOX]")
    assert "record_route();" in to_box
    branch = route_block(cfg, "route[BOX_BRANCH]")
    assert "t_set_fr(60000, 2000);" in branch
    assert 't_on_failure("NEXT_BOX");' in branch
    failure = route_block(cfg, "failure_route[NEXT_BOX]")
    assert 't_check_status("408|5[0-9][0-9]")' in failure
    assert "t_branch_timeout() && !t_branch_replied()" in failure
    assert "ds_next_dst()" in failure
    assert 't_reply("503", "No Centralita Box Available");' in failure
    assert 'sl_send_reply("503", "No Centralita Box Available");' in route_block(cfg, "route[NO_BOX]")


def test_the_default_algorithm_is_call_load_falling_back_to_round_robin(files):
    to_box = route_block(files["kamailio.cfg"], "route[TO_BOX]")
    assert 'ds_select_dst("1", "10")' in to_box
    assert 'ds_select_dst("1", "4")' in to_box
    ds = modparams(files["kamailio.cfg"], "dispatcher")
    assert ds["ds_hash_initexpire"] == ["120"]
    assert ds["ds_hash_expire"] == ["14400"]


@pytest.mark.parametrize(
    ("algorithm", "number"), [("round-robin", "4"), ("random", "6"), ("priority", "8"), ("hash-caller", "1")]
)
def test_other_algorithms_select_by_their_number(tmp_path, algorithm, number):
    to_box = route_block(render(tmp_path, kamailio_dispatcher_algorithm=algorithm)["kamailio.cfg"], "route[TO_BOX]")
    assert f'ds_select_dst("1", "{number}")' in to_box
    assert '"10"' not in to_box


def test_outbound_calls_from_the_boxes_go_to_the_provider(files):
    to_provider = route_block(files["kamailio.cfg"], "route[TO_PROVIDER]")
    assert '$du = "sip:198.51.100.7:5070";' in to_provider
    assert "record_route();" in to_provider


def test_listen_addresses_and_advertise(tmp_path, files):
    assert "listen=" not in files["kamailio.cfg"]
    assert "disable_tcp=yes" in files["kamailio.cfg"]
    cfg = render(
        tmp_path,
        kamailio_listen_addresses=["10.0.0.10", "192.0.2.10"],
        kamailio_advertise_address="203.0.113.50",
        kamailio_sip_transports=["udp", "tcp"],
    )["kamailio.cfg"]
    assert "listen=udp:10.0.0.10:5060 advertise 203.0.113.50:5060" in cfg
    assert "listen=tcp:192.0.2.10:5060 advertise 203.0.113.50:5060" in cfg
    assert "disable_tcp=yes" not in cfg
    assert "mhomed=1" in cfg
