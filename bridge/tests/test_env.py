"""The box's one .env: read once, by one reader, every part's problems in one error; ``centralita config check``.

The parts' own rules are test_config.py's (bridge), test_dialer_settings.py's and test_network_tools.py's;
here: the file, the shared ``EnvReader`` and its message shape, ``load_all``, and that every program reads
the file exactly once.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from dotenv import dotenv_values
from unprivileged import error_as_unprivileged

from centralita import cli
from centralita.calls import service as inbound_service
from centralita.config import box
from centralita.config.box import Part, load_all
from centralita.config.env import (
    DEFAULT_ENV_FILE,
    ConfigError,
    EnvFile,
    EnvReader,
    is_loopback_host,
    read_env_file,
    redact_url,
    redact_urls,
)
from centralita.dialer import cli as dialer_cli

API_KEY = "sk-test-0123456789abcdef"
ARI_PASSWORD = "ari-pass-fedcba9876"
ROUTER_PASSWORD = "router-pass-13579"
REQUIRED = f"OPENAI_API_KEY={API_KEY}\nARI_PASSWORD={ARI_PASSWORD}\n"


def write_env(tmp_path: Path, text: str, name: str = ".env") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(tmp_path: Path, text: str, *, dialer_required: bool = False) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_all(write_env(tmp_path, text), dialer_required=dialer_required)
    return caught.value


# ---- the file ----------------------------------------------------------------------------------------------


def test_the_default_file_is_the_app_directorys() -> None:
    assert DEFAULT_ENV_FILE == "/usr/local/asterisk/.env"


def test_a_missing_file_names_the_path_and_the_option(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / ".env"
    with pytest.raises(ConfigError) as caught:
        read_env_file(path)
    assert caught.value.problems == (
        f"The configuration file {path} does not exist: give the path of the box's .env file (--env-file), "
        "or create it with the playbook (ansible-playbook site.yml --tags bridge).",
    )


def test_a_directory_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"is a directory: give the path of the \.env file"):
        read_env_file(tmp_path)


def test_a_file_that_cannot_be_read_says_why(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match=r"cannot be read \(Not a directory\): check its owner and mode"):
        read_env_file(tmp_path / "file" / ".env")


def test_a_file_without_permission_says_so(tmp_path: Path) -> None:
    path = write_env(tmp_path, REQUIRED)
    path.chmod(0)
    tmp_path.chmod(0o755)
    message = error_as_unprivileged(lambda: read_env_file(path), ConfigError)
    assert re.search(r"cannot be read \(Permission denied\): check its owner and mode", message), message


def test_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_bytes(b"OPENAI_API_KEY=\xff\xfe\n")
    with pytest.raises(ConfigError, match="is not valid UTF-8: save it as UTF-8 text"):
        read_env_file(path)


TRICKY = (
    "# a comment\n"
    "export EXPORTED=yes\n"
    "PLAIN=abc #123\n"
    "HASH=abc#123\n"
    'DOUBLE="a \\"quoted\\" #not-a-comment \\\\ \\n"\n'
    "SINGLE='it\\'s'\n"
    "DOLLAR=${HOME} $HOME\n"
    'SPACES="  both ends  "\n'
    "EMPTY=\n"
    "NO_EQUALS\n"
    "SAME=first\nSAME=second\n"
    "\ufeffLATE=ñ 📞\n"
)


def test_the_file_is_read_as_python_dotenv_reads_it(tmp_path: Path) -> None:
    path = write_env(tmp_path, TRICKY)
    env = read_env_file(path)
    assert env.values == dotenv_values(path, interpolate=False)
    assert env.values["DOLLAR"] == "${HOME} $HOME"  # nothing interpolated
    assert env.values["NO_EQUALS"] is None
    assert env.source == str(path)
    assert env.unparsed_lines == ()


def test_nothing_enters_or_comes_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_MODEL", "from-the-environment")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    settings = load_all(write_env(tmp_path, REQUIRED + "OPENAI_VOICE=${OPENAI_MODEL}\n"))
    assert settings.bridge.openai_model == "gpt-realtime"
    assert settings.bridge.openai_voice == "${OPENAI_MODEL}"
    assert "OPENAI_API_KEY" not in os.environ


def test_a_line_that_does_not_parse_is_a_problem_named_by_number_only(tmp_path: Path) -> None:
    text = REQUIRED + 'ARI_USER="unclosed ' + ARI_PASSWORD + "\nOPENAI_VOICE=cedar\n"
    error = problems_of(tmp_path, text)
    assert error.problems[0].startswith(f"line 3 of {tmp_path / '.env'} is not NAME=value and is ignored")
    assert error.variables[0] == ""
    assert ARI_PASSWORD not in error.problems[0]


# ---- the reader and its messages ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("read", "value", "message"),
    [
        (lambda r: r.seconds("X", 5.0), "soon", "X is 'soon', not a number of seconds: set e.g. X=5."),
        (
            lambda r: r.seconds("X", 5.0, maximum=120),
            "121",
            "X is '121', but it must be above 0 seconds and at most 120: set e.g. X=5.",
        ),
        (lambda r: r.integer("X", 3, 1, 60), "3.5", "X is '3.5', not a whole number from 1 to 60: set e.g. X=3."),
        (lambda r: r.flag("X", False), "maybe", "X is 'maybe', neither true nor false: set e.g. X=false."),
        (
            lambda r: r.path("X", "/var/x"),
            "x",
            "X is 'x', a relative path (it would depend on the working directory): set e.g. X=/var/x.",
        ),
        (lambda r: r.ip_address("X", "127.0.0.1"), "host", "X is 'host', not an IP address: set e.g. X=127.0.0.1."),
        (
            lambda r: r.identifier("X", "app"),
            "a b",
            "X is 'a b', not a name of letters, digits, '.', '_' or '-': set e.g. X=app.",
        ),
        (
            lambda r: r.timezone("X", required=True, what="a zone", example="America/Lima"),
            "Mars/Base",
            "X is 'Mars/Base', not a time zone name (install the tzdata package if it is missing): "
            "set e.g. X=America/Lima.",
        ),
        (
            lambda r: r.parsed("X", "1", int, "2"),
            "one",
            "X is 'one', which is wrong (invalid literal for int() with base 10: 'one'): set e.g. X=2.",
        ),
        (lambda r: r.secret("X", "the key"), "", "X is missing: set X=<the key>."),
    ],
)
def test_every_reader_says_the_variable_the_value_and_an_example(read, value: str, message: str) -> None:
    reader = EnvReader({"X": value})
    read(reader)
    assert reader.problems == [message]
    assert reader.variables == ["X"]
    assert not reader.valid("X")


def test_blank_means_the_default_and_values_are_stripped() -> None:
    reader = EnvReader({"A": "  ", "B": " 7 ", "C": None})
    assert reader.integer("A", 3, 1, 9) == 3
    assert reader.integer("B", 3, 1, 9) == 7
    assert reader.text("C", "default") == "default"
    assert reader.flag("A", True) is True
    assert reader.optional_path("A", "/x") is None
    assert reader.problems == []


@pytest.mark.parametrize("value", ["true", "TRUE", "yes", "on", "1"])
def test_flags_read_every_usual_spelling(value: str) -> None:
    assert EnvReader({"X": value}).flag("X", False) is True


def test_a_secret_never_shows_and_is_only_missing_or_present() -> None:
    reader = EnvReader({"KEY": f"  {API_KEY}  "})
    assert reader.secret("KEY", "the key").reveal() == API_KEY
    assert reader.problems == []


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("LOCALHOST", True),
        ("localhost.", True),
        ("127.0.0.1", True),
        ("127.255.0.9", True),
        ("::1", True),
        ("localhost.example", False),
        ("10.0.0.1", False),
        ("128.0.0.1", False),
        ("::2", False),
        ("api.openai.com", False),
    ],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:secret@host:8089/ari", "https://user:**********@host:8089/ari"),
        ("https://token-only@host/ari", "https://**********@host/ari"),
        ("wss://api.openai.com/v1/realtime", "wss://api.openai.com/v1/realtime"),
        ("http://a:b:c@[::1]:8088", "http://a:**********@[::1]:8088"),
    ],
)
def test_url_passwords_are_redacted(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert redact_urls(f"cannot reach {url}: refused") == f"cannot reach {shown}: refused"


def test_redacting_text_leaves_urls_without_credentials_and_emails_alone() -> None:
    text = "mail root@example.net; see https://status.openai.com and git@host:repo"
    assert redact_urls(text) == text


# ---- load_all: the three parts from one read ----------------------------------------------------------------


def test_a_minimal_file_gives_every_part_with_its_defaults_and_no_dialer(tmp_path: Path) -> None:
    settings = load_all(write_env(tmp_path, REQUIRED))
    assert settings.bridge.openai_api_key.reveal() == API_KEY
    assert settings.network.routers == ()
    assert settings.dialer is None  # DIALER_TIMEZONE unset: no dialer on this box
    assert settings.source == str(tmp_path / ".env")


def test_the_dialer_is_there_when_its_time_zone_is(tmp_path: Path) -> None:
    settings = load_all(write_env(tmp_path, REQUIRED + "DIALER_TIMEZONE=America/Bogota\n"))
    assert settings.dialer is not None
    assert settings.dialer.ari_password.reveal() == ARI_PASSWORD


def test_where_the_dialer_runs_its_time_zone_is_required(tmp_path: Path) -> None:
    error = problems_of(tmp_path, REQUIRED, dialer_required=True)
    assert error.variables == ("DIALER_TIMEZONE",)
    assert error.problems[0].startswith("DIALER_TIMEZONE is missing: set DIALER_TIMEZONE=<the customers' IANA")


def test_a_bad_dialer_setting_is_a_problem_even_without_a_dialer(tmp_path: Path) -> None:
    error = problems_of(tmp_path, REQUIRED + "DIALER_WINDOWS=someday 25:00\n")
    assert error.variables == ("DIALER_WINDOWS",)


def test_every_problem_of_every_part_in_one_error_in_file_order(tmp_path: Path) -> None:
    text = (
        "OPENAI_BASE_URL=ws://api.openai.com/v1/realtime\n"
        'ARI_USER="unclosed\n'
        "ARI_PASSWORD=ari\n"
        "WS_PING_INTERVAL=5\n"
        "ROUTEROS_ROUTERS=nucleo\n"
        f"ROUTEROS_NUCLEO_PASSWORD={ROUTER_PASSWORD}\n"
        "ROUTEROS_WRITES=maybe\n"
        "DIALER_MAX_CONCURRENT=100\n"
    )
    error = problems_of(tmp_path, text)
    assert error.variables == (
        "",
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "WS_PING_INTERVAL",
        "ROUTEROS_NUCLEO_HOST",
        "ROUTEROS_NUCLEO_USER",
        "ROUTEROS_WRITES",
        "DIALER_MAX_CONCURRENT",
    )
    assert f"Invalid Centralita configuration in {tmp_path / '.env'} (8 problems):" in str(error)
    assert ROUTER_PASSWORD not in str(error)


def test_a_problem_the_bridge_and_the_dialer_share_is_listed_once(tmp_path: Path) -> None:
    error = problems_of(tmp_path, REQUIRED + "DIALER_TIMEZONE=UTC\nARI_URL=http://pbx.example:8088\n")
    assert error.variables == ("ARI_URL",)
    check = box.check(read_env_file(tmp_path / ".env"))
    assert (check.bridge, check.dialer) == (None, None)  # both read it, neither is valid
    assert check.network is not None
    assert [problem.part for problem in check.problems] == [Part.BRIDGE]


def test_check_keeps_the_parts_that_validate(tmp_path: Path) -> None:
    env = EnvFile.from_text(REQUIRED + "ROUTEROS_TIMEOUT=never\nDIALER_TIMEZONE=UTC\n", "x.env")
    check = box.check(env)
    assert check.bridge is not None
    assert check.dialer is not None
    assert check.network is None
    assert check.problems_of(Part.NETWORK)[0].variable == "ROUTEROS_TIMEOUT"
    assert check.error() is not None


# ---- one read per program -----------------------------------------------------------------------------------


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every path ``read_env_file`` opens, wherever it is called from."""
    opened: list[Path] = []
    real = read_env_file

    def counting(path: str | os.PathLike[str]) -> EnvFile:
        opened.append(Path(path))
        return real(path)

    monkeypatch.setattr(box, "read_env_file", counting)
    monkeypatch.setattr(dialer_cli, "read_env_file", counting)
    return opened


