"""Dialer settings: strict defaults, every problem reported at once, each naming its variable and fix."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from centralita.config.box import load_all
from centralita.config.dialer import DialerSettings, MachinePolicy
from centralita.config.env import ConfigError, EnvReader
from centralita.dialer.policy import parse_windows

MINIMAL = {"DIALER_TIMEZONE": "America/Mexico_City"}


def problems(values: dict[str, str], *, require_ari: bool = False) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        DialerSettings.from_values(values, require_ari=require_ari)
    return list(caught.value.problems)


def test_defaults_are_the_strict_ones() -> None:
    settings = DialerSettings.from_values(MINIMAL)
    assert settings.timezone.key == "America/Mexico_City"
    assert settings.policy.windows == parse_windows("mon-fri 08:00-19:00; sat 08:00-15:00")
    assert not settings.policy.holidays
    assert (settings.policy.max_per_day, settings.policy.max_per_week) == (1, 7)
    assert settings.policy.cooldown == timedelta(days=7)
    assert settings.policy.retry_interval == timedelta(hours=4)
    assert settings.policy.end_margin == timedelta(minutes=10)
    assert settings.on_machine is MachinePolicy.NOTHING
    assert (settings.max_concurrent, settings.calls_per_minute) == (2, 4)
    assert settings.caller_id == ""
    assert settings.db_path == Path("/var/lib/centralita/dialer.db")
    assert settings.dial_string("+5215550001111") == "PJSIP/+5215550001111@provider"
    assert (settings.context, settings.ari_app, settings.events_app) == ("", "centralita", "centralita-dialer")


def test_a_full_configuration() -> None:
    settings = DialerSettings.from_values(
        {
            "DIALER_TIMEZONE": "America/Bogota",
            "DIALER_WINDOWS": "lun-vie 07:00-19:00; sab 08:00-15:00",
            "DIALER_HOLIDAYS": "2026-01-01, 2026-01-12, 12-25",
            "DIALER_MAX_PER_DAY": "1",
            "DIALER_MAX_PER_WEEK": "3",
            "DIALER_RETRY_INTERVAL": "6h",
            "DIALER_COOLDOWN": "10d",
            "DIALER_MAX_CONCURRENT": "4",
            "DIALER_CALLS_PER_MINUTE": "10",
            "DIALER_CALLER_ID": '"ISP Demo" <+5716000000>',
            "DIALER_COUNTRY_CODE": "+57",
            "DIALER_ON_MACHINE": "Message",
            "DIALER_TRUNK": "operador-sip",
            "DIALER_CONTEXT": "centralita-outbound-amd",
            "DIALER_ARI_APP": "ignored",
            "ARI_PASSWORD": "ari-s3creto",
        },
        require_ari=True,
    )
    assert settings.policy.max_per_week == 3
    assert settings.caller_id == '"ISP Demo" <+5716000000>'
    assert settings.country_code == "57"
    assert settings.on_machine is MachinePolicy.MESSAGE
    assert settings.dial_string("+573001112233") == "PJSIP/+573001112233@operador-sip"
    assert settings.context == "centralita-outbound-amd"
    without_plus = DialerSettings.from_values({**MINIMAL, "DIALER_ENDPOINT": "PJSIP/{digits}@{trunk}"})
    assert without_plus.dial_string("+573001112233") == "PJSIP/573001112233@provider"
    assert settings.ari_password.reveal() == "ari-s3creto"
    assert "ari-s3creto" not in repr(settings)


def test_the_time_zone_is_required() -> None:
    [problem] = problems({})
    assert problem.startswith("DIALER_TIMEZONE is missing")
    assert "America/Mexico_City" in problem


def test_every_problem_at_once() -> None:
    found = problems(
        {
            "DIALER_TIMEZONE": "Mexico/Ciudad",
            "DIALER_WINDOWS": "mon-fri 19:00-08:00",
            "DIALER_MAX_PER_DAY": "dos",
            "DIALER_RETRY_INTERVAL": "30",
            "DIALER_CALLER_ID": "anonymous",
            "DIALER_DB_PATH": "dialer.db",
            "DIALER_ON_MACHINE": "voicemail",
            "DIALER_ENDPOINT": "PJSIP/{numero}@{trunk}",
            "DIALER_COUNTRY_CODE": "0052",
            "ARI_URL": "127.0.0.1:8088",
        },
        require_ari=True,
    )
    named = [problem.split(" ", 1)[0] for problem in found]
    assert named == [
        "DIALER_TIMEZONE",
        "DIALER_WINDOWS",
        "DIALER_MAX_PER_DAY",
        "DIALER_RETRY_INTERVAL",
        "DIALER_ENDPOINT",
        "DIALER_CALLER_ID",
        "DIALER_COUNTRY_CODE",
        "DIALER_DB_PATH",
        "DIALER_ON_MACHINE",
        "ARI_URL",
        "ARI_PASSWORD",
    ]
    text = "\n".join(found)
    assert "hidden or private caller ID is not allowed" in text
    assert "ends before it starts" in text
    assert "a number with a unit s, m, h or d" in text
    assert "ARI_URL is '127.0.0.1:8088', not a https:// or http:// URL with a host" in text


def test_the_week_cap_cannot_be_below_the_day_cap() -> None:
    [problem] = problems({**MINIMAL, "DIALER_MAX_PER_DAY": "3", "DIALER_MAX_PER_WEEK": "2"})
    assert problem == (
        "DIALER_MAX_PER_WEEK is 2, below DIALER_MAX_PER_DAY (3): set e.g. DIALER_MAX_PER_WEEK=7, "
        "or lower DIALER_MAX_PER_DAY."
    )


def test_a_margin_that_swallows_a_window() -> None:
    [problem] = problems({**MINIMAL, "DIALER_WINDOWS": "sat 09:00-09:30", "DIALER_WINDOW_END_MARGIN": "30m"})
    assert problem.startswith("DIALER_WINDOW_END_MARGIN is '30m', which does not fit DIALER_WINDOWS (")


def test_the_dialer_needs_its_own_events_application() -> None:
    [problem] = problems({**MINIMAL, "DIALER_EVENTS_APP": "centralita"})
    assert "openai-inbound-calls" in problem


def test_a_bad_windows_value_names_the_variable_the_value_and_an_example() -> None:
    [problem] = problems({**MINIMAL, "DIALER_WINDOWS": "someday 25:00"})
    assert problem == (
        "DIALER_WINDOWS is 'someday 25:00', which is wrong ('someday' is not a day: use mon, tue, wed, thu, fri, "
        "sat, sun (or lun ... dom)): set e.g. DIALER_WINDOWS=mon-fri 08:00-19:00; sat 08:00-15:00."
    )


def test_without_a_time_zone_there_is_no_dialer_unless_it_is_required() -> None:
    reader = EnvReader({"DIALER_MAX_CONCURRENT": "3"})
    assert DialerSettings.read(reader, required=False) is None
    assert reader.problems == []
    reader = EnvReader({})
    assert DialerSettings.read(reader, required=True) is None
    assert reader.variables == ["DIALER_TIMEZONE"]


def test_a_set_but_wrong_value_is_a_problem_even_without_a_dialer() -> None:
    reader = EnvReader({"DIALER_MAX_CONCURRENT": "0", "DIALER_CALLER_ID": "private"})
    assert DialerSettings.read(reader, required=False) is None
    assert reader.variables == ["DIALER_MAX_CONCURRENT", "DIALER_CALLER_ID"]
    assert reader.problems[0] == (
        "DIALER_MAX_CONCURRENT is '0', not a whole number from 1 to 50: set e.g. DIALER_MAX_CONCURRENT=2."
    )


def test_the_file_is_read_with_the_others_and_named(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text(
        "DIALER_TIMEZONE=America/Lima\nDIALER_MAX_CONCURRENT=0\nOPENAI_API_KEY=sk-test\nARI_PASSWORD=ari-test\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_all(env)
    assert str(env) in str(caught.value)
    assert caught.value.problems == (
        "DIALER_MAX_CONCURRENT is '0', not a whole number from 1 to 50: set e.g. DIALER_MAX_CONCURRENT=2.",
    )
    env.write_text("DIALER_TIMEZONE=America/Lima\nOPENAI_API_KEY=sk-test\nARI_PASSWORD=ari-test\n")
    dialer = load_all(env).dialer
    assert dialer is not None
    assert dialer.timezone.key == "America/Lima"


def test_a_country_code_no_country_has_is_refused() -> None:
    """The code sets the region phone numbers are read in: 999 (unassigned) would read none of them."""
    [problem] = problems({**MINIMAL, "DIALER_COUNTRY_CODE": "999"})
    assert problem.startswith("DIALER_COUNTRY_CODE is '999', not the country calling code of any country")


def test_campaigns_of_this_box_by_prefix() -> None:
    assert DialerSettings.from_values(MINIMAL).campaigns == ()
    assert DialerSettings.from_values(MINIMAL).owns("cualquiera")
    settings = DialerSettings.from_values({**MINIMAL, "DIALER_CAMPAIGNS": " norte-, cortados-2026 ,"})
    assert settings.campaigns == ("norte-", "cortados-2026")
    assert settings.owns("norte-2026-03")
    assert settings.owns("cortados-2026-04")
    assert not settings.owns("sur-2026-03")
    assert not settings.owns("cortados-2025-12")


def test_a_campaign_prefix_that_no_campaign_name_can_start_with_is_refused() -> None:
    found = problems({**MINIMAL, "DIALER_CAMPAIGNS": "norte-,sur/*"})
    assert len(found) == 1
    assert found[0].startswith("DIALER_CAMPAIGNS is 'norte-,sur/*', with 'sur/*', not the start of a campaign name")
    assert "set e.g. DIALER_CAMPAIGNS=norte-,cortados-" in found[0]


def test_the_dialer_may_not_place_more_calls_at_once_than_the_box_carries(tmp_path: Path) -> None:
    """Each answered dialer call takes one of the box's MAX_CALLS places: a dialer allowed more would ring
    customers only for the box to send them to the failover context once they answer."""
    assert problems({**MINIMAL, "DIALER_MAX_CONCURRENT": "5", "MAX_CALLS": "4"}) == [
        "DIALER_MAX_CONCURRENT is 5, above MAX_CALLS (4), the calls the box carries at once, inbound and the "
        "dialer's together: the customers answering the calls over the limit would be sent to the failover "
        "context instead of the assistant. Set DIALER_MAX_CONCURRENT=4 or less, or raise MAX_CALLS (with the "
        "dialplan's limit, asterisk_max_calls, as high)."
    ]
    # Against MAX_CALLS' default (20) when it is unset.
    assert problems({**MINIMAL, "DIALER_MAX_CONCURRENT": "21"})[0].startswith(
        "DIALER_MAX_CONCURRENT is 21, above MAX_CALLS (20)"
    )
    assert DialerSettings.from_values({**MINIMAL, "DIALER_MAX_CONCURRENT": "4", "MAX_CALLS": "4"}).max_concurrent == 4
    assert DialerSettings.from_values({**MINIMAL, "DIALER_MAX_CONCURRENT": "20"}).max_concurrent == 20
    # The services' start (one read of the whole .env) stops on it, naming the file.
    env = tmp_path / ".env"
    env.write_text(
        "DIALER_TIMEZONE=UTC\nDIALER_MAX_CONCURRENT=3\nMAX_CALLS=2\nOPENAI_API_KEY=sk-test\nARI_PASSWORD=ari-test\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_all(env, dialer_required=True)
    assert str(env) in str(caught.value)
    assert caught.value.variables == ("DIALER_MAX_CONCURRENT",)
    assert "above MAX_CALLS (2)" in caught.value.problems[0]


def test_the_concurrency_check_waits_for_a_valid_max_calls_and_a_dialer() -> None:
    # A wrong MAX_CALLS is the bridge's problem, reported once, and there is nothing to compare with.
    reader = EnvReader({**MINIMAL, "DIALER_MAX_CONCURRENT": "5", "MAX_CALLS": "many"})
    DialerSettings.read(reader)
    assert reader.problems == []
    # Where the dialer does not run (openai-inbound-calls' own read: the role always writes DIALER_TIMEZONE and
    # DIALER_MAX_CONCURRENT), its concurrency limits nothing: a one-call box without the dialer starts.
    reader = EnvReader({**MINIMAL, "DIALER_MAX_CONCURRENT": "2", "MAX_CALLS": "1"})
    assert DialerSettings.read(reader, required=False) is not None
    assert reader.problems == []
    reader = EnvReader({"DIALER_MAX_CONCURRENT": "5", "MAX_CALLS": "1"})
    assert DialerSettings.read(reader, required=False) is None
    assert reader.problems == []


def test_a_one_call_box_without_the_dialer_loads(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text(
        "DIALER_TIMEZONE=America/Mexico_City\nDIALER_MAX_CONCURRENT=2\nMAX_CALLS=1\nOPENAI_API_KEY=sk-test\n"
        "ARI_PASSWORD=ari-test\n"
    )
    assert load_all(env).bridge.limits.max_calls == 1
    with pytest.raises(ConfigError) as caught:
        load_all(env, dialer_required=True)  # where the dialer runs
    assert caught.value.variables == ("DIALER_MAX_CONCURRENT",)


def test_the_dialers_metrics_port_is_its_own() -> None:
    assert DialerSettings.from_values(MINIMAL).metrics_port == 0  # none unless asked
    assert (
        DialerSettings.from_values({**MINIMAL, "DIALER_METRICS_PORT": "9465", "METRICS_PORT": "9464"}).metrics_port
        == 9465
    )
    [problem] = problems({**MINIMAL, "DIALER_METRICS_PORT": "9464", "METRICS_PORT": "9464"})
    assert problem.startswith("DIALER_METRICS_PORT is 9464, the same as METRICS_PORT (openai-inbound-calls' metrics)")
    [problem] = problems({**MINIMAL, "DIALER_METRICS_PORT": "70000"})
    assert problem.startswith("DIALER_METRICS_PORT is '70000'")
    # Both off is no collision.
    assert DialerSettings.from_values({**MINIMAL, "DIALER_METRICS_PORT": "0", "METRICS_PORT": "0"}).metrics_port == 0
