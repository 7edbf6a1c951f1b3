"""The fake Asterisk: channels, bridges and Stasis apps behind ARI's REST interface and events WebSocket.

Served on a real local HTTP port, as ARI documents them (status codes and messages included), for what the
bridge service, its calls and the dialer use:

* ``GET /ari/events?app=...`` upgraded to a WebSocket, on which each app gets the events of the channels in
  it (StasisStart with its args, StasisEnd) and of the channels it subscribed to (ChannelStateChange,
  ChannelVarset, Dial, ChannelDestroyed with its Q.850 cause);
* channels: ``POST /ari/channels`` (originate: 400 without ``endpoint`` or with both ``app`` and ``context``,
  409 when ``channelId`` is taken), ``GET /ari/channels`` and ``/ari/channels/{id}`` (a channel in Stasis shows
  ``dialplan.app_name`` ``Stasis`` and ``app_data`` ``<app>,<args>``, as Asterisk 16+ does), ``POST .../answer``,
  ``POST .../ring`` (the channel rings: 409 outside Stasis),
  ``POST .../continue`` (the channel leaves Stasis for the dialplan: StasisEnd), ``POST`` and ``GET
  .../variable``, ``DELETE /ari/channels/{id}`` (hang-up: StasisEnd, then ChannelDestroyed);
* ``POST /ari/channels/externalMedia``: a channel with a real RTP leg (``RtpLeg``) on its own UDP port, named
  in ``UNICASTRTP_LOCAL_ADDRESS``/``PORT``; the leg sends the customer's audio once its channel is in a
  bridge and records what it receives;
* bridges: ``POST /ari/bridges``, ``GET /ari/bridges`` and ``/ari/bridges/{id}``, ``POST .../addChannel`` and
  ``.../removeChannel``, ``DELETE /ari/bridges/{id}``;
* ``POST /ari/applications/{app}/subscription?eventSource=channel:{id}``;
* ``GET /ari/endpoints/{tech}/{resource}``: the ids of the channels named ``{tech}/{resource}-...`` (404 for
  an endpoint not in ``endpoints``, by default only ``PJSIP/provider``).

Every request is recorded (``Recorded``: method, path, query, JSON body, arrival time). Basic auth is
checked (401 otherwise). The test plays the other side: ``incoming_call`` sends a caller into a Stasis app
as the dialplan does, ``hang_up`` is the customer hanging up, ``answer``, ``set_var``, ``dial_status`` and
``vanish`` drive the dialer's originated channels, ``leg_of`` gives the RTP leg bridged with a channel, and
``fail`` / ``slow`` make chosen requests fail or answer late. Faults of Asterisk itself: ``drop_events`` (the
events connections break, Asterisk stays), ``restart`` (every channel and bridge gone, no event said so),
``mute`` (a leg stops sending RTP).
"""

from __future__ import annotations

import base64
import fnmatch
import itertools
import json
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from centralita_testing.fake_asterisk import websocket
from centralita_testing.fake_asterisk.rtp import LegHooks, LoopMedia, Media, RtpLeg

__all__ = ["Bridge", "Channel", "FakeAsterisk", "Recorded"]

JsonObject = dict[str, Any]
Outgoing = list[tuple[JsonObject, set[str]]]  # events and the apps they go to, sent once the lock is released


@dataclass(frozen=True)
class Recorded:
    """One request as the fake received it; ``at`` is its arrival on the monotonic clock."""

    method: str
    path: str
    query: dict[str, str]
    body: Any
    at: float = 0.0


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"


