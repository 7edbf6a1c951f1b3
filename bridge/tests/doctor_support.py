"""What the doctor's tests share: recorded Asterisk 22 and systemd output, a box that answers commands like
the real one (and changes state when ``systemctl start`` runs), and a healthy set of files on disk."""

from __future__ import annotations

import base64
import json
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import MappingProxyType
from typing import Any

from centralita.calls.status import StatusReporter
from centralita.doctor.commands import CommandResult
from centralita.doctor.context import Options
from centralita.doctor.probes import Filesystem, ProbeError, Route

# A real non-root account on any Debian box, standing in for asterisk:asterisk and the operator.
NOBODY = 65534
STAND_IN_USER = "nobody"
STAND_IN_GROUP = "nogroup"

# ---- recorded output (Asterisk 22.5, Debian forky; systemd 257) ---------------------------------------

VERSION = "Asterisk 22.5.2 built by debian @ forky on a x86_64 running Linux on 2025-08-14 10:12:03 UTC\n"
ASTERISK_DOWN = "Unable to connect to remote asterisk (does /var/run/asterisk/asterisk.ctl exist?)\n"

MODULE_PJSIP_RUNNING = """\
Module                         Description                              Use Count  Status      Support Level
chan_pjsip.so                  PJSIP Channel Driver                     0          Running              core
1 modules loaded
"""
MODULE_PJSIP_MISSING = """\
Module                         Description                              Use Count  Status      Support Level
0 modules loaded
"""
MODULE_SIP_RUNNING = """\
Module                         Description                              Use Count  Status      Support Level
chan_sip.so                    Session Initiation Protocol (SIP)        0          Running          extended
1 modules loaded
"""

REGISTRATIONS_OK = """\

 <Registration/ServerURI..............................>  <Auth..........>  <Status.......>
==========================================================================================

 provider-registration/sip:sip.example.net:5060          provider-auth     Registered        (exp. 3527s)

Objects found: 1

"""
REGISTRATIONS_REJECTED = REGISTRATIONS_OK.replace("Registered        (exp. 3527s)", "Rejected")
SIP_REGISTRY_OK = """\
Host                                    dnsmgr Username       Refresh State                Reg.Time
sip.example.net:5060                    N      centralita         105 Registered           Tue, 25 Nov 2026 10:12:44
1 SIP registrations.
"""

DIALPLAN_FROM_VOIP = """\
[ Context 'from-voip' created by 'pbx_config' ]
  '6000' =>         1. NoOp(Centralita: echo test call from ${FILTER(0-9+,${CALLERID(num)})}) [extensions.conf:22]
                    2. Answer()                                   [extensions.conf:23]
                    3. Echo()                                     [extensions.conf:24]
                    4. Hangup()                                   [extensions.conf:25]
  '_[+0-9a-zA-Z].' => 1. Set(CENTRALITA_DID=${FILTER(0-9+,${EXTEN})}) [extensions.conf:27]
                    2. Set(CALLERID(num)=${FILTER(0-9+,${CALLERID(num)})}) [extensions.conf:28]
                    3. Set(CALLERID(name)=${FILTER(0-9A-Za-z\\x20,${CALLERID(name)})}) [extensions.conf:29]
                    4. Set(CHANNEL(language)=es)                  [extensions.conf:30]
                    5. NoOp(Centralita: inbound call from ${FILTER(0-9+,${CALLERID(num)})} to ${CENTRALITA_DID}) [extensions.conf:31]
                    6. Stasis(centralita,inbound,${CENTRALITA_DID}) [extensions.conf:32]
                    7. GotoIf($["${STASISSTATUS}" = "FAILED"]?centralita-unavailable,s,1) [extensions.conf:33]
                    8. Hangup()                                   [extensions.conf:34]
  's' =>            1. Set(CENTRALITA_DID=)                       [extensions.conf:36]
                    2. Set(CALLERID(num)=${FILTER(0-9+,${CALLERID(num)})}) [extensions.conf:37]
                    3. Set(CALLERID(name)=${FILTER(0-9A-Za-z\\x20,${CALLERID(name)})}) [extensions.conf:38]
                    4. Set(CHANNEL(language)=es)                  [extensions.conf:39]
                    5. NoOp(Centralita: inbound call from ${FILTER(0-9+,${CALLERID(num)})} to ${CENTRALITA_DID}) [extensions.conf:40]
                    6. Stasis(centralita,inbound,${CENTRALITA_DID}) [extensions.conf:41]
                    7. GotoIf($["${STASISSTATUS}" = "FAILED"]?centralita-unavailable,s,1) [extensions.conf:42]
                    8. Hangup()                                   [extensions.conf:43]

-= 3 extensions (20 priorities) in 1 context. =-
"""  # noqa: E501 - recorded output keeps Asterisk's own line lengths
NO_CONTEXT = "There is no existence of 'from-voip' context\n"
CHANNELS = "2 active channels\n1 active call\n57 calls processed\n"
ARI_APPS = "Application Name         \n=========================\ncentralita               \n"
ARI_NO_APPS = "Application Name         \n=========================\n"
WAITFULLYBOOTED = "Asterisk has fully booted.\n"