def test_the_inbound_service_reads_the_file_once(
    tmp_path: Path, reads: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    # LOG_FILE is a directory: the service stops right after reading its settings, before any thread starts.
    env = write_env(tmp_path, REQUIRED + f"LOG_FILE={tmp_path}\nDIALER_TIMEZONE=UTC\nROUTEROS_ROUTERS=\n")
    assert inbound_service.main(["--env-file", str(env)]) == 2
    assert reads == [env]
    assert str(tmp_path) in capsys.readouterr().err


def test_the_inbound_service_refuses_a_bad_dialer_setting(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env = write_env(tmp_path, REQUIRED + "DIALER_RING_TIMEOUT=1\n")
    assert inbound_service.main(["--env-file", str(env)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"openai-inbound-calls: Invalid Centralita configuration in {env} (1 problem):")
    assert "DIALER_RING_TIMEOUT is '1', not a whole number from 5 to 120" in err


def test_a_campaign_command_reads_the_file_once_and_needs_only_the_dialers_part(
    tmp_path: Path, reads: list[Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli, "SUBCOMMAND_MODULES", ("centralita.dialer.cli",))
    # No OpenAI key, a bad keepalive: a campaign can still be paused.
    env = write_env(tmp_path, f"DIALER_TIMEZONE=UTC\nDIALER_DB_PATH={tmp_path / 'd.db'}\nWS_PING_INTERVAL=1\n")
    assert cli.main(["campaign", "status", "--env-file", str(env)]) == 0
    assert reads == [env]
    capsys.readouterr()


def test_a_campaign_command_refuses_a_line_that_does_not_parse(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli, "SUBCOMMAND_MODULES", ("centralita.dialer.cli",))
    env = write_env(tmp_path, f'DIALER_TIMEZONE=UTC\nDIALER_DB_PATH="{tmp_path / "d.db"}\n')
    assert cli.main(["campaign", "status", "--env-file", str(env)]) == 2
    assert "line 2 of" in capsys.readouterr().err
    assert not (tmp_path / "d.db").exists()


# ---- centralita config check ---------------------------------------------------------------------------------


def check(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(["config", "check", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_config_check_says_ok_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env = write_env(tmp_path, REQUIRED)
    assert check(capsys, str(env)) == (0, f"OK {env}: bridge, 0 routers, no dialer (DIALER_TIMEZONE unset)\n", "")
    env = write_env(tmp_path, REQUIRED + "DIALER_TIMEZONE=UTC\n", "dialer.env")
    assert check(capsys, "--dialer", str(env)) == (0, f"OK {env}: bridge, 0 routers, dialer\n", "")


def test_config_check_lists_every_problem_without_a_secret(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env = write_env(
        tmp_path,
        f"OPENAI_API_KEY={API_KEY}\nARI_URL=http://ari:{ARI_PASSWORD}@10.1.1.1:8088\n"
        f"ROUTEROS_ROUTERS=nucleo\nROUTEROS_NUCLEO_HOST=10.0.0.1\nROUTEROS_NUCLEO_PASSWORD={ROUTER_PASSWORD}\n",
    )
    code, out, err = check(capsys, "--dialer", str(env))
    assert (code, out) == (1, "")
    lines = err.splitlines()
    assert lines[0] == f"centralita config check: Invalid Centralita configuration in {env} (4 problems):"
    assert [line.split()[1] for line in lines[1:5]] == [
        "ARI_URL",
        "ARI_PASSWORD",
        "ROUTEROS_NUCLEO_USER",
        "DIALER_TIMEZONE",
    ]
    assert lines[5].startswith("The playbook renders each VARIABLE from the bridge role's bridge_<variable")
    for secret in (API_KEY, ARI_PASSWORD, ROUTER_PASSWORD):
        assert secret not in err


def test_config_check_of_a_file_that_is_not_there(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = check(capsys, str(tmp_path / "none.env"))
    assert (code, out) == (1, "")
    assert "does not exist" in err
    assert "bridge_<variable" not in err  # no variable to map to the inventory


def test_config_check_is_a_centralita_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["config", "--help"])
    assert "check" in capsys.readouterr().out


# ---- the routers' part ----------------------------------------------------------------------------------------


def test_router_settings_with_their_defaults() -> None:
    from centralita.config.network import NetworkSettings

    settings = NetworkSettings.from_values(
        {
            "ROUTEROS_ROUTERS": " nucleo , norte ",
            "ROUTEROS_NUCLEO_HOST": "10.0.0.1",
            "ROUTEROS_NUCLEO_USER": "api",
            "ROUTEROS_NUCLEO_PASSWORD": ROUTER_PASSWORD,
            "ROUTEROS_NORTE_HOST": "10.0.0.2",
            "ROUTEROS_NORTE_USER": "api",
            "ROUTEROS_NORTE_PASSWORD": ROUTER_PASSWORD,
            "ROUTEROS_NORTE_TLS": "yes",
            "ROUTEROS_NORTE_CA_FILE": "/etc/centralita/norte-ca.pem",
            "ROUTEROS_WRITES": "on",
        }
    )
    assert [(router.name, router.port, router.tls) for router in settings.routers] == [
        ("nucleo", 8728, False),
        ("norte", 8729, True),
    ]
    assert settings.router("norte").ca_file == Path("/etc/centralita/norte-ca.pem")
    assert (settings.timeout, settings.debtors_list, settings.exception_list) == (5.0, "morosos", "promesa-pago")
    assert (settings.writes_enabled, settings.exception_days, settings.customer_directory) == (True, 3, None)


def test_every_router_problem_at_once_and_no_password_in_them() -> None:
    from centralita.config.network import NetworkSettings

    with pytest.raises(ConfigError) as caught:
        NetworkSettings.from_values(
            {
                "ROUTEROS_ROUTERS": "Nucleo,norte,norte,sur",
                "ROUTEROS_NORTE_HOST": "10.0.0.2",
                "ROUTEROS_NORTE_USER": "api",
                "ROUTEROS_NORTE_PASSWORD": ROUTER_PASSWORD,
                "ROUTEROS_NORTE_PORT": "70000",
                "ROUTEROS_SUR_HOST": "10.0.0.3",
                "ROUTEROS_SUR_USER": "api",
                "ROUTEROS_SUR_CA_FILE": "ca.pem",
                "ROUTEROS_TIMEOUT": "500",
                "ROUTEROS_DEBTORS_LIST": "lista con espacios",
                "ROUTEROS_EXCEPTION_DAYS": "0",
                "CUSTOMER_DIRECTORY": "clientes.csv",
            }
        )
    error = caught.value
    assert error.variables == (
        "ROUTEROS_ROUTERS",
        "ROUTEROS_NORTE_PORT",
        "ROUTEROS_ROUTERS",
        "ROUTEROS_SUR_PASSWORD",
        "ROUTEROS_SUR_CA_FILE",
        "ROUTEROS_TIMEOUT",
        "ROUTEROS_DEBTORS_LIST",
        "ROUTEROS_EXCEPTION_DAYS",
        "CUSTOMER_DIRECTORY",
    )
    assert error.problems[0].startswith("ROUTEROS_ROUTERS names 'Nucleo', not a router name")
    assert error.problems[2].startswith("ROUTEROS_ROUTERS names 'norte' twice")
    assert error.problems[3] == (
        "ROUTEROS_SUR_PASSWORD is missing: set ROUTEROS_SUR_PASSWORD=<the API user's password, from the vault>."
    )
    assert ROUTER_PASSWORD not in str(error)
