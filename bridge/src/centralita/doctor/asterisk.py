"""Checks of Asterisk: the daemon, its files under /etc/asterisk, the SIP driver, the trunk's registration,
the inbound context, the channels up now, and ARI with the bridge's credentials."""

from __future__ import annotations

import functools
import grp
import pwd
import re
import shlex
import stat
from pathlib import Path
from urllib.parse import urlsplit

from centralita.config.env import redact_url
from centralita.doctor.commands import asterisk_down, asterisk_rx
from centralita.doctor.context import ASTERISK_UNIT, Context
from centralita.doctor.fixes import owner_of, set_owner_and_mode, start_service, walk
from centralita.doctor.model import Repair, Result, join
from centralita.doctor.sipconf import Driver, Trunk
from centralita.telephony.ari import AriEndpoint, AriError, AriRest

# The files the asterisk role renders whatever the SIP driver (the driver's own come from Driver.files).
COMMON_FILES: tuple[str, ...] = ("extensions.conf", "http.conf", "ari.conf", "modules.conf", "logger.conf", "rtp.conf")
FULL_LOG = "/var/log/asterisk/full"
RESTART_ASTERISK = "systemctl restart asterisk (this drops calls in progress: asterisk -rx 'core show channels count')"
_PJSIP_STATES = ("Registered", "Unregistered", "Rejected", "Stopped")
_SIP_STATES = (
    "Registered",
    "Unregistered",
    "Request Sent",
    "Auth. Sent",
    "Rejected",
    "Failed",
    "No Authentication",
    "Timeout",
)
_EXTENSIONS = re.compile(r"-= (\d+) extensions? \((\d+) priorit(?:y|ies)\) in (\d+) contexts?\. =-")


def _not_running(name: str) -> Result:
    return Result.skipped(name, "Asterisk does not answer asterisk -rx", "asterisk.service")


def check_service(ctx: Context) -> list[Result]:
    """Asterisk runs and answers ``asterisk -rx`` (every other Asterisk check needs that)."""
    name = "asterisk.service"
    unit = ctx.unit(ASTERISK_UNIT)
    answer = ctx.asterisk_version
    if ctx.asterisk_running:
        return [Result.ok(name, f"running: {answer.stdout.strip().splitlines()[0][:120]}")]
    why = answer.text or f"exit code {answer.rc}"
    logs = f"journalctl -u asterisk -n 50 --no-pager; tail -n 50 {FULL_LOG}"
    if isinstance(unit, str):
        seen = f"asterisk -rx does not answer ({why}); systemctl: {unit}"
        return [Result.fail(name, seen, f"systemctl start asterisk; {logs}")]
    if not unit.installed:
        return [
            Result.fail(
                name,
                f"asterisk.service is {unit.load_state} and asterisk -rx does not answer ({why})",
                "install Asterisk with the playbook: ansible-playbook site.yml --tags asterisk",
            )
        ]
    if not unit.active:
        runner, timeout = ctx.options.runner, ctx.options.timeout

        def booted() -> bool:
            return not asterisk_down(asterisk_rx(runner, "core waitfullybooted", timeout))

        repair: Repair = functools.partial(
            start_service, runner, ASTERISK_UNIT, timeout, booted, ctx.options.settle_seconds
        )
        return [
            Result.fail(
                name,
                f"asterisk.service is {unit.active_state} ({unit.sub_state}); asterisk -rx does not answer",
                f"systemctl start asterisk; if it stops again, read why: {logs}",
                repair,
            )
        ]
    return [
        Result.fail(
            name,
            f"asterisk.service is {unit.active_state} but asterisk -rx does not answer ({why})",
            f"check the control socket (ls -l /var/run/asterisk/asterisk.ctl), read {FULL_LOG}, then: "
            + RESTART_ASTERISK,
        )
    ]


def _paths_fix(paths: list[Path], owner: str, mode: int | None, directory: Path) -> str:
    if len(paths) <= 5:
        listed = " ".join(str(path) for path in paths)
        commands = [f"chown {owner} {listed}"]
        if mode is not None:
            commands.append(f"chmod {mode:04o} {listed}")
        return " && ".join(commands)
    user, group = owner.split(":", 1)
    command = f"find {directory} \\( ! -user {user} -o ! -group {group} \\) -exec chown -h {owner} {{}} +"
    if mode is not None:
        names = sorted({path.name for path in paths})
        command += f" && chmod {mode:04o} " + " ".join(str(directory / name) for name in names)
    return command