def unit_show(
    load: str = "loaded", active: str = "active", sub: str = "running", user: str = "", env_file: str = ""
) -> str:
    """``systemctl show --property=LoadState,ActiveState,SubState,User,ExecStart`` output."""
    exec_start = ""
    if env_file:
        binary = "/usr/local/asterisk/venv/bin/openai-inbound-calls"
        exec_start = (
            f"{{ path={binary} ; argv[]={binary} --env-file {env_file} --prompt "
            "/usr/local/asterisk/prompts/asistente_entrante.es.txt ; ignore_errors=no ; start_time=[n/a] ; "
            "stop_time=[n/a] ; pid=0 ; code=(null) ; status=0/0 }"
        )
    return f"User={user}\nExecStart={exec_start}\nLoadState={load}\nActiveState={active}\nSubState={sub}\n"


# ---- the rendered files ------------------------------------------------------------------------------

MODULES_CONF = """\
; Ansible managed
[modules]
autoload=yes
require => res_pjsip.so
require => chan_pjsip.so
require => res_pjsip_outbound_registration.so
require => res_ari.so
noload => chan_sip.so
noload => chan_iax2.so
"""
PJSIP_TRUNK_CONF = """\
; Ansible managed
; The SIP trunk to the VoIP provider. Calls from its addresses land in [from-voip].

[provider]
type=endpoint
transport=transport-udp
context=from-voip
disallow=all
allow=ulaw,alaw
aors=provider
outbound_auth=provider-auth
language=es

[provider]
type=aor
contact=sip:127.0.0.1:5070
qualify_frequency=0

[provider-identify]
type=identify
endpoint=provider
match=127.0.0.1/32

[provider-auth]
type=auth
auth_type=userpass
username=centralita-test
password=not\\;a-real-secret

[provider-acl]
type=acl
deny=0.0.0.0/0.0.0.0
permit=127.0.0.1/32
"""
REGISTRATION_BLOCK = """
[provider-registration]
type=registration
transport=transport-udp
outbound_auth=provider-auth
server_uri=sip:sip.example.net:5060
client_uri=sip:centralita-test@sip.example.net
line=yes
endpoint=provider
"""
OTHER_FILES = ("extensions.conf", "http.conf", "ari.conf", "logger.conf", "rtp.conf", "pjsip.conf")


def make_asterisk_dir(root: Path, *, registration: bool = False) -> Path:
    """/etc/asterisk as the role renders it for PJSIP, owned by the stand-in user, mode 0640."""
    directory = root / "asterisk"
    directory.mkdir()
    (directory / "modules.conf").write_text(MODULES_CONF)
    (directory / "pjsip_trunk.conf").write_text(PJSIP_TRUNK_CONF + (REGISTRATION_BLOCK if registration else ""))
    for name in OTHER_FILES:
        (directory / name).write_text("; Ansible managed\n")
    for path in (directory, *directory.iterdir()):
        os.chown(path, NOBODY, NOBODY)
        if path.is_file():
            path.chmod(0o640)
    return directory


def make_app_dir(root: Path, env_text: str) -> Path:
    """/usr/local/asterisk as the role lays it out: root's, with the venv and the wheelhouse, writable by root
    alone; prompts/ the stand-in operator's; the .env 0600 (owned by root here)."""
    app = root / "app"
    (app / "prompts").mkdir(parents=True)
    (app / "prompts" / "asistente_entrante.es.txt").write_text("Eres el asistente.\n")
    (app / "venv" / "bin").mkdir(parents=True)
    (app / "venv" / "bin" / "python").symlink_to("/usr/bin/python3")
    (app / "wheels").mkdir()
    for path in (app, app / "venv", app / "venv" / "bin", app / "wheels"):
        os.chown(path, 0, 0)
        path.chmod(0o755)
    for path in (app / "prompts", app / "prompts" / "asistente_entrante.es.txt"):
        os.chown(path, NOBODY, NOBODY)
    env = app / ".env"
    env.write_text(env_text)
    env.chmod(0o600)
    return app