@dataclass
class Channel:
    """A channel: its snapshot fields, the Stasis app it is in ("" in the dialplan), its bridge and RTP leg."""

    id: str
    name: str
    state: str = "Down"
    caller: dict[str, str] = field(default_factory=lambda: {"name": "", "number": ""})
    dialplan: dict[str, Any] = field(default_factory=lambda: {"context": "default", "exten": "s", "priority": 1})
    channelvars: dict[str, str] = field(default_factory=dict)  # in the snapshot (originate, externalMedia)
    variables: dict[str, str] = field(default_factory=dict)  # set with POST .../variable
    app: str = ""
    bridge: str = ""
    leg: RtpLeg | None = None
    continued: list[tuple[str, str, int]] = field(default_factory=list)  # where POST .../continue sent it
    creationtime: str = field(default_factory=_stamp)
    stasis_args: tuple[str, ...] = ()  # the arguments of the Stasis() it runs (with app)
    rang: bool = False  # POST .../ring was asked for

    def snapshot(self) -> JsonObject:
        return {
            "id": self.id,
            "name": self.name,
            "state": self.state,
            "protocol_id": "",
            "caller": dict(self.caller),
            "connected": {"name": "", "number": ""},
            "accountcode": "",
            "dialplan": {
                **self.dialplan,
                "app_name": "Stasis" if self.app else "",
                "app_data": ",".join((self.app, *self.stasis_args)) if self.app else "",
            },
            "creationtime": self.creationtime,
            "language": "es",
            "channelvars": dict(self.channelvars),
        }


@dataclass
class Bridge:
    id: str
    name: str
    bridge_type: str = "mixing"
    channels: list[str] = field(default_factory=list)

    def snapshot(self) -> JsonObject:
        return {
            "id": self.id,
            "technology": "simple_bridge",
            "bridge_type": self.bridge_type,
            "bridge_class": "stasis",
            "creator": "Stasis",
            "name": self.name,
            "channels": list(self.channels),
            "creationtime": _stamp(),
            "video_mode": "none",
        }


@dataclass
class _Rule:
    method: str
    pattern: str
    times: int
    status: int = 0
    message: str = ""
    seconds: float = 0.0