def check_files(ctx: Context) -> list[Result]:
    """Every file under /etc/asterisk is asterisk:asterisk, and the rendered ones are mode 0640."""
    name = "asterisk.files"
    options = ctx.options
    directory = options.asterisk_dir
    owner = f"{options.asterisk_user}:{options.asterisk_group}"
    try:
        uid = pwd.getpwnam(options.asterisk_user).pw_uid
        gid = grp.getgrnam(options.asterisk_group).gr_gid
    except KeyError:
        return [
            Result.fail(
                name,
                f"the user or group {owner} does not exist on this box",
                "install Asterisk with the playbook (it creates them): ansible-playbook site.yml --tags asterisk",
            )
        ]
    if not directory.is_dir():
        return [Result.fail(name, f"{directory} does not exist", "ansible-playbook site.yml --tags asterisk")]
    rendered = [directory / file for file in (*COMMON_FILES, *ctx.sip.driver.files)]
    missing = [path for path in rendered if not path.exists()]
    bad_rendered: list[Path] = []
    bad_other: list[Path] = []
    seen: list[str] = []
    for path, info in walk(directory):
        mode = stat.S_IMODE(info.st_mode)
        wrong_owner = (info.st_uid, info.st_gid) != (uid, gid)
        if path in rendered:
            if wrong_owner or mode != options.config_mode:
                bad_rendered.append(path)
                seen.append(f"{path} is {owner_of(info)} {mode:04o}")
        elif wrong_owner:
            bad_other.append(path)
            seen.append(f"{path} is {owner_of(info)}")
    if not missing and not bad_rendered and not bad_other:
        return [
            Result.ok(
                name,
                f"{len(rendered)} rendered files ({', '.join(path.name for path in rendered)}) are {owner} "
                f"{options.config_mode:04o}; nothing under {directory} has another owner",
            )
        ]
    fixes: list[str] = []
    if bad_rendered:
        fixes.append(_paths_fix(bad_rendered, owner, options.config_mode, directory))
    if bad_other:
        fixes.append(_paths_fix(bad_other, owner, None, directory))
    repair: Repair | None = None
    if bad_rendered or bad_other:
        fixes.append(f"then, so Asterisk reads them: {RESTART_ASTERISK}")

        def repair_files() -> list[str]:
            # No restart: it would drop calls, and a running module needs none (asterisk.sip_module says if so).
            return set_owner_and_mode(bad_rendered, uid, gid, options.config_mode) + set_owner_and_mode(
                bad_other, uid, gid, None
            )

        repair = repair_files
    if missing:
        seen.insert(0, "missing: " + ", ".join(str(path) for path in missing))
        fixes.insert(0, "render the missing files with the playbook: ansible-playbook site.yml --tags asterisk")
    return [
        Result.fail(
            name,
            f"want {owner}"
            + (f" and {options.config_mode:04o} for rendered files" if bad_rendered else "")
            + ": "
            + join(seen, 8),
            "; ".join(fixes),
            repair,
        )
    ]


def module_running(output: str, module: str) -> bool:
    """Whether ``module show like <module>`` lists ``<module>.so`` as Running."""
    for line in output.splitlines():
        if line.startswith(f"{module}.so") and "Not Running" not in line and re.search(r"\sRunning\b", line):
            return True
    return False


def check_sip_module(ctx: Context) -> list[Result]:
    """The box's SIP channel driver (chan_pjsip, or chan_sip on Asterisk 20 and older) is loaded."""
    name = "asterisk.sip_module"
    if not ctx.asterisk_running:
        return [_not_running(name)]
    setup = ctx.sip
    module = setup.driver.module
    answer = ctx.rx(f"module show like {module}")
    count = next((line.strip() for line in answer.stdout.splitlines() if "modules loaded" in line), "no answer")
    if answer.ok and module_running(answer.stdout, module):
        return [Result.ok(name, f"{module}.so is Running (driver {setup.driver}, from {setup.detected_from})")]
    return [
        Result.fail(
            name,
            f"{module}.so is not running ({count}); the box uses {setup.driver} (from {setup.detected_from})",
            f"find why it declined: grep -E '{module}|{setup.driver.trunk_file}|declined' {FULL_LOG} | tail -n 20 "
            f"(usually a file Asterisk cannot read, see asterisk.files); fix that, then: {RESTART_ASTERISK}; "
            f"check: asterisk -rx 'module show like {module}'",
        )
    ]