def env_text(**values: str) -> str:
    """A .env as the role renders it (the stand-in user as APP_OWNER), with ``values`` replacing defaults."""
    base = {
        "OPENAI_API_KEY": "sk-centralita-fake",
        "OPENAI_BASE_URL": "ws://127.0.0.1:9/v1/realtime",
        "OPENAI_MODEL": "gpt-realtime",
        "ARI_URL": "http://127.0.0.1:9",
        "ARI_USER": "centralita",
        "ARI_PASSWORD": ARI_PASSWORD,
        "ARI_APP": "centralita",
        "WS_PING_INTERVAL": "20",
        "WS_PING_TIMEOUT": "10",
        "LOG_FILE": "/nonexistent/inbound_openai.log",
        "APP_OWNER": STAND_IN_USER,
    }
    base.update(values)
    return "".join(f"{key}={value}\n" for key, value in base.items() if value is not None)


# ---- ARI -------------------------------------------------------------------------------------------

ARI_USER = "centralita"
ARI_PASSWORD = "ari-secret-0123456789"
ASTERISK_INFO = MappingProxyType(
    {
        "build": {"os": "Linux", "kernel": "6.12.0", "machine": "x86_64", "user": "debian", "date": "2025-08-14"},
        "system": {"version": "22.5.2", "entity_id": "02:42:ac:11:00:02"},
        "config": {"name": "", "default_language": "en", "setid": {"user": "", "group": ""}},
        "status": {"startup_time": "2026-11-25T10:00:00.000+0000", "last_reload_time": "2026-11-25T10:00:00.000+0000"},
    }
)


