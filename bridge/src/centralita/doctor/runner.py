"""The checks in the order the report lists them, one run of them, and the ``--fix`` pass.

A check that crashes becomes a FAIL line of its own instead of ending the run: the operator still gets
every other answer. Nothing a check says reaches the report unscrubbed: the password of any URL
(``user:password@``) and every secret of the .env are hidden, whatever a server or an error echoed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from centralita.config.env import redact_urls
from centralita.doctor import apis, asterisk, disk, envfile, health, network, system
from centralita.doctor.context import Context, Options
from centralita.doctor.model import Change, RepairError, Report, Result, Status

Check = Callable[[Context], list[Result]]


@dataclass(frozen=True, slots=True)
class CheckSpec:
    """A check function and the name its FAIL line takes if the check itself crashes."""

    name: str
    run: Check


# Settings first (everything reads them), then Asterisk (the bridge needs it), then the bridge, the remote
# APIs, and the routes. Repairs run in this order too: Asterisk's files get their owner back before
# Asterisk is started (it refuses to start without a file it requires), and Asterisk before the bridge.
CHECKS: tuple[CheckSpec, ...] = (
    CheckSpec("env.settings", envfile.check_settings),
    CheckSpec("env.ws_ping", envfile.check_ws_ping),
    CheckSpec("env.permissions", envfile.check_permissions),
    CheckSpec("asterisk.files", asterisk.check_files),
    CheckSpec("asterisk.service", asterisk.check_service),
    CheckSpec("asterisk.sip_module", asterisk.check_sip_module),
    CheckSpec("asterisk.registration", asterisk.check_registration),
    CheckSpec("asterisk.dialplan", asterisk.check_dialplan),
    CheckSpec("asterisk.channels", asterisk.check_channels),
    CheckSpec("asterisk.ari", asterisk.check_ari),
    CheckSpec("bridge.inbound_service", system.check_inbound_service),
    CheckSpec("bridge.outbound_service", system.check_outbound_service),
    CheckSpec("bridge.log", system.check_log),
    CheckSpec("bridge.health", health.check_health),
    CheckSpec("system.disk", disk.check_disk),
    CheckSpec("bridge.code", system.check_code),
    CheckSpec("bridge.app_dir", system.check_app_dir),
    CheckSpec("bridge.git", system.check_git),
    CheckSpec("openai.api_key", apis.check_openai_key),
    CheckSpec("routeros", apis.check_routers),
    CheckSpec("network.sip_provider", network.check_sip_provider),
    CheckSpec("network.openai", network.check_openai),
    CheckSpec("network.router", network.check_routers),
)


_HIDDEN = "**********"
_SHORTEST = 4  # a shorter "secret" would blot out words all over the report and hides nothing worth hiding


def scrub(text: str, secrets: Sequence[str]) -> str:
    """``text`` without URL passwords and without any of ``secrets`` (longest first, so none is half-hidden)."""
    text = redact_urls(text)
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= _SHORTEST:
            text = text.replace(secret, _HIDDEN)
    return text


def _scrubbed(result: Result, secrets: Sequence[str]) -> Result:
    return replace(result, seen=scrub(result.seen, secrets), fix=scrub(result.fix, secrets))


def run_checks(options: Options, checks: Sequence[CheckSpec] = CHECKS) -> tuple[Result, ...]:
    """Every check once, against a fresh Context; what they say is scrubbed of secrets."""
    ctx = Context(options)
    results: list[Result] = []
    for spec in checks:
        try:
            results.extend(spec.run(ctx))
        except Exception as error:  # a bug in one check must not hide the others' answers
            results.append(
                Result.fail(
                    spec.name,
                    f"the check itself failed: {type(error).__name__}: {error}",
                    "report it as a bug in centralita doctor, with the output of: centralita doctor --json",
                )
            )
    secrets = ctx.env.secrets
    return tuple(_scrubbed(result, secrets) for result in results)


def apply_repairs(results: Sequence[Result]) -> tuple[Change, ...]:
    """Run the repair of every result that is not OK and has one; what each changed, or why it stopped."""
    changes: list[Change] = []
    for result in results:
        if result.status is Status.OK or result.repair is None:
            continue
        try:
            lines = result.repair()
        except (OSError, RepairError) as error:
            changes.append(Change(result.name, (), redact_urls(str(error))))
            continue
        changes.append(Change(result.name, tuple(redact_urls(line) for line in lines)))
    return tuple(changes)


def diagnose(options: Options, *, fix: bool = False, checks: Sequence[CheckSpec] = CHECKS) -> Report:
    """Run the checks; with ``fix``, repair what is safe and check everything again."""
    results = run_checks(options, checks)
    if not fix:
        return Report(results)
    changes = apply_repairs(results)
    if not changes:
        return Report(results)
    return Report(run_checks(options, checks), changes)