def registrations(output: str, driver: Driver) -> list[tuple[str, str]]:
    """(registration, state) pairs from ``pjsip show registrations`` or ``sip show registry``."""
    found: list[tuple[str, str]] = []
    if driver is Driver.PJSIP:
        for line in output.splitlines():
            words = line.split()
            if not words or "/sip" not in words[0]:
                continue
            state = next((word for word in words[1:] if word in _PJSIP_STATES), "unknown")
            found.append((words[0], state))
        return found
    for line in output.splitlines():
        if not line.strip() or line.startswith("Host") or "SIP registration" in line:
            continue
        sip_state = next((known for known in _SIP_STATES if f" {known} " in f" {line} "), None)
        if sip_state is not None:
            found.append((line.split()[0], sip_state))
    return found


def check_registration(ctx: Context) -> list[Result]:
    """When the trunk registers to the provider, the registration is Registered."""
    name = "asterisk.registration"
    trunk = ctx.trunk
    if not isinstance(trunk, Trunk):
        return [Result.skipped(name, trunk, "asterisk.files")]
    if not trunk.registration:
        return [Result.ok(name, f"no registration configured in {trunk.source} (the provider sends calls to this box)")]
    if not ctx.asterisk_running:
        return [_not_running(name)]
    driver = ctx.sip.driver
    answer = ctx.rx(driver.registrations_command)
    found = registrations(answer.stdout, driver)
    if any(state == "Registered" for _, state in found):
        return [Result.ok(name, "; ".join(f"{what} {state}" for what, state in found))]
    seen = "; ".join(f"{what} {state}" for what, state in found) or (answer.text[:200] or "no registration listed")
    if driver is Driver.PJSIP:
        fix = (
            "check the trunk's host, username and secret (inventory asterisk_sip_trunk; "
            f"{trunk.source}), then retry and watch: asterisk -rx 'pjsip send register *all'; "
            "asterisk -rx 'pjsip show registrations'; the provider's answer: "
            f"grep -iE 'registration|401|403' {FULL_LOG} | tail -n 20"
        )
    else:
        fix = (
            f"check the register => line in {trunk.source} (inventory asterisk_sip_trunk), then: "
            f"asterisk -rx 'sip reload'; asterisk -rx 'sip show registry'; grep -i regist {FULL_LOG} | tail -n 20"
        )
    return [Result.fail(name, f"not registered: {seen}", fix)]


def check_dialplan(ctx: Context) -> list[Result]:
    """The inbound context (from-voip) is loaded and sends calls to the Stasis app."""
    name = "asterisk.dialplan"
    if not ctx.asterisk_running:
        return [_not_running(name)]
    context = ctx.inbound_context
    app = ctx.env.get("ARI_APP", "centralita")
    answer = ctx.rx(f"dialplan show {context}")
    if f"[ Context '{context}'" not in answer.stdout:
        return [
            Result.fail(
                name,
                f"context {context} is not in the dialplan ({answer.text[:160] or 'no answer'})",
                f"check it is in the file: grep -n '^\\[{context}\\]' {ctx.options.asterisk_dir}/extensions.conf "
                "(if not, render it: ansible-playbook site.yml --tags asterisk), then: asterisk -rx 'dialplan reload'",
            )
        ]
    counted = _EXTENSIONS.search(answer.stdout)
    size = f"{counted.group(1)} extensions, {counted.group(2)} priorities" if counted else "loaded"
    if f"Stasis({app}" not in answer.stdout:
        return [
            Result.fail(
                name,
                f"context {context} ({size}) never runs Stasis({app}): calls do not reach the assistant",
                "render extensions.conf again: ansible-playbook site.yml --tags asterisk "
                f"(ARI_APP={app} must match asterisk_stasis_app), then: asterisk -rx 'dialplan reload'",
            )
        ]
    return [Result.ok(name, f"context {context}: {size}, calls go to Stasis({app})")]