class _Ari(BaseHTTPRequestHandler):
    """Asterisk's HTTP server as ARI clients see it: Basic auth, JSON bodies, 404 for unknown resources."""

    def do_GET(self) -> None:
        expected = "Basic " + base64.b64encode(f"{ARI_USER}:{ARI_PASSWORD}".encode()).decode()
        if self.headers.get("Authorization") != expected:
            self._reply(401, {"message": "Authentication required"}, {"WWW-Authenticate": 'Basic realm="Asterisk"'})
        elif self.path == "/ari/asterisk/info":
            self._reply(200, dict(ASTERISK_INFO))
        else:
            self._reply(404, {"error": "Not found"})

    def _reply(self, status: int, body: object, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        return None


@contextmanager
def ari_server() -> Iterator[str]:
    """A local ARI on an ephemeral port; yields its URL (ARI_URL)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ari)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


# ---- a box that answers commands ---------------------------------------------------------------------


@dataclass
class FakeBox:
    """Answers ``asterisk -rx``, ``asterisk -V``, ``systemctl show|start`` and ``git config`` like the real box.

    ``units`` maps a unit (without ``.service``) to its ``systemctl show`` text; ``systemctl start`` of an
    installed unit makes it active (and, for asterisk, makes ``asterisk -rx`` answer). ``calls`` records every
    argv run.
    """

    rx: dict[str, str] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    asterisk_up: bool = True
    app_registered: bool = True
    safe_directories: tuple[str, ...] = ()
    start_fails: bool = False
    calls: list[tuple[str, ...]] = field(default_factory=list)

    @classmethod
    def healthy(cls) -> FakeBox:
        return cls(
            rx={
                "core show version": VERSION,
                "module show like chan_pjsip": MODULE_PJSIP_RUNNING,
                "pjsip show registrations": REGISTRATIONS_OK,
                "dialplan show from-voip": DIALPLAN_FROM_VOIP,
                "core show channels count": CHANNELS,
                "core waitfullybooted": WAITFULLYBOOTED,
            },
            units={
                "asterisk": unit_show(),
                "openai-inbound-calls": unit_show(user=""),
                "openai-outbound-calls": unit_show(),
            },
        )

    def stop(self, unit: str) -> None:
        self.units[unit] = unit_show(active="inactive", sub="dead")
        if unit == "asterisk":
            self.asterisk_up = False
        if unit == "openai-inbound-calls":
            self.app_registered = False

    def uninstall(self, unit: str) -> None:
        self.units[unit] = unit_show(load="not-found", active="inactive", sub="dead")

    def __call__(self, argv: Sequence[str], timeout: float) -> CommandResult:
        args = tuple(argv)
        self.calls.append(args)
        if args[:2] == ("asterisk", "-rx"):
            if not self.asterisk_up:
                return CommandResult(1, ASTERISK_DOWN)
            if args[2] == "ari show apps":
                listed = self.rx.get("ari show apps", ARI_APPS)  # a test may list other apps (the workers')
                return CommandResult(0, listed if self.app_registered else ARI_NO_APPS)
            if args[2].startswith("dialplan show "):
                context = args[2].removeprefix("dialplan show ")
                text = self.rx.get(args[2], f"There is no existence of '{context}' context\n")
                return CommandResult(0, text)
            return CommandResult(0, self.rx.get(args[2], f"No such command '{args[2]}' (type 'core show help')\n"))
        if args == ("asterisk", "-V"):
            return CommandResult(0, "Asterisk 22.5.2\n")
        if args[:2] == ("systemctl", "show"):
            unit = args[-1].removesuffix(".service")
            return CommandResult(0, self.units.get(unit, unit_show(load="not-found", active="inactive", sub="dead")))
        if args[:2] == ("systemctl", "start"):
            unit = args[2].removesuffix(".service")
            if self.start_fails or "LoadState=not-found" in self.units.get(unit, "LoadState=not-found"):
                return CommandResult(1, "", f"Job for {unit}.service failed because the control process exited.\n")
            self.units[unit] = unit_show()
            if unit == "asterisk":
                self.asterisk_up = True
            if unit == "openai-inbound-calls":
                self.app_registered = True
            return CommandResult(0)
        if args[:1] == ("git",):
            return CommandResult(0 if self.safe_directories else 1, "".join(f"{d}\n" for d in self.safe_directories))
        return CommandResult(127, "", f"{args[0]}: command not found")


def lo_route(address: str) -> Route:
    """The route the kernel gives for loopback, without asking it (see test_doctor_network for the real one)."""
    if address.startswith("127."):
        return Route(address, "lo", None, "127.0.0.1")
    return Route(address, "eth0", "192.0.2.1", "192.0.2.2")


def static_resolve(host: str) -> list[str]:
    """/etc/hosts-like resolution for the tests: addresses stay, two names resolve, the rest fail."""
    names = {"localhost": ["127.0.0.1"], "sip.example.net": ["203.0.113.5"], "api.openai.com": ["162.159.140.245"]}
    if host in names:
        return names[host]
    if host.replace(".", "").isdigit() or ":" in host:
        return [host]
    raise ProbeError("Name or service not known")


def options(tmp_path: Path, box: FakeBox, env: Path, **changes: object) -> Options:
    """Options for a box laid out under ``tmp_path`` (see make_asterisk_dir and make_app_dir)."""
    base = Options(
        env_file=env,
        asterisk_dir=tmp_path / "asterisk",
        app_dir=env.parent,
        log_file=tmp_path / "inbound_openai.log",
        timeout=2.0,
        asterisk_user=STAND_IN_USER,
        asterisk_group=STAND_IN_GROUP,
        settle_seconds=1.0,
        runner=box,
        resolve=static_resolve,
        route=lo_route,
        disk_paths=(),
        filesystem=roomy_filesystem,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def roomy_filesystem(path: Path) -> Filesystem:
    """Every path on one 100 GiB filesystem, half of it free: the box's disk is not what a test is about (the
    machine running the tests may have little room), unless it passes its own ``filesystem``."""
    return Filesystem(
        device=1, size=100 * 2**30, available=50 * 2**30, inodes=1000, inodes_available=900, read_only=False
    )


def healthy_status(**changes: Any) -> dict[str, Any]:
    """A health snapshot as a healthy openai-inbound-calls writes it (calls/status.py), with ``changes``."""
    base: dict[str, Any] = {
        "service": "openai-inbound-calls",
        "active_calls": 3,
        "limits": {"max_calls": 20, "max_per_caller": 2, "max_per_caller_per_minute": 6},
        "refused": {},
        "records": {"written": 120, "queued": 0, "lost": 0, "failing": False, "last_error": ""},
        "budget": {
            "limited": True,
            "known": True,
            "spent": False,
            "day_spent": "1.25",
            "month_spent": "30.5",
            "daily_limit": "100",
            "monthly_limit": "2000",
            "currency": "USD",
            "prices_as_of": "2025-08-28",
        },
    }
    base.update(changes)
    return base


def write_status(path: Path, state: dict[str, Any]) -> Path:
    """Write ``state`` where the service would (STATUS_FILE), as the service writes it."""
    StatusReporter(path, lambda: state).write()
    return path