class _Reply(Exception):
    """An ARI error answer: status and message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class FakeAsterisk:
    """The fake on 127.0.0.1:<free port>; a context manager. ``url`` is what ARI_URL would be.

    ``hooks`` decide what the RTP legs send and what becomes of what they receive (default: ``say`` and
    ``heard``); with ``hold_media`` no leg sends until ``release_media()``; with ``media_loop`` every leg runs
    on one thread (``LoopMedia``, for load) instead of a sending and a receiving thread.
    """

    def __init__(
        self,
        user: str = "centralita",
        password: str = "secreto",
        *,
        hooks: LegHooks | None = None,
        hold_media: bool = False,
        media_loop: bool = False,
        seed: int = 7,
    ) -> None:
        self.user = user
        self.password = password
        self.requests: list[Recorded] = []
        self.channels: dict[str, Channel] = {}
        self.bridges: dict[str, Bridge] = {}
        self.subscriptions: dict[str, set[str]] = {}  # app -> channel ids it subscribed to (besides its own)
        self.endpoints: set[str] = {"PJSIP/provider"}  # what GET /ari/endpoints/{tech}/{resource} knows
        self._sockets: list[websocket.EventSocket] = []
        self._rules: list[_Rule] = []
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._version = 0  # changes seen: what wait_until waits on
        self._counter = itertools.count(1)
        self._legs = itertools.count()
        self._rng = random.Random(seed)
        self._media = (LoopMedia if media_loop else Media)(hooks, hold=hold_media)
        self._expected_auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                fake._handle(self, "GET")

            def do_POST(self) -> None:
                fake._handle(self, "POST")

            def do_DELETE(self) -> None:
                fake._handle(self, "DELETE")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-asterisk-ari", daemon=True
        )

    # ---- lifecycle -------------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        self._media.start()
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the events connections, stop serving and free every port. Idempotent."""
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            sock.close()
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(5)
        self._server.server_close()
        self._media.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- what tests read -------------------------------------------------------------------------------

    def wait_until(self, condition: Callable[[], bool], timeout: float = 5.0) -> bool:
        """Whether ``condition()`` held within ``timeout``; checked after every change the fake sees (a request,
        an event), and every 10 ms. The condition runs without the fake's lock, so it may call ARI."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                seen = self._version
            if condition():
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with self._changed:
                if self._version == seen:
                    self._changed.wait(min(remaining, 0.01))

    def connected_apps(self) -> list[str]:
        with self._lock:
            return [sock.app for sock in self._sockets if sock.open]

    def requests_to(self, method: str, path: str) -> list[Recorded]:
        """The requests of ``method`` to ``path`` (a glob: ``/ari/channels/*/continue``), oldest first."""
        with self._lock:
            return [r for r in self.requests if r.method == method and fnmatch.fnmatchcase(r.path, path)]

    def leg_of(self, channel_id: str, timeout: float = 5.0) -> RtpLeg:
        """The RTP leg of the ExternalMedia channel bridged with ``channel_id``, waiting for it to be bridged."""
        found: list[RtpLeg] = []

        def bridged() -> bool:
            with self._lock:
                channel = self.channels.get(channel_id)
                bridge = self.bridges.get(channel.bridge) if channel is not None else None
                for other in bridge.channels if bridge is not None else ():
                    leg = self.channels[other].leg
                    if leg is not None:
                        found.append(leg)
                        return True
                return False

        if not self.wait_until(bridged, timeout):
            raise TimeoutError(f"no ExternalMedia channel bridged with {channel_id} within {timeout} s")
        return found[0]

    def release_media(self) -> None:
        """Let the legs held by ``hold_media`` send."""
        self._media.release()

    @property
    def media_skipped(self) -> int:
        """Frame slots the legs gave up because the media loop fell over 3 frames behind (``media_loop`` only)."""
        return int(getattr(self._media, "skipped", 0))

    # ---- the test drives the other side ------------------------------------------------------------------

    def fail(self, method: str, path: str, status: int, message: str, *, times: int = 1) -> None:
        """Answer the next ``times`` requests of ``method`` to ``path`` (a glob) with ``status`` and ``message``,
        doing nothing else."""
        with self._lock:
            self._rules.append(_Rule(method, path, times, status=status, message=message))

    def slow(self, method: str, path: str, seconds: float, *, times: int = 1) -> None:
        """Do what the next ``times`` requests of ``method`` to ``path`` ask at once (events included), but answer
        them ``seconds`` late."""
        with self._lock:
            self._rules.append(_Rule(method, path, times, seconds=seconds))

    def incoming_call(
        self,
        app: str = "centralita",
        args: Sequence[str] = ("inbound",),
        *,
        caller: str = "",
        channel_id: str | None = None,
        context: str = "from-voip",
    ) -> str:
        """A call arrives and the dialplan sends it to Stasis ``app`` with ``args``; its channel id."""
        with self._lock:
            number = next(self._counter)
            channel_id = channel_id or f"{time.time():.0f}.{number}"
            channel = Channel(
                id=channel_id,
                name=f"PJSIP/provider-{number:08x}",
                state="Ring",
                caller={"name": "", "number": caller},
                dialplan={"context": context, "exten": "s", "priority": 1},
            )
            self.channels[channel_id] = channel
        self.enter_stasis(channel_id, app, args)
        return channel_id

    def enter_stasis(self, channel_id: str, app: str, args: Sequence[str] = (), *, announce: bool = True) -> None:
        """The channel runs ``Stasis(app, args...)``: the app gets StasisStart (not with ``announce`` False: a
        channel left in the app by a client that died, which a new client does not hear about)."""
        with self._lock:
            channel = self.channels[channel_id]
            channel.app = app
            channel.stasis_args = tuple(args)
            if not announce:
                self._touch()
                return
            outgoing: Outgoing = [({"type": "StasisStart", "args": list(args), "channel": channel.snapshot()}, {app})]
        self._emit(outgoing)

    def answer(self, channel_id: str) -> None:
        """The far end answers (ChannelStateChange to Up)."""
        with self._lock:
            outgoing = self._answer(self.channels[channel_id])
        self._emit(outgoing)

    def set_var(self, channel_id: str, variable: str, value: str) -> None:
        """The dialplan sets a variable (ChannelVarset)."""
        with self._lock:
            outgoing = self._set(self.channels[channel_id], variable, value)
        self._emit(outgoing)

    def dial_status(self, channel_id: str, status: str) -> None:
        with self._lock:
            channel = self.channels[channel_id]
            event = {"type": "Dial", "dialstatus": status, "peer": channel.snapshot(), "dialstring": "x"}
            outgoing: Outgoing = [(event, self._apps(channel))]
        self._emit(outgoing)

    def hang_up(self, channel_id: str, cause: int = 16, cause_txt: str = "Normal Clearing") -> None:
        """The far end hangs up: StasisEnd if the channel is in an app, then ChannelDestroyed."""
        self._destroy(channel_id, cause, cause_txt)

    def leftover_call(
        self, app: str, args: Sequence[str], *, caller: str = "", channel_id: str
    ) -> tuple[str, str, str]:
        """What a client that died mid-call leaves in Asterisk: the customer's channel in ``Stasis(app, args)``
        (answered), its ExternalMedia channel ``<channel_id>-media`` in the app and the mixing bridge
        ``centralita-<channel_id>`` holding both; no event is sent. The ids (customer, media, bridge)."""
        media_id = f"{channel_id}-media"
        with self._lock:
            number = next(self._counter)
            customer = Channel(
                id=channel_id,
                name=f"PJSIP/provider-{number:08x}",
                state="Up",
                caller={"name": "", "number": caller},
                app=app,
                stasis_args=tuple(args),
            )
            media = Channel(id=media_id, name=f"UnicastRTP/127.0.0.1:9-{number:08x}", state="Up", app=app)
            bridge = Bridge(
                f"bridge-{next(self._counter)}", f"centralita-{channel_id}", channels=[channel_id, media_id]
            )
            customer.bridge = media.bridge = bridge.id
            self.channels[channel_id] = customer
            self.channels[media_id] = media
            self.bridges[bridge.id] = bridge
            self._touch()
        return channel_id, media_id, bridge.id

    def drop_events(self) -> None:
        """Every events connection breaks (a network fault, Asterisk's HTTP server restarting): the clients
        reconnect; channels and bridges stay as they are."""
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            sock.close()

    def restart(self) -> None:
        """Asterisk restarts: the events connections break and every channel and bridge is gone, without an
        event (nobody is connected to hear one)."""
        self.drop_events()
        with self._lock:
            channels = list(self.channels.values())
            self.channels.clear()
            self.bridges.clear()
            self.subscriptions.clear()
            self._touch()
        for channel in channels:
            if channel.leg is not None:
                self._media.close_leg(channel.leg)

    def mute(self, channel_id: str) -> None:
        """The RTP leg bridged with ``channel_id`` stops sending (its packets no longer reach the bridge)."""
        self._media.pause(self.leg_of(channel_id))

    def vanish(self, channel_id: str) -> None:
        """The channel disappears and no event says so (a lost WebSocket)."""
        with self._lock:
            channel = self.channels.pop(channel_id)
            self._leave_bridge(channel)
        if channel.leg is not None:
            self._media.close_leg(channel.leg)

    # ---- the model (under the lock; events are sent once it is released, by ``_emit``) -------------------

    def _touch(self) -> None:
        """Something changed (under the lock): wake ``wait_until``."""
        self._version += 1
        self._changed.notify_all()

    def _apps(self, channel: Channel) -> set[str]:
        """The apps that get the channel's events: its Stasis app and its subscribers."""
        apps = {app for app, ids in self.subscriptions.items() if channel.id in ids}
        if channel.app:
            apps.add(channel.app)
        return apps

    def _emit(self, outgoing: Outgoing) -> None:
        """Send the events, in order, each to its apps' events connections. Not under the lock: a connection
        that is slow to read must not hold the whole fake."""
        with self._lock:
            deliveries = [(event, [s for s in self._sockets if s.open and s.app in apps]) for event, apps in outgoing]
            self._touch()
        for event, sockets in deliveries:
            for sock in sockets:
                message = {**event, "timestamp": _stamp(), "application": sock.app}
                sock.send_frame(websocket.TEXT, json.dumps(message).encode())

    def _answer(self, channel: Channel) -> Outgoing:
        channel.state = "Up"
        return [({"type": "ChannelStateChange", "channel": channel.snapshot()}, self._apps(channel))]

    def _set(self, channel: Channel, variable: str, value: str) -> Outgoing:
        channel.variables[variable] = value
        event = {"type": "ChannelVarset", "variable": variable, "value": value, "channel": channel.snapshot()}
        return [(event, self._apps(channel))]

    def _leave_stasis(self, channel: Channel) -> Outgoing:
        """The channel leaves its app (a hang-up, or on to the dialplan): StasisEnd to the app."""
        app, channel.app = channel.app, ""
        channel.stasis_args = ()
        if not app:
            return []
        self._leave_bridge(channel)
        return [({"type": "StasisEnd", "channel": channel.snapshot()}, {app})]

    def _leave_bridge(self, channel: Channel) -> None:
        bridge = self.bridges.get(channel.bridge)
        if bridge is not None and channel.id in bridge.channels:
            bridge.channels.remove(channel.id)
        channel.bridge = ""
        if channel.leg is not None:
            self._media.pause(channel.leg)

    def _destroy(self, channel_id: str, cause: int, cause_txt: str) -> None:
        with self._lock:
            channel = self._channel(channel_id)
            apps = self._apps(channel)
            outgoing = self._leave_stasis(channel)
            self._leave_bridge(channel)
            event = {"type": "ChannelDestroyed", "cause": cause, "cause_txt": cause_txt, "channel": channel.snapshot()}
            outgoing.append((event, apps))
            del self.channels[channel_id]
            for ids in self.subscriptions.values():
                ids.discard(channel_id)
        if channel.leg is not None:
            self._media.close_leg(channel.leg)
        self._emit(outgoing)

    def _channel(self, channel_id: str) -> Channel:
        channel = self.channels.get(channel_id)
        if channel is None:
            raise _Reply(404, "Channel not found")
        return channel

    def _bridge(self, bridge_id: str) -> Bridge:
        bridge = self.bridges.get(bridge_id)
        if bridge is None:
            raise _Reply(404, "Bridge not found")
        return bridge

    # ---- HTTP ------------------------------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        at = time.monotonic()
        parts = urlsplit(handler.path)
        query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            self._reply(handler, 400, {"message": "Request body is not valid JSON"})
            return
        path = parts.path
        with self._lock:
            self.requests.append(Recorded(method, path, query, body, at))
            self._touch()
        if handler.headers.get("Authorization") != self._expected_auth:
            self._reply(handler, 401, {"message": "Authentication required"})
            return
        if method == "GET" and path == "/ari/events":
            self._events(handler, query.get("app", ""))
            return
        failure, delay = self._rule(method, path)
        if failure is not None:
            self._reply(handler, failure.status, {"message": failure.message})
            return
        try:
            status, payload = self._route(method, path, query, body if isinstance(body, dict) else {})
        except _Reply as reply:
            status, payload = reply.status, {"message": reply.message}
        if delay:
            time.sleep(delay)
        self._reply(handler, status, payload)

    def _rule(self, method: str, path: str) -> tuple[_Rule | None, float]:
        """The failure to answer with, if one is due, and how late to answer otherwise."""
        delay = 0.0
        with self._lock:
            for rule in list(self._rules):
                if rule.method != method or not fnmatch.fnmatchcase(path, rule.pattern):
                    continue
                rule.times -= 1
                if rule.times <= 0:
                    self._rules.remove(rule)
                if rule.status:
                    return rule, 0.0
                delay = max(delay, rule.seconds)
        return None, delay

    def _route(self, method: str, path: str, query: dict[str, str], body: JsonObject) -> tuple[int, Any]:
        segments = path.strip("/").split("/")
        if segments[:1] != ["ari"]:
            raise _Reply(404, "Resource not found")
        match method, segments[1:]:
            case "POST", ["channels"]:
                return self._originate(query, body)
            case "GET", ["channels"]:
                with self._lock:
                    return 200, [channel.snapshot() for channel in self.channels.values()]
            case "POST", ["channels", "externalMedia"]:
                return self._external_media(query)
            case "GET", ["channels", channel_id]:
                with self._lock:
                    return 200, self._channel(channel_id).snapshot()
            case "DELETE", ["channels", channel_id]:
                self._destroy(channel_id, 16, "Normal Clearing")
                return 204, None
            case "POST", ["channels", channel_id, "answer"]:
                with self._lock:
                    outgoing = self._answer(self._channel(channel_id))
                self._emit(outgoing)
                return 204, None
            case "POST", ["channels", channel_id, "ring"]:
                with self._lock:
                    ringing = self._channel(channel_id)
                    if not ringing.app:
                        raise _Reply(409, "Channel not in a Stasis application")
                    ringing.rang = True
                    self._touch()
                return 204, None
            case "GET", ["endpoints", technology, resource]:
                return self._endpoint(technology, resource)
            case "POST", ["channels", channel_id, "continue"]:
                return self._continue(channel_id, query)
            case "POST", ["channels", channel_id, "variable"]:
                return self._set_variable(channel_id, {**body, **query})
            case "GET", ["channels", channel_id, "variable"]:
                with self._lock:
                    variables = self._channel(channel_id).variables
                    if query.get("variable") not in variables:
                        raise _Reply(404, "Provided variable was not found")
                    return 200, {"value": variables[query["variable"]]}
            case "POST", ["bridges"]:
                return self._create_bridge(query)
            case "GET", ["bridges"]:
                with self._lock:
                    return 200, [bridge.snapshot() for bridge in self.bridges.values()]
            case "GET", ["bridges", bridge_id]:
                with self._lock:
                    return 200, self._bridge(bridge_id).snapshot()
            case "DELETE", ["bridges", bridge_id]:
                with self._lock:
                    bridge = self._bridge(bridge_id)
                    for channel_id in list(bridge.channels):
                        self._leave_bridge(self.channels[channel_id])
                    del self.bridges[bridge_id]
                    self._touch()
                return 204, None
            case "POST", ["bridges", bridge_id, "addChannel"]:
                return self._add_channel(bridge_id, query.get("channel", ""))
            case "POST", ["bridges", bridge_id, "removeChannel"]:
                with self._lock:
                    bridge = self._bridge(bridge_id)
                    channel = self.channels.get(query.get("channel", ""))
                    if channel is None or channel.id not in bridge.channels:
                        raise _Reply(422, "Channel not in this bridge")
                    self._leave_bridge(channel)
                    self._touch()
                return 204, None
            case "POST", ["applications", app, "subscription"]:
                return self._subscribe(app, query.get("eventSource", ""))
        raise _Reply(404, "Resource not found")

    def _reply(self, handler: BaseHTTPRequestHandler, status: int, payload: Any) -> None:
        data = b"" if payload is None else json.dumps(payload).encode()
        handler.send_response(status)
        if data:
            handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _originate(self, query: dict[str, str], body: JsonObject) -> tuple[int, Any]:
        if not query.get("endpoint"):
            raise _Reply(400, "Endpoint must be specified")
        if query.get("app") and query.get("context"):
            raise _Reply(400, "Application and dialplan location cannot both be specified")
        with self._lock:
            number = next(self._counter)
            channel_id = query.get("channelId") or f"{time.time():.0f}.{number}"
            if channel_id in self.channels:
                raise _Reply(409, "Channel with given unique ID already exists")
            self.channels[channel_id] = Channel(
                id=channel_id,
                name=f"PJSIP/provider-{number:08x}",
                caller={"name": "", "number": query.get("callerId", "")},
                dialplan={"context": query.get("context", "default"), "exten": "s", "priority": 1},
                channelvars=dict(body.get("variables") or {}),
            )
            if query.get("app"):  # ARI subscribes the app it originates into
                self.subscriptions.setdefault(query["app"], set()).add(channel_id)
            self._touch()
            return 200, self.channels[channel_id].snapshot()

    def _external_media(self, query: dict[str, str]) -> tuple[int, Any]:
        app, host = query.get("app", ""), query.get("external_host", "")
        if not app or not host or not query.get("format"):
            raise _Reply(400, "app, external_host and format are required")
        address, _, port = host.rpartition(":")
        if not address or not port.isdigit():
            raise _Reply(400, f"external_host must be host:port, not {host!r}")
        with self._lock:
            number = next(self._counter)
            channel_id = query.get("channelId") or f"{time.time():.0f}.{number}"
            if channel_id in self.channels:
                raise _Reply(409, "Channel with given unique ID already exists")
            leg = RtpLeg(next(self._legs), channel_id, (address, int(port)), self._rng)
            self._media.open(leg)
            local_address, local_port = leg.address
            channel = Channel(
                id=channel_id,
                name=f"UnicastRTP/{host}-{number:08x}",
                state="Up",
                channelvars={"UNICASTRTP_LOCAL_ADDRESS": local_address, "UNICASTRTP_LOCAL_PORT": str(local_port)},
                leg=leg,
            )
            self.channels[channel_id] = channel
        self.enter_stasis(channel_id, app)
        return 200, channel.snapshot()

    def _continue(self, channel_id: str, query: dict[str, str]) -> tuple[int, Any]:
        with self._lock:
            channel = self._channel(channel_id)
            if not channel.app:
                raise _Reply(409, "Channel not in Stasis application")
            context = query.get("context") or channel.dialplan["context"]
            extension = query.get("extension") or "s"
            priority = int(query.get("priority") or 1)
            channel.dialplan = {"context": context, "exten": extension, "priority": priority}
            channel.continued.append((context, extension, priority))
            outgoing = self._leave_stasis(channel)
        self._emit(outgoing)  # before the answer: the app may hear StasisEnd before the request returns
        return 204, None

    def _set_variable(self, channel_id: str, params: JsonObject) -> tuple[int, Any]:
        name = str(params.get("variable") or "")
        if not name:
            raise _Reply(400, "Variable name is required")
        with self._lock:
            outgoing = self._set(self._channel(channel_id), name, str(params.get("value", "")))
        self._emit(outgoing)
        return 204, None

    def _create_bridge(self, query: dict[str, str]) -> tuple[int, Any]:
        with self._lock:
            bridge_id = query.get("bridgeId") or f"bridge-{next(self._counter)}"
            if bridge_id in self.bridges:
                raise _Reply(409, "Bridge with given unique ID already exists")
            bridge = Bridge(bridge_id, query.get("name", ""), query.get("type", "mixing"))
            self.bridges[bridge_id] = bridge
            self._touch()
            return 200, bridge.snapshot()

    def _add_channel(self, bridge_id: str, channel_id: str) -> tuple[int, Any]:
        with self._lock:
            bridge = self._bridge(bridge_id)
            channel = self.channels.get(channel_id)
            if channel is None:
                raise _Reply(400, "Channel not found")
            if not channel.app:
                raise _Reply(422, "Channel not in Stasis application")
            if channel.bridge and channel.bridge != bridge_id:
                self._leave_bridge(channel)
            if channel_id not in bridge.channels:
                bridge.channels.append(channel_id)
            channel.bridge = bridge_id
            if channel.leg is not None:  # media flows once the ExternalMedia channel is bridged, as in Asterisk
                self._media.play(channel.leg)
            self._touch()
        return 204, None

    def _endpoint(self, technology: str, resource: str) -> tuple[int, Any]:
        with self._lock:
            if f"{technology}/{resource}" not in self.endpoints:
                raise _Reply(404, "Endpoint not found")
            prefix = f"{technology}/{resource}-"
            ids = [channel.id for channel in self.channels.values() if channel.name.startswith(prefix)]
        state = "online"
        return 200, {"technology": technology, "resource": resource, "state": state, "channel_ids": ids}

    def _subscribe(self, app: str, source: str) -> tuple[int, Any]:
        if not source:
            raise _Reply(400, "Missing parameter eventSource")
        with self._lock:
            registered = app in [sock.app for sock in self._sockets if sock.open]
            scheme, _, channel_id = source.partition(":")
            if not registered:
                raise _Reply(404, "Application not found")
            if scheme != "channel" or channel_id not in self.channels:
                raise _Reply(422, "Unable to find event source")
            self.subscriptions.setdefault(app, set()).add(channel_id)
            ids = sorted(self.subscriptions[app])
        return 200, {"name": app, "channel_ids": ids, "bridge_ids": [], "endpoint_ids": []}

    def _events(self, handler: BaseHTTPRequestHandler, app: str) -> None:
        sock = websocket.accept(handler, app)
        if sock is None:
            self._reply(handler, 400, {"message": "WebSocket upgrade and app required"})
            return
        with self._lock:
            self._sockets.append(sock)
            self._touch()
        try:
            websocket.serve(handler, sock)
        finally:
            sock.open = False
            with self._lock:
                self._sockets.remove(sock)
                self._touch()
            handler.close_connection = True

    def __repr__(self) -> str:
        return f"FakeAsterisk(url={self.url!r}, user={self.user!r}, password='***')"