def check_channels(ctx: Context) -> list[Result]:
    """How many channels and calls are up now (information: nothing to fix)."""
    name = "asterisk.channels"
    if not ctx.asterisk_running:
        return [_not_running(name)]
    answer = ctx.rx("core show channels count")
    lines = [line.strip() for line in answer.stdout.splitlines() if re.match(r"^\s*\d+ ", line)]
    if not answer.ok or not lines:
        return [Result.warn(name, f"no count from core show channels count: {answer.text[:160]!r}")]
    return [Result.ok(name, ", ".join(lines))]


def check_ari(ctx: Context) -> list[Result]:
    """GET /ari/asterisk/info with ARI_USER and ARI_PASSWORD answers 200."""
    name = "asterisk.ari"
    env = ctx.env
    url = env.get("ARI_URL", "http://127.0.0.1:8088")
    user = env.get("ARI_USER", "centralita")
    password = env.get("ARI_PASSWORD")
    if not password:
        return [Result.skipped(name, f"ARI_PASSWORD is not set in {env.path}", "env.settings")]
    parts = urlsplit(url)
    where = f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"
    secret_file = ctx.options.ari_secret_file
    rest = AriRest(AriEndpoint(url, user, password, env.get("ARI_APP", "centralita")), ctx.options.timeout)
    try:
        info = rest.request("GET", "/asterisk/info")
    except AriError as error:
        if error.status == 401:
            return [
                Result.fail(
                    name,
                    f"ARI at {url} refused user {user} with the ARI_PASSWORD in {env.path} (401)",
                    f"put the ARI secret into {env.path}: ARI_PASSWORD=<the content of {secret_file}> "
                    "(or re-run the playbook: ansible-playbook site.yml --tags bridge), then: "
                    "systemctl restart openai-inbound-calls; test: "
                    + ari_curl(user, secret_file, f"{url.rstrip('/')}/ari/asterisk/info"),
                )
            ]
        if error.status is None:
            if not ctx.asterisk_running:
                fix = "start Asterisk (see asterisk.service): systemctl start asterisk"
            else:
                fix = (
                    f"Asterisk's HTTP server must listen on {where}: asterisk -rx 'http show status' should say "
                    f"'Server Enabled and Bound to {where}'; {ctx.options.asterisk_dir}/http.conf needs enabled=yes, "
                    f"bindaddr={parts.hostname}, bindport={parts.port or 8088} (re-render it: ansible-playbook "
                    f"site.yml --tags asterisk), then: {RESTART_ASTERISK}"
                )
            return [Result.fail(name, f"cannot reach ARI at {url}: {error}", fix)]
        if error.status == 404:
            fix = (
                "ARI is not enabled: asterisk -rx 'module show like res_ari' must list res_ari.so Running and "
                f"{ctx.options.asterisk_dir}/ari.conf needs enabled=yes; re-render: ansible-playbook site.yml "
                f"--tags asterisk, then: {RESTART_ASTERISK}"
            )
        else:
            fix = f"read {FULL_LOG} around this time (grep -i ari {FULL_LOG} | tail -n 20)"
        return [Result.fail(name, f"ARI at {url} answered {error}", fix)]
    version = ""
    if isinstance(info, dict):
        version = str((info.get("system") or {}).get("version") or "")
    return [Result.ok(name, f"{url} answers 200 for user {user}" + (f" (Asterisk {version})" if version else ""))]


def ari_curl(user: str, secret_file: Path, url: str) -> str:
    """A shell command that GETs ``url`` as ``user`` with the password in ``secret_file``: sed hands curl the
    credentials on a pipe (``-K -``), so the password is never on a command line, where ``ps`` would show it."""
    quoted = user.replace("\\", "\\\\").replace('"', '\\"')  # curl's config syntax
    for special in ("\\", "/", "&"):  # sed's replacement syntax
        quoted = quoted.replace(special, "\\" + special)
    script = f's/^/user = "{quoted}:/; s/$/"/'
    return f"sed {shlex.quote(script)} {shlex.quote(str(secret_file))} | curl -s -K - {shlex.quote(redact_url(url))}"


def app_registered(output: str, app: str) -> bool:
    """Whether ``ari show apps`` output lists the Stasis app ``app``."""
    return app in (line.strip() for line in output.splitlines())


__all__ = [
    "COMMON_FILES",
    "app_registered",
    "check_ari",
    "check_channels",
    "check_dialplan",
    "check_files",
    "check_registration",
    "check_service",
    "check_sip_module",
    "module_running",
    "registrations",
]
