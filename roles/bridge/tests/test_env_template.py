"""The .env the role renders reads back, through python-dotenv, as exactly the values the inventory gave.

env.j2 is rendered by real Ansible with hostile values in every variable it writes (comment signs, quotes,
$ and ${VAR}, backslashes, spaces at either end, non-ASCII, '='), then read with
``dotenv_values(interpolate=False)``, as the services read it. Line breaks are refused before rendering
(test_env_validation.py).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from dotenv import dotenv_values
from env_support import HERE, render_env

from centralita import cli
from centralita.config.box import load_all
from centralita.config.bridge import MediaEngine
from centralita.config.env import EnvFile

HOSTILE = (
    "#",
    "abc #123",
    "abc#123",
    "'single quoted'",
    '"double quoted"',
    '"starts with a quote',
    "'starts with a single quote",
    'ends with a quote"',
    "it's",
    'say "hola" #1',
    "$",
    "$HOME",
    "${HOME}",
    "${HOME:-/root}",
    "back\\slash",
    "C:\\new\\table",
    "\\n is not a line break",
    "ends with a backslash\\",
    '\\"',
    "\\'",
    "  leading and trailing spaces  ",
    " ",
    "\ttabs\t",
    "ñandú, árbol, ACCIÓN",
    "📞 llamada ☎️",
    "a=b",
    "=",
    "==x==",
    "`uname`",
    "$(id)",
    "; rm -rf /",
    "key=value # comment",
)

# The inventory variable each .env variable is rendered from, one for one.
SCALARS = {
    "OPENAI_API_KEY": "bridge_openai_api_key",
    "OPENAI_BASE_URL": "bridge_openai_base_url",
    "OPENAI_MODEL": "bridge_openai_model",
    "OPENAI_VOICE": "bridge_openai_voice",
    "TRANSCRIPTION_MODEL": "bridge_transcription_model",
    "TRANSCRIPTION_LANGUAGE": "bridge_transcription_language",
    "METRICS_PORT": "bridge_metrics_port",
    "MEDIA_ENGINE": "bridge_media_engine",
    "APPEND_MS": "bridge_append_ms",
    "ARI_URL": "bridge_ari_url",
    "ARI_USER": "bridge_ari_user",
    "ARI_PASSWORD": "bridge_ari_password",
    "ARI_APP": "bridge_ari_app",
    "WS_PING_INTERVAL": "bridge_ws_ping_interval",
    "WS_PING_TIMEOUT": "bridge_ws_ping_timeout",
    "LOG_FILE": "bridge_log_file",
    "DB_PATH": "bridge_db_path",
    "OPERATOR_CONTEXT": "bridge_operator_context",
    "FAILOVER_CONTEXT": "bridge_failover_context",
    "ON_REALTIME_FAILURE": "bridge_on_realtime_failure",
    "MAX_CALLS": "bridge_max_calls",
    "MAX_CALLS_PER_CALLER": "bridge_max_calls_per_caller",
    "MAX_CALLS_PER_CALLER_PER_MINUTE": "bridge_max_calls_per_caller_per_minute",
    "BUDGET_DAILY": "bridge_budget_daily",
    "BUDGET_MONTHLY": "bridge_budget_monthly",
    "APP_OWNER": "bridge_operator_user",
    "ROUTEROS_TIMEOUT": "bridge_routeros_timeout",
    "ROUTEROS_DEBTORS_LIST": "bridge_routeros_debtors_list",
    "ROUTEROS_EXCEPTION_LIST": "bridge_routeros_exception_list",
    "ROUTEROS_EXCEPTION_DAYS": "bridge_routeros_exception_days",
    "ROUTEROS_REACTIVATION_LIMIT": "bridge_routeros_reactivation_limit",
    "ROUTEROS_REACTIVATION_PERIOD": "bridge_routeros_reactivation_period",
    "ROUTEROS_DIRECTORY_TTL": "bridge_routeros_directory_ttl",
    "IDENTITY_PHONE_DIGITS": "bridge_identity_phone_digits",
    "IDENTITY_READ_REQUIRES": "bridge_identity_read_requires",
    "IDENTITY_WRITE_REQUIRES": "bridge_identity_write_requires",
    "IDENTITY_MAX_FAILURES": "bridge_identity_max_failures",
    "IDENTITY_FAILURE_WINDOW": "bridge_identity_failure_window",
    "LOOKUP_MAX_PER_CALL": "bridge_lookup_max_per_call",
    "LOOKUP_MAX_PER_CALLER_HOUR": "bridge_lookup_max_per_caller_hour",
    "CUSTOMER_DIRECTORY": "bridge_customer_directory",
    "DIALER_TIMEZONE": "bridge_dialer_timezone",
    "DIALER_WINDOWS": "bridge_dialer_windows",
    "DIALER_MAX_CONCURRENT": "bridge_dialer_max_concurrent",
    "DIALER_CALLS_PER_MINUTE": "bridge_dialer_calls_per_minute",
    "DIALER_RETRY_INTERVAL": "bridge_dialer_retry_interval",
    "DIALER_COOLDOWN": "bridge_dialer_cooldown",
    "DIALER_CALLER_ID": "bridge_dialer_caller_id",
    "DIALER_COUNTRY_CODE": "bridge_dialer_country_code",
    "DIALER_ON_MACHINE": "bridge_dialer_on_machine",
    "DIALER_RING_TIMEOUT": "bridge_dialer_ring_timeout",
    "DIALER_CONTEXT": "bridge_dialer_context",
    "DIALER_TRUNK": "bridge_dialer_trunk",
    # Rendered from the running Asterisk's SIP driver by the role (tasks/dialer_endpoint.yml), else as given.
    "DIALER_ENDPOINT": "bridge_dialer_endpoint",
    "DIALER_DB_PATH": "bridge_dialer_db_path",
    "DIALER_LOG_FILE": "bridge_dialer_log_file",
    "CAMPAIGN_REQUESTS_DIR": "bridge_campaign_requests_dir",
    "DIALER_METRICS_PORT": "bridge_dialer_metrics_port",
}
ROUTER_FIELDS = {"HOST": "host", "PORT": "port", "USER": "user", "PASSWORD": "password", "CA_FILE": "ca_file"}


def hostile_inventory() -> tuple[dict[str, Any], dict[str, str]]:
    """Inventory variables with a hostile value in every text the template writes, and the .env it means."""
    values = iter(HOSTILE * 3)
    variables: dict[str, Any] = {"bridge_fake_realtime": False, "bridge_fake_routeros": False}
    expected: dict[str, str] = {}
    for env_name, inventory_name in SCALARS.items():
        expected[env_name] = variables[inventory_name] = next(values)
    routers = []
    for name in ("nucleo", "norte"):
        router: dict[str, Any] = {"name": name, "tls": name == "norte"}
        for suffix, field in ROUTER_FIELDS.items():
            expected[f"ROUTEROS_{name.upper()}_{suffix}"] = router[field] = next(values)
        expected[f"ROUTEROS_{name.upper()}_TLS"] = str(router["tls"]).lower()
        routers.append(router)
    variables["bridge_routers"] = routers
    expected["ROUTEROS_ROUTERS"] = "nucleo,norte"
    variables["bridge_dialer_holidays"] = [next(values)]
    expected["DIALER_HOLIDAYS"] = variables["bridge_dialer_holidays"][0]
    variables["bridge_dialer_campaigns"] = [next(values)]
    expected["DIALER_CAMPAIGNS"] = variables["bridge_dialer_campaigns"][0]
    variables["bridge_routeros_writes"] = True
    expected["ROUTEROS_WRITES"] = "true"
    variables["bridge_identity_caller_id"] = False
    expected["IDENTITY_CALLER_ID"] = "false"
    variables["bridge_identity_factors"] = [next(values), next(values)]
    expected["IDENTITY_FACTORS"] = ",".join(variables["bridge_identity_factors"])
    return variables, expected


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    variables, expected = hostile_inventory()
    return render_env(tmp_path_factory.mktemp("hostile"), variables), expected


def test_every_hostile_value_is_used() -> None:
    _variables, expected = hostile_inventory()
    assert set(HOSTILE) <= set(expected.values())


def test_every_value_reads_back_exactly(hostile: tuple[Path, dict[str, str]]) -> None:
    path, expected = hostile
    read = dotenv_values(path, interpolate=False)
    wrong = {name: (read.get(name), value) for name, value in expected.items() if read.get(name) != value}
    assert not wrong, wrong
    assert set(read) == set(expected), "the template writes a variable this test does not know"


def test_every_line_is_a_comment_or_a_quoted_value(hostile: tuple[Path, dict[str, str]]) -> None:
    path, _expected = hostile
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("#")  # ansible_managed
    for line in lines:
        assert line.startswith("#") or re.fullmatch(r'[A-Z][A-Z0-9_]*="(?:\\.|[^"\\])*"', line), line


def test_the_services_reader_gets_what_python_dotenv_gets(hostile: tuple[Path, dict[str, str]]) -> None:
    path, _expected = hostile
    text = path.read_text(encoding="utf-8")
    assert EnvFile.from_text(text).values == dotenv_values(path, interpolate=False)
    assert EnvFile.from_text(text).unparsed_lines == ()


def test_validate_checks_every_value_the_template_writes_for_line_breaks() -> None:
    tasks = yaml.safe_load((HERE.parent / "tasks" / "validate.yml").read_text(encoding="utf-8"))
    checked = {name for task in tasks for name in task.get("vars", {}).get("bridge_env_variables", [])}
    assert set(SCALARS.values()) <= checked


# A valid configuration whose secrets and free texts are hostile: the services read exactly these values.
API_KEY = "sk-\"q'#1 $HOME ${HOME} \\n ñ📞"
ARI_PASSWORD = 'pa"ss #word \\ $(id)'
ROUTER_PASSWORD = "'router' #pw \\\\ ${PATH}"
VALID = {
    "bridge_fake_realtime": False,
    "bridge_fake_routeros": False,
    "bridge_openai_api_key": API_KEY,
    "bridge_ari_password": ARI_PASSWORD,
    "bridge_operator_context": "operador-ñ",
    "bridge_dialer_caller_id": '"ISP Demo #1" <+525550000000>',
    "bridge_dialer_windows": "lun-vie 08:00-19:00; sab 08:00-15:00",
    "bridge_dialer_holidays": ["2026-12-25", "01-01"],
    "bridge_dialer_campaigns": ["norte-", "cortados 2026"],
    "bridge_routers": [{"name": "nucleo", "host": "10.0.0.1", "user": "api #1", "password": ROUTER_PASSWORD}],
}


def test_a_hostile_but_valid_inventory_loads_with_its_exact_values(tmp_path: Path) -> None:
    box = load_all(render_env(tmp_path, VALID), dialer_required=True)
    assert box.bridge.openai_api_key.reveal() == API_KEY
    assert box.bridge.ari_password.reveal() == ARI_PASSWORD
    assert box.bridge.operator_context == "operador-ñ"
    assert box.network.router("nucleo").password.reveal() == ROUTER_PASSWORD
    assert box.network.router("nucleo").user == "api #1"
    assert box.dialer is not None
    assert box.dialer.caller_id == '"ISP Demo #1" <+525550000000>'
    assert len(box.dialer.policy.windows) == 2
    assert box.dialer.campaigns == ("norte-", "cortados 2026")
    # The role's defaults: the caller transcribed in Spanish, metrics on their loopback port.
    assert (box.bridge.transcription.model, box.bridge.transcription.language) == ("whisper-1", "es")
    assert box.bridge.metrics_port == 9464
    assert box.bridge.media_engine is MediaEngine.LOOP


def test_the_media_engine_is_chosen_in_the_inventory(tmp_path: Path) -> None:
    box = load_all(render_env(tmp_path, {**VALID, "bridge_media_engine": "threads"}), dialer_required=True)
    assert box.bridge.media_engine is MediaEngine.THREADS


def test_transcription_and_metrics_can_be_turned_off_from_the_inventory(tmp_path: Path) -> None:
    off = {
        **VALID,
        "bridge_transcription_model": "off",
        "bridge_transcription_language": "auto",
        "bridge_metrics_port": 0,
    }
    box = load_all(render_env(tmp_path, off), dialer_required=True)
    assert (box.bridge.transcription.model, box.bridge.transcription.language) == (None, None)
    assert box.bridge.metrics_port == 0


def test_config_check_accepts_it_and_refuses_a_bad_dialer_setting_by_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "good").mkdir()
    good = render_env(tmp_path / "good", VALID)
    assert cli.main(["config", "check", "--dialer", str(good)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"OK {good}: bridge, 1 router, dialer")
    assert out.count("\n") == 1

    (tmp_path / "bad").mkdir()
    bad = render_env(tmp_path / "bad", {**VALID, "bridge_dialer_windows": "someday 25:00"})
    assert cli.main(["config", "check", "--dialer", str(bad)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "DIALER_WINDOWS is 'someday 25:00', which is wrong ('someday' is not a day" in captured.err
    assert "bridge_dialer_windows" in captured.err
    for secret in (API_KEY, ARI_PASSWORD, ROUTER_PASSWORD):
        assert secret not in captured.err


def test_one_worker_writes_no_worker_setting_and_more_write_their_count_and_ports(tmp_path: Path) -> None:
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    one = render_env(tmp_path / "one", VALID)
    assert "WORKERS" not in one.read_text()  # the .env of a one-process box is what it always was
    assert load_all(one, dialer_required=True).bridge.workers == 1
    two = load_all(render_env(tmp_path / "two", {**VALID, "bridge_workers": 2}), dialer_required=True).bridge
    assert (two.workers, two.worker_metrics_port, two.metrics_port) == (2, 9470, 9464)


@pytest.mark.parametrize(("cores", "workers"), [(1, 1), (2, 1), (4, 3), (8, 7)])
def test_by_default_a_worker_per_core_but_the_one_left_to_asterisk(tmp_path: Path, cores: int, workers: int) -> None:
    # The processor_vcpus fact, as ansible gathers it on the box; the inventory's bridge_workers wins over it.
    facts = {"ansible_facts": {"processor_vcpus": cores}}
    assert load_all(render_env(tmp_path, {**VALID, **facts}), dialer_required=True).bridge.workers == workers
    (tmp_path / "set").mkdir()
    chosen = render_env(tmp_path / "set", {**VALID, **facts, "bridge_workers": 2})
    assert load_all(chosen, dialer_required=True).bridge.workers == 2
