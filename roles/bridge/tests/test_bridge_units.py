"""The bridge role's systemd units rendered by real Ansible: every unit carries the one shared sandbox, with
what differs per unit (writable paths, network, IP filter) right; the commands and paths they run.

The units are verified by systemd itself, and their scores measured, on the box (Molecule's test_80).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from bridge_role import parse_unit, values
from env_support import HERE, run_playbook

TEMPLATES = HERE.parent / "templates"
SERVICES = [
    "openai-inbound-calls.service",
    "openai-outbound-calls.service",
    "centralita-fake-realtime.service",
    "centralita-fake-routeros.service",
    "centralita-records-purge.service",
    "centralita-web.service",
]
# The sandbox every unit must have, exactly (systemd-sandbox.j2); network and writable paths vary per unit.
SANDBOX = {
    "NoNewPrivileges": "yes",
    "CapabilityBoundingSet": "",
    "AmbientCapabilities": "",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "DevicePolicy": "closed",
    "PrivateMounts": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "ProtectClock": "yes",
    "ProtectHostname": "yes",
    "ProtectProc": "invisible",
    "ProcSubset": "pid",
    "RestrictNamespaces": "yes",
    "RestrictSUIDSGID": "yes",
    "RestrictRealtime": "yes",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "RemoveIPC": "yes",
    "KeyringMode": "private",
    "SystemCallArchitectures": "native",
    "SystemCallErrorNumber": "EPERM",
    "UMask": "0027",
    "InaccessiblePaths": "-/etc/asterisk -/etc/centralita",
}
LAB = {"bridge_fake_realtime": True, "bridge_fake_routeros": True}
PRODUCTION = {
    "bridge_fake_realtime": False,
    "bridge_fake_routeros": False,
    "bridge_routers": [
        {"name": "nucleo", "host": "192.0.2.1", "user": "centralita", "password": "x"},
        {"name": "borde", "host": "borde.isp.example", "user": "centralita", "password": "y"},
    ],
}


def render(tmp_path: Path, **overrides: object) -> dict[str, str]:
    result = run_playbook("render.yml", {"render_dir": str(tmp_path), **overrides}, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    return {path.name: path.read_text() for path in tmp_path.iterdir() if path.name != "vars.json"}


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return render(tmp_path_factory.mktemp("lab"), **LAB)


@pytest.fixture(scope="module")
def production(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return render(tmp_path_factory.mktemp("production"), **PRODUCTION)


def service(units: dict[str, str], name: str) -> list[tuple[str, str]]:
    return parse_unit(units[name])["Service"]


def test_every_unit_renders_with_the_managed_header(lab: dict[str, str]) -> None:
    assert set(lab) == {
        *SERVICES,
        "centralita-records-purge.timer",
        "centralita-doctor.service",
        "centralita-doctor.timer",
        "logrotate",
    }
    for name, text in lab.items():
        assert text.startswith("#\n# Ansible managed"), name


@pytest.mark.parametrize("name", SERVICES)
def test_every_service_has_the_whole_sandbox(lab: dict[str, str], production: dict[str, str], name: str) -> None:
    for units in (lab, production):
        pairs = service(units, name)
        for key, value in SANDBOX.items():
            assert values(pairs, key) == [value], f"{name}: {key}"
        assert values(pairs, "SystemCallFilter") == ["@system-service", "~@privileged @resources"]
        user = "centralita-web" if name == "centralita-web.service" else "centralita"
        assert values(pairs, "User") == [user]
        assert values(pairs, "Group") == [user]


def test_the_sandbox_has_one_source() -> None:
    """The unit templates include systemd-sandbox.j2 and repeat none of its directives."""
    directives = {*SANDBOX, "SystemCallFilter", "RestrictAddressFamilies", "IPAddressDeny", "ReadWritePaths"}
    for template in sorted(TEMPLATES.glob("*.service.j2")):
        if template.name == "centralita-doctor.service.j2":
            continue  # root's, as an operator runs it: test_the_doctor_runs_as_root_and_writes_only_its_report
        text = template.read_text()
        assert "{% include 'systemd-sandbox.j2' %}" in text, template.name
        repeated = [line for line in text.splitlines() if line.split("=", 1)[0] in directives]
        assert repeated == [], template.name


def test_exec_start_paths_follow_the_app_directory(tmp_path: Path) -> None:
    units = render(tmp_path, bridge_app_dir="/opt/centralita", bridge_db_path="/srv/records/centralita.db", **LAB)
    app = "/opt/centralita"
    assert values(service(units, "openai-inbound-calls.service"), "ExecStart") == [
        f"{app}/venv/bin/openai-inbound-calls --env-file {app}/.env --prompt {app}/prompts/asistente_entrante.es.txt"
        f" --outbound-prompt {app}/prompts/asistente_cobranza.es.txt"
    ]
    assert values(service(units, "openai-outbound-calls.service"), "ExecStart") == [
        f"{app}/venv/bin/openai-outbound-calls --env-file {app}/.env"
    ]
    assert values(service(units, "centralita-records-purge.service"), "ExecStart") == [
        f"{app}/venv/bin/centralita records purge --db /srv/records/centralita.db --older-than-days 90"
    ]
    for name in ("centralita-fake-realtime.service", "centralita-fake-routeros.service"):
        (command,) = values(service(units, name), "ExecStart")
        assert command.startswith(f"{app}/venv/bin/python -m centralita_testing."), name
        assert "--host 127.0.0.1" in command
    # A database outside the state directory is made writable for the services that use it.
    assert "/srv/records" in values(service(units, "openai-inbound-calls.service"), "ReadWritePaths")
    assert values(service(units, "centralita-records-purge.service"), "ReadWritePaths") == ["/srv/records"]


def test_both_services_share_a_run_directory_for_their_health_snapshots(lab: dict[str, str]) -> None:
    for name in ("openai-inbound-calls.service", "openai-outbound-calls.service"):
        pairs = service(lab, name)
        assert values(pairs, "RuntimeDirectory") == ["centralita"], name
        assert values(pairs, "RuntimeDirectoryPreserve") == ["yes"], name  # one stopping keeps the other's


def test_services_write_their_log_directory_not_the_file(lab: dict[str, str]) -> None:
    """A file made writable alone is a bind mount of that file: after logrotate's rename the service would go on
    writing the rotated one, or nothing."""
    assert values(service(lab, "openai-inbound-calls.service"), "ReadWritePaths") == ["/var/log/asterisk"]
    assert values(service(lab, "openai-outbound-calls.service"), "ReadWritePaths") == [
        "/var/log/asterisk",
        "-/var/spool/centralita/campaign-requests",  # it deletes the console's requests once applied
    ]
    for name in ("centralita-fake-realtime.service", "centralita-fake-routeros.service"):
        assert values(service(lab, name), "ReadWritePaths") == [], name


def test_network_and_ip_filter_per_unit(lab: dict[str, str], production: dict[str, str]) -> None:
    internet = ["AF_UNIX AF_INET AF_INET6"]
    for units in (lab, production):
        purge = service(units, "centralita-records-purge.service")
        assert values(purge, "PrivateNetwork") == ["yes"]
        assert values(purge, "RestrictAddressFamilies") == ["AF_UNIX"]
        assert values(purge, "IPAddressDeny") == ["any"]
        assert values(purge, "IPAddressAllow") == []
        outbound = service(units, "openai-outbound-calls.service")  # ARI on the loopback only
        assert values(outbound, "RestrictAddressFamilies") == internet
        assert (values(outbound, "IPAddressDeny"), values(outbound, "IPAddressAllow")) == (["any"], ["localhost"])
        for name in ("centralita-fake-realtime.service", "centralita-fake-routeros.service"):
            fake = service(units, name)
            assert (values(fake, "IPAddressDeny"), values(fake, "IPAddressAllow")) == (["any"], ["localhost"])
    # With the fakes every peer of the inbound service is on the loopback; with the real API nobody knows its
    # addresses, so there is no filter unless the inventory lists them.
    inbound = service(lab, "openai-inbound-calls.service")
    assert (values(inbound, "IPAddressDeny"), values(inbound, "IPAddressAllow")) == (["any"], ["localhost"])
    inbound = service(production, "openai-inbound-calls.service")
    assert values(inbound, "RestrictAddressFamilies") == internet
    assert (values(inbound, "IPAddressDeny"), values(inbound, "IPAddressAllow")) == ([], [])


def test_listing_the_remote_peers_turns_the_inbound_filter_on(tmp_path: Path) -> None:
    units = render(tmp_path, bridge_inbound_ip_allow=["203.0.113.0/24", "2001:db8::/32"], **PRODUCTION)
    inbound = service(units, "openai-inbound-calls.service")
    assert values(inbound, "IPAddressDeny") == ["any"]
    # The routers given by address are added; a router given by name must be listed by the inventory.
    assert values(inbound, "IPAddressAllow") == ["localhost 203.0.113.0/24 2001:db8::/32 192.0.2.1"]


def test_a_remote_ari_lifts_the_dialers_filter(tmp_path: Path) -> None:
    units = render(tmp_path, bridge_ari_url="http://10.0.0.5:8088", **LAB)
    outbound = service(units, "openai-outbound-calls.service")
    assert values(outbound, "IPAddressDeny") == []
    inbound = service(units, "openai-inbound-calls.service")
    assert values(inbound, "IPAddressDeny") == []


def test_the_asterisk_unit_name_comes_from_a_variable(tmp_path: Path) -> None:
    units = render(tmp_path, bridge_asterisk_service="asterisk22", bridge_asterisk_config_dir="/opt/ast/etc", **LAB)
    assert "asterisk22.service" in values(parse_unit(units["openai-inbound-calls.service"])["Unit"], "After")[0]
    assert values(service(units, "openai-inbound-calls.service"), "InaccessiblePaths") == [
        "-/opt/ast/etc -/etc/centralita"
    ]


def test_the_purge_timer_and_its_schedule(tmp_path: Path) -> None:
    units = render(tmp_path, bridge_records_retention_days=30, bridge_records_purge_schedule="*-*-* 04:00:00", **LAB)
    timer = parse_unit(units["centralita-records-purge.timer"])
    assert values(timer["Timer"], "OnCalendar") == ["*-*-* 04:00:00"]
    assert values(timer["Timer"], "Persistent") == ["true"]
    assert values(timer["Install"], "WantedBy") == ["timers.target"]
    purge = service(units, "centralita-records-purge.service")
    assert values(purge, "Type") == ["oneshot"]
    assert values(purge, "ExecStart")[0].endswith("--older-than-days 30")


def test_the_doctor_runs_as_root_and_writes_only_its_report(lab: dict[str, str]) -> None:
    doctor = service(lab, "centralita-doctor.service")
    assert values(doctor, "User") == ["root"]
    assert values(doctor, "Type") == ["oneshot"]
    assert values(doctor, "ExecStart") == [
        "/usr/local/asterisk/venv/bin/centralita doctor --output /var/lib/centralita-doctor/doctor.json"
    ]
    assert values(doctor, "ProtectSystem") == ["strict"]
    assert values(doctor, "ReadWritePaths") == ["/var/lib/centralita-doctor"]
    assert values(doctor, "SuccessExitStatus") == ["1"]  # a FAIL in the report is not a failed unit
    timer = parse_unit(lab["centralita-doctor.timer"])
    assert values(timer["Timer"], "OnUnitActiveSec") == ["10min"]
    web = dict(value.split("=", 1) for value in values(service(lab, "centralita-web.service"), "Environment"))
    assert web["DOCTOR_REPORT_PATH"] == "/var/lib/centralita-doctor/doctor.json"


def test_logrotate_creates_the_log_for_the_service_in_asteriskss_group(tmp_path: Path) -> None:
    units = render(tmp_path, bridge_asterisk_group="voip", **LAB)
    text = units["logrotate"]
    assert "/var/log/asterisk/inbound_openai.log /var/log/asterisk/outbound_openai.log {" in text
    assert re.search(r"^\s+create 0640 centralita voip$", text, re.MULTILINE)


def _offline_score(path: Path) -> float | None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        return None
    result = subprocess.run(
        [analyze, "security", "--offline=yes", "--no-pager", str(path)], capture_output=True, text=True, check=False
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    return float(match.group(1)) if match else None


@pytest.mark.parametrize("name", SERVICES)
def test_this_machines_systemd_rates_every_unit_1_5_or_less(
    production: dict[str, str], tmp_path: Path, name: str
) -> None:
    """A quick look with this machine's systemd-analyze (the authoritative score is the box's, test_80)."""
    path = tmp_path / name
    path.write_text(production[name])
    score = _offline_score(path)
    if score is None:
        pytest.skip("this machine's systemd-analyze cannot rate unit files offline (systemd 250 or newer can)")
    assert score <= 1.5, name


def test_the_console_runs_as_its_own_user_on_loopback_and_reads_through_the_service_group(
    lab: dict[str, str],
) -> None:
    web = service(lab, "centralita-web.service")
    assert values(web, "SupplementaryGroups") == ["centralita centralita-recordings"]  # and the call recordings
    assert values(web, "IPAddressAllow") == ["localhost"]
    assert values(web, "IPAddressDeny") == ["any"]
    assert values(web, "StateDirectory") == ["centralita-web"]
    environment = dict(value.split("=", 1) for value in values(web, "Environment"))
    assert environment["WEB_LISTEN"] == "127.0.0.1"
    assert environment["WEB_PORT"] == "8090"
    assert environment["DB_PATH"] == "/var/lib/centralita/centralita.db"
    assert environment["RECORDINGS_DIR"] == "/var/spool/centralita/recordings"
    # The state directory (file permissions keep the campaign store read-only) and the campaign requests' spool.
    assert values(web, "ReadWritePaths") == ["/var/lib/centralita", "/var/spool/centralita/campaign-requests"]
    assert environment["CAMPAIGN_REQUESTS_DIR"] == "/var/spool/centralita/campaign-requests"
    assert not any(".env" in value for value in values(web, "ExecStart"))


def test_the_console_is_given_the_dialers_settings_to_check_an_import(tmp_path: Path) -> None:
    units = render(tmp_path, bridge_dialer_country_code="52", bridge_dialer_campaigns=["norte-", "sur-"], **LAB)
    web = values(service(units, "centralita-web.service"), "Environment")
    assert "DIALER_COUNTRY_CODE=52" in web
    assert "DIALER_TIMEZONE=America/Mexico_City" in web
    assert '"DIALER_CAMPAIGNS=norte-,sur-"' in web
    assert not any(value.startswith("WEB_TLS_") for value in web)  # plain HTTP on loopback by default


def test_a_console_beyond_loopback_serves_https_from_the_roles_files_to_the_allowed_clients(tmp_path: Path) -> None:
    tls = {
        "bridge_web_listen": "0.0.0.0",
        "bridge_web_tls_certificate": "-----BEGIN CERTIFICATE-----\nMII\n-----END CERTIFICATE-----",
        "bridge_web_tls_key": "-----BEGIN PRIVATE KEY-----\nMII\n-----END PRIVATE KEY-----",
    }
    (tmp_path / "any").mkdir()
    web = service(render(tmp_path / "any", **tls, **LAB), "centralita-web.service")
    environment = dict(value.split("=", 1) for value in values(web, "Environment"))
    assert environment["WEB_LISTEN"] == "0.0.0.0"
    assert environment["WEB_TLS_CERT"] == "/etc/centralita-web/console.crt"
    assert environment["WEB_TLS_KEY"] == "/etc/centralita-web/console.key"
    assert values(web, "IPAddressAllow") == ["localhost any"]
    (tmp_path / "lan").mkdir()
    web = service(
        render(tmp_path / "lan", bridge_web_allow_from=["192.0.2.0/24"], **tls, **LAB), "centralita-web.service"
    )
    assert values(web, "IPAddressAllow") == ["localhost 192.0.2.0/24"]
    assert values(web, "IPAddressDeny") == ["any"]


def test_with_workers_the_unit_lets_its_supervisor_stop_them(tmp_path: Path, lab: dict[str, str]) -> None:
    # One process: the unit as it always was; its main process is the service itself.
    assert values(service(lab, "openai-inbound-calls.service"), "KillMode") == []
    units = render(tmp_path, bridge_workers=3, **LAB)
    pairs = service(units, "openai-inbound-calls.service")
    # systemd signals the supervisor alone; it stops each worker (each hands its callers over), and what is left
    # after the timeout is killed. The command is the same: the .env's WORKERS makes it a supervisor.
    assert values(pairs, "KillMode") == ["mixed"]
    assert values(pairs, "ExecStart") == values(service(lab, "openai-inbound-calls.service"), "ExecStart")
    assert values(pairs, "Restart") == ["on-failure"]
