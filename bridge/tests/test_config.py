"""The bridge's Settings: defaults, every validation rule, and that secrets never show.

The file itself (reading, errors, the reader shared by every part) is test_env.py's.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from pathlib import Path

import pytest

from centralita.config.box import load_all
from centralita.config.bridge import FailureAction, MediaEngine, Settings, keepalive_problem
from centralita.config.env import ConfigError, Secret

API_KEY = "sk-test-0123456789abcdef"
ARI_PASSWORD = "ari-pass-fedcba9876"
REQUIRED = f"OPENAI_API_KEY={API_KEY}\nARI_PASSWORD={ARI_PASSWORD}\n"


def write_env(tmp_path: Path, text: str) -> Path:
    path = tmp_path / ".env"
    path.write_text(text, encoding="utf-8")
    return path


def load(path: Path) -> Settings:
    return load_all(path).bridge


def load_error(tmp_path: Path, text: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load(write_env(tmp_path, text))
    return caught.value


def test_defaults_with_only_the_required_values(tmp_path: Path) -> None:
    settings = load(write_env(tmp_path, REQUIRED))

    assert settings.openai_api_key.reveal() == API_KEY
    assert settings.ari_password.reveal() == ARI_PASSWORD
    assert settings.openai_base_url == "wss://api.openai.com/v1/realtime"
    assert settings.openai_model == "gpt-realtime"
    assert settings.openai_voice == "marin"
    assert settings.ari_url == "http://127.0.0.1:8088"
    assert settings.ari_user == "centralita"
    assert settings.ari_app == "centralita"
    assert settings.rtp_bind_address == "127.0.0.1"
    assert settings.ws_ping_interval == 20.0
    assert settings.ws_ping_timeout == 10.0
    assert settings.log_file == Path("/var/log/asterisk/inbound_openai.log")
    assert settings.db_path == Path("/var/lib/centralita/centralita.db")
    assert settings.operator_context == "centralita-operator"
    assert settings.on_realtime_failure is FailureAction.TRANSFER


def test_every_value_is_read_from_the_file(tmp_path: Path) -> None:
    text = (
        REQUIRED
        + "# a comment\n"
        + "OPENAI_BASE_URL=wss://realtime.example:8443/v1/realtime\n"
        + 'OPENAI_MODEL="gpt-realtime-mini"\n'
        + "OPENAI_VOICE=cedar\n"
        + "ARI_URL=https://pbx.example:8089\n"
        + "ARI_USER=bridge\n"
        + "ARI_APP=frontdesk\n"
        + "RTP_BIND_ADDRESS=::1\n"
        + "WS_PING_INTERVAL=30.5\n"
        + "WS_PING_TIMEOUT=7\n"
        + "LOG_FILE=/tmp/bridge.log\n"
        + "DB_PATH=/srv/centralita.db\n"
        + "OPERATOR_CONTEXT=humans\n"
        + "ON_REALTIME_FAILURE=hangup\n"
        + "SOMETHING_ELSE=ignored\n"
    )
    settings = load(write_env(tmp_path, text))

    assert settings.openai_base_url == "wss://realtime.example:8443/v1/realtime"
    assert settings.openai_model == "gpt-realtime-mini"
    assert settings.openai_voice == "cedar"
    assert settings.ari_url == "https://pbx.example:8089"
    assert settings.ari_user == "bridge"
    assert settings.ari_app == "frontdesk"
    assert settings.rtp_bind_address == "::1"
    assert settings.ws_ping_interval == 30.5
    assert settings.ws_ping_timeout == 7.0
    assert settings.log_file == Path("/tmp/bridge.log")
    assert settings.db_path == Path("/srv/centralita.db")
    assert settings.operator_context == "humans"
    assert settings.on_realtime_failure is FailureAction.HANGUP


def test_blank_optional_value_means_default(tmp_path: Path) -> None:
    settings = load(write_env(tmp_path, REQUIRED + "OPENAI_MODEL=\nWS_PING_TIMEOUT=  \n"))
    assert settings.openai_model == "gpt-realtime"
    assert settings.ws_ping_timeout == 10.0


def test_environment_is_neither_read_nor_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_MODEL", "from-the-environment")
    monkeypatch.setenv("HOME", "/home/someone")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("ARI_PASSWORD", raising=False)
    settings = load(write_env(tmp_path, REQUIRED + "OPENAI_VOICE=${HOME}\n"))

    assert settings.openai_model == "gpt-realtime"
    assert settings.openai_voice == "${HOME}"  # no interpolation from the process environment
    assert "OPENAI_API_KEY" not in os.environ
    assert "ARI_PASSWORD" not in os.environ


def test_missing_required_values_are_all_reported(tmp_path: Path) -> None:
    error = load_error(tmp_path, "OPENAI_MODEL=gpt-realtime\n")
    assert len(error.problems) == 2
    assert error.problems[0].startswith("OPENAI_API_KEY is missing: set OPENAI_API_KEY=")
    assert error.problems[1].startswith("ARI_PASSWORD is missing: set ARI_PASSWORD=")
    assert "2 problems" in str(error)


@pytest.mark.parametrize("line", ["OPENAI_API_KEY=", "OPENAI_API_KEY=   ", "OPENAI_API_KEY"])
def test_blank_or_valueless_required_value_is_missing(tmp_path: Path, line: str) -> None:
    error = load_error(tmp_path, f"{line}\nARI_PASSWORD={ARI_PASSWORD}\n")
    assert len(error.problems) == 1
    assert "OPENAI_API_KEY is missing" in error.problems[0]


@pytest.mark.parametrize("value", ["twenty", "20s", "nan", "inf", "-inf"])
def test_ping_interval_must_be_a_number(tmp_path: Path, value: str) -> None:
    error = load_error(tmp_path, REQUIRED + f"WS_PING_INTERVAL={value}\n")
    assert error.problems == (f"WS_PING_INTERVAL is {value!r}, not a number of seconds: set e.g. WS_PING_INTERVAL=20.",)


@pytest.mark.parametrize("value", ["0", "-5", "-0.5"])
def test_ping_timeout_must_be_positive(tmp_path: Path, value: str) -> None:
    error = load_error(tmp_path, REQUIRED + f"WS_PING_TIMEOUT={value}\n")
    assert error.problems == (
        f"WS_PING_TIMEOUT is {value!r}, but it must be above 0 seconds: set e.g. WS_PING_TIMEOUT=10.",
    )


def test_ping_interval_must_exceed_ping_timeout(tmp_path: Path) -> None:
    error = load_error(tmp_path, REQUIRED + "WS_PING_INTERVAL=10\nWS_PING_TIMEOUT=20\n")
    assert error.problems == (
        "WS_PING_INTERVAL is 10 and WS_PING_TIMEOUT 20, but the ping interval (10 s) must be greater than the ping "
        'timeout (20 s): websocket-client refuses to start otherwise ("Ensure ping_interval > ping_timeout"): '
        "set e.g. WS_PING_INTERVAL=20 and WS_PING_TIMEOUT=10.",
    )
    assert error.variables == ("WS_PING_INTERVAL",)


def test_equal_ping_interval_and_timeout_are_refused(tmp_path: Path) -> None:
    error = load_error(tmp_path, REQUIRED + "WS_PING_INTERVAL=10\nWS_PING_TIMEOUT=10\n")
    assert "the ping interval (10 s) must be greater than the ping timeout (10 s)" in error.problems[0]


def test_the_keepalive_rule_is_the_one_the_ari_connection_enforces() -> None:
    from centralita.telephony.ari import AriEndpoint, AriEvents

    problem = keepalive_problem(10, 10)
    assert problem is not None
    assert keepalive_problem(20, 10) is None
    endpoint = AriEndpoint("http://127.0.0.1:9", "u", "p", "app")
    with pytest.raises(ValueError, match="must be greater than the ping timeout") as caught:
        AriEvents(endpoint, lambda _event: None, ping_interval=10, ping_timeout=10)
    assert str(caught.value) == problem


def test_ping_order_not_judged_when_a_ping_value_is_invalid(tmp_path: Path) -> None:
    # The invalid interval stands in as its default (20), below the timeout (30): that comparison would be
    # about a value nobody set, so only the real problem is reported.
    error = load_error(tmp_path, REQUIRED + "WS_PING_INTERVAL=abc\nWS_PING_TIMEOUT=30\n")
    assert len(error.problems) == 1
    assert error.problems[0].startswith("WS_PING_INTERVAL is 'abc'")


@pytest.mark.parametrize(
    ("name", "value", "kinds"),
    [
        ("OPENAI_BASE_URL", "https://api.openai.com/v1/realtime", "wss:// or ws://"),
        ("OPENAI_BASE_URL", "api.openai.com/v1/realtime", "wss:// or ws://"),
        ("OPENAI_BASE_URL", "wss:///v1/realtime", "wss:// or ws://"),
        ("ARI_URL", "ws://127.0.0.1:8088", "https:// or http://"),
        ("ARI_URL", "http://127.0.0.1:port", "https:// or http://"),
        ("ARI_URL", "http://127.0.0.1:99999", "https:// or http://"),
        ("ARI_URL", "http://[::1", "https:// or http://"),
    ],
)
def test_url_schemes_and_hosts(tmp_path: Path, name: str, value: str, kinds: str) -> None:
    error = load_error(tmp_path, REQUIRED + f"{name}={value}\n")
    assert len(error.problems) == 1
    assert error.problems[0].startswith(f"{name} is {value!r}, not a {kinds} URL with a host: set e.g. {name}=")


@pytest.mark.parametrize(
    ("name", "value", "carries"),
    [
        ("OPENAI_BASE_URL", "ws://api.openai.com/v1/realtime", "the OpenAI API key"),
        ("OPENAI_BASE_URL", "ws://10.0.0.5:8765/v1/realtime", "the OpenAI API key"),
        ("OPENAI_BASE_URL", "ws://localhost.example/v1/realtime", "the OpenAI API key"),
        ("ARI_URL", "http://pbx.example:8088", "the ARI password"),
        ("ARI_URL", "http://192.168.1.10:8088", "the ARI password"),
        ("ARI_URL", "http://[2001:db8::1]:8088", "the ARI password"),
    ],
)
def test_plain_transport_to_another_machine_is_refused(tmp_path: Path, name: str, value: str, carries: str) -> None:
    error = load_error(tmp_path, REQUIRED + f"{name}={value}\n")
    assert len(error.problems) == 1
    problem = error.problems[0]
    plain = value.split("://", 1)[0]
    assert problem.startswith(f"{name} is {value!r}, plain {plain}:// to another machine, so {carries} would cross")
    assert "only to 127.0.0.1, ::1 or localhost" in problem


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("OPENAI_BASE_URL", "ws://127.0.0.1:8765/v1/realtime"),
        ("OPENAI_BASE_URL", "ws://127.8.9.10:8765/v1/realtime"),
        ("OPENAI_BASE_URL", "ws://[::1]:8765/v1/realtime"),
        ("OPENAI_BASE_URL", "ws://localhost:8765/v1/realtime"),
        ("OPENAI_BASE_URL", "ws://LOCALHOST:8765/v1/realtime"),
        ("OPENAI_BASE_URL", "wss://realtime.example/v1/realtime"),
        ("ARI_URL", "http://127.0.0.1:8088"),
        ("ARI_URL", "http://localhost:8088"),
        ("ARI_URL", "http://[::1]:8088"),
        ("ARI_URL", "https://pbx.example:8089"),
    ],
)
def test_plain_transport_to_this_machine_and_tls_anywhere_are_fine(tmp_path: Path, name: str, value: str) -> None:
    settings = load(write_env(tmp_path, REQUIRED + f"{name}={value}\n"))
    assert (settings.openai_base_url if name == "OPENAI_BASE_URL" else settings.ari_url) == value


def test_a_url_password_never_shows_in_a_problem(tmp_path: Path) -> None:
    error = load_error(tmp_path, REQUIRED + "ARI_URL=http://admin:hunter2-secret@pbx.example:8088\n")
    assert "hunter2-secret" not in str(error)
    assert "http://admin:**********@pbx.example:8088" in error.problems[0]


def test_on_realtime_failure_choices(tmp_path: Path) -> None:
    error = load_error(tmp_path, REQUIRED + "ON_REALTIME_FAILURE=voicemail\n")
    assert error.problems == (
        "ON_REALTIME_FAILURE is 'voicemail', not one of transfer, hangup: set e.g. ON_REALTIME_FAILURE=transfer.",
    )
    # Choices are read in any case, as DIALER_ON_MACHINE always was.
    assert (
        load(write_env(tmp_path, REQUIRED + "ON_REALTIME_FAILURE=HangUp\n")).on_realtime_failure is FailureAction.HANGUP
    )


def test_media_engine_is_the_loop_unless_threads_is_chosen(tmp_path: Path) -> None:
    assert load(write_env(tmp_path, REQUIRED)).media_engine is MediaEngine.LOOP
    assert load(write_env(tmp_path, REQUIRED + "MEDIA_ENGINE=Threads\n")).media_engine is MediaEngine.THREADS
    error = load_error(tmp_path, REQUIRED + "MEDIA_ENGINE=epoll\n")
    assert error.problems == ("MEDIA_ENGINE is 'epoll', not one of threads, loop: set e.g. MEDIA_ENGINE=loop.",)


def test_append_ms_is_whole_frames_from_20_to_100(tmp_path: Path) -> None:
    assert load(write_env(tmp_path, REQUIRED)).append_ms == 40
    assert load(write_env(tmp_path, REQUIRED + "APPEND_MS=100\n")).append_ms == 100
    assert load_error(tmp_path, REQUIRED + "APPEND_MS=10\n").problems == (
        "APPEND_MS is '10', not a whole number from 20 to 100: set e.g. APPEND_MS=40.",
    )
    assert load_error(tmp_path, REQUIRED + "APPEND_MS=50\n").problems == (
        "APPEND_MS is '50', not a whole number of 20 ms frames (20, 40, 60, 80 or 100): set e.g. APPEND_MS=40.",
    )


def test_bind_address_must_be_an_ip_address(tmp_path: Path) -> None:
    error = load_error(tmp_path, REQUIRED + "RTP_BIND_ADDRESS=localhost\n")
    assert len(error.problems) == 1
    assert (
        error.problems[0] == "RTP_BIND_ADDRESS is 'localhost', not an IP address: set e.g. RTP_BIND_ADDRESS=127.0.0.1."
    )


@pytest.mark.parametrize("name", ["LOG_FILE", "DB_PATH"])
def test_paths_must_be_absolute(tmp_path: Path, name: str) -> None:
    error = load_error(tmp_path, REQUIRED + f"{name}=data/file\n")
    assert len(error.problems) == 1
    assert error.problems[0].startswith(f"{name} is 'data/file', a relative path (it would depend on the working")


def test_one_error_lists_every_problem(tmp_path: Path) -> None:
    text = (
        "OPENAI_BASE_URL=http://x\n"
        "ARI_URL=ftp://x\n"
        "RTP_BIND_ADDRESS=nowhere\n"
        "WS_PING_INTERVAL=-1\n"
        "WS_PING_TIMEOUT=soon\n"
        "LOG_FILE=log.txt\n"
        "ON_REALTIME_FAILURE=panic\n"
    )
    error = load_error(tmp_path, text)
    named = [problem.split(" ", 1)[0] for problem in error.problems]
    assert list(error.variables) == named
    assert named == [
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "ARI_URL",
        "ARI_PASSWORD",
        "RTP_BIND_ADDRESS",
        "WS_PING_INTERVAL",
        "WS_PING_TIMEOUT",
        "LOG_FILE",
        "ON_REALTIME_FAILURE",
    ]
    assert str(tmp_path / ".env") in str(error)
    assert "(9 problems)" in str(error)
    assert all(f"  - {problem}" in str(error) for problem in error.problems)


def test_secrets_never_show_in_settings(tmp_path: Path) -> None:
    settings = load(write_env(tmp_path, REQUIRED))
    shown = [
        repr(settings),
        str(settings),
        f"{settings}",
        repr(settings.openai_api_key),
        str(settings.ari_password),
        f"{settings.openai_api_key} {settings.ari_password!r}",
        repr(dataclasses.asdict(settings)),
        repr(copy.deepcopy(settings)),
    ]
    for text in shown:
        assert API_KEY not in text
        assert ARI_PASSWORD not in text
    assert "openai_api_key=Secret('**********')" in repr(settings)


def test_secrets_never_show_in_errors(tmp_path: Path) -> None:
    error = load_error(tmp_path, REQUIRED + "WS_PING_INTERVAL=1\nARI_URL=nope\n")
    for text in (str(error), repr(error), *error.problems):
        assert API_KEY not in text
        assert ARI_PASSWORD not in text


def test_settings_are_frozen(tmp_path: Path) -> None:
    settings = load(write_env(tmp_path, REQUIRED))
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.openai_model = "other"  # type: ignore[misc]


def test_secret_compares_by_value_and_is_immutable() -> None:
    secret = Secret("abc")
    assert secret == Secret("abc")
    assert secret != Secret("abd")
    assert secret != "abc"
    assert copy.copy(secret) is secret
    with pytest.raises(AttributeError):
        secret._value = "changed"
    assert secret.reveal() == "abc"


def test_from_values_without_a_file() -> None:
    settings = Settings.from_values({"OPENAI_API_KEY": "k", "ARI_PASSWORD": "p", "ARI_APP": "test"})
    assert settings.ari_app == "test"
    with pytest.raises(ConfigError, match="ARI_APP is 'two words', not a name of letters"):
        Settings.from_values({"OPENAI_API_KEY": "k", "ARI_PASSWORD": "p", "ARI_APP": "two words"})
    with pytest.raises(ConfigError) as caught:
        Settings.from_values({})
    assert len(caught.value.problems) == 2
    assert "Invalid Centralita configuration (2 problems):" in str(caught.value)


def test_the_caller_is_transcribed_in_spanish_by_default_and_metrics_are_off(tmp_path: Path) -> None:
    settings = load(write_env(tmp_path, REQUIRED))
    assert (settings.transcription.model, settings.transcription.language) == ("whisper-1", "es")
    assert settings.transcription.enabled
    assert settings.metrics_port == 0


@pytest.mark.parametrize(
    ("lines", "model", "language"),
    [
        ("TRANSCRIPTION_MODEL=gpt-4o-mini-transcribe\nTRANSCRIPTION_LANGUAGE=PT\n", "gpt-4o-mini-transcribe", "pt"),
        ("TRANSCRIPTION_MODEL=off\n", None, "es"),
        ("TRANSCRIPTION_LANGUAGE=auto\n", "whisper-1", None),
    ],
)
def test_transcription_settings(tmp_path: Path, lines: str, model: str | None, language: str | None) -> None:
    settings = load(write_env(tmp_path, REQUIRED + lines))
    assert (settings.transcription.model, settings.transcription.language) == (model, language)
    assert settings.transcription.enabled is (model is not None)


def test_bad_transcription_and_metrics_settings_name_their_fix(tmp_path: Path) -> None:
    error = load_error(
        tmp_path,
        REQUIRED + "TRANSCRIPTION_LANGUAGE=español\nTRANSCRIPTION_MODEL=whisper 1\nMETRICS_PORT=70000\n",
    )
    assert (
        "TRANSCRIPTION_LANGUAGE is 'español', not a two-letter ISO-639-1 language code (or auto): "
        "set e.g. TRANSCRIPTION_LANGUAGE=es." in error.problems
    )
    assert any(problem.startswith("TRANSCRIPTION_MODEL is 'whisper 1'") for problem in error.problems)
    assert any(problem.startswith("METRICS_PORT is '70000'") for problem in error.problems)
