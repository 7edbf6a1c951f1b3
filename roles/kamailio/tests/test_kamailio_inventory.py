"""What the inventory computes for both tiers (playbooks/group_vars/all.yml), with and without a sip_front group.

The real group_vars are used: the test inventory's group_vars directory is a link to the playbooks' one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kamailio_role import PROJECT, run_playbook

TRUNK = {"host": "198.51.100.7", "port": 5080, "provider_networks": ["198.51.100.7", "203.0.113.0/28"]}


def computed(tmp_path: Path, groups: dict[str, Any]) -> dict[str, dict[str, Any]]:
    inventory = tmp_path / "inventory"
    inventory.mkdir()
    (inventory / "group_vars").symlink_to(PROJECT / "playbooks" / "group_vars")
    (inventory / "hosts.yml").write_text(json.dumps({"all": {"children": groups}}))
    out = tmp_path / "out"
    out.mkdir()
    result = run_playbook("inventory_vars.yml", {"render_dir": str(out)}, tmp_path, inventory=str(inventory))
    assert result.returncode == 0, result.stdout + result.stderr
    return {path.stem: json.loads(path.read_text()) for path in out.glob("*.json")}


BOXES = {
    "vars": {"asterisk_sip_trunk": TRUNK},
    "hosts": {
        "pbx1": {"ansible_host": "10.0.0.11", "asterisk_max_calls": 40},
        "pbx2": {"ansible_host": "pbx2.mgmt.example", "centralita_sip_address": "10.0.0.12", "asterisk_sip_port": 5070},
    },
}


def test_without_a_sip_front_the_boxes_face_the_provider(tmp_path):
    found = computed(tmp_path, {"centralita": BOXES})
    assert set(found) == {"pbx1", "pbx2"}
    for box in found.values():
        assert box["asterisk_sip_front"] == []


def test_with_a_sip_front_the_boxes_trust_the_proxies_and_the_proxy_knows_the_boxes(tmp_path):
    front = {"hosts": {"sip1": {"ansible_host": "10.0.0.10"}, "sip2": {"ansible_host": "10.0.0.9"}}}
    found = computed(tmp_path, {"sip_front": front, "centralita": BOXES})
    for name in ("pbx1", "pbx2"):
        assert found[name]["asterisk_sip_front"] == ["10.0.0.10", "10.0.0.9"]
        assert found[name]["asterisk_sip_front_port"] == 5060
    proxy = found["sip1"]
    assert proxy["kamailio_boxes"] == [
        {"name": "pbx1", "address": "10.0.0.11", "port": 5060, "max_calls": 40},
        {"name": "pbx2", "address": "10.0.0.12", "port": 5070, "max_calls": 0},
    ]
    assert proxy["kamailio_provider_networks"] == ["198.51.100.7", "203.0.113.0/28"]
    assert proxy["kamailio_provider_host"] == "198.51.100.7"
    assert proxy["kamailio_provider_port"] == 5080


def test_the_proxy_port_set_on_the_front_reaches_the_boxes(tmp_path):
    front = {"hosts": {"sip1": {"ansible_host": "10.0.0.10", "kamailio_sip_port": 5090}}}
    found = computed(tmp_path, {"sip_front": front, "centralita": BOXES})
    assert found["pbx1"]["asterisk_sip_front_port"] == 5090
