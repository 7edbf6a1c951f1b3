"""Asterisk REST Interface: REST calls with timeouts, and the events WebSocket that reconnects.

Asterisk restarts (package upgrades, a `core restart`, the operator at 3 a.m.) must never take the
bridge down with them: the events connection retries with capped exponential backoff for as long as
the service runs, and every REST call has a timeout so a wedged Asterisk cannot hang a call thread.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import websocket

from centralita.config.bridge import keepalive_problem

log = logging.getLogger(__name__)

Event = dict[str, Any]


class _GoodbyeFilter(logging.Filter):
    """Drops websocket-client's ERROR "<reason> - goodbye", logged each time ``run_forever`` returns: AriEvents is
    its only user and reports the same disconnect in its own words (quietly while Asterisk is still starting)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().endswith(" - goodbye")


logging.getLogger("websocket").addFilter(_GoodbyeFilter())


class AriError(Exception):
    """A REST call failed: Asterisk unreachable, timed out, or answered with an error status."""

    def __init__(self, method: str, path: str, status: int | None, message: str) -> None:
        self.method = method
        self.path = path
        self.status = status
        where = f"{method} {path}"
        super().__init__(f"ARI {where} failed: {status} {message}" if status else f"ARI {where} failed: {message}")


@dataclass(frozen=True)
class AriEndpoint:
    """Where ARI is and who we are to it. The password never appears in repr."""

    url: str  # http://127.0.0.1:8088
    user: str
    password: str
    app: str

    def __repr__(self) -> str:
        return f"AriEndpoint(url={self.url!r}, user={self.user!r}, password='***', app={self.app!r})"

    def authorization(self) -> str:
        token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode("ascii")
        return f"Basic {token}"

    def events_url(self) -> str:
        parts = urllib.parse.urlsplit(self.url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        query = urllib.parse.urlencode({"app": self.app, "subscribeAll": "false"})
        return urllib.parse.urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + "/ari/events", query, ""))


class AriRest:
    """The REST calls the bridge needs, each bounded by `timeout` seconds."""

    def __init__(self, endpoint: AriEndpoint, timeout: float = 5.0) -> None:
        self._endpoint = endpoint
        self._timeout = timeout

    def request(
        self,
        method: str,
        path: str,
        params: Mapping[str, str | int] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> Any:
        url = self._endpoint.url.rstrip("/") + "/ari" + path
        if params:
            url += "?" + urllib.parse.urlencode(params)
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Authorization", self._endpoint.authorization())
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=self._timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")
            with contextlib.suppress(ValueError, AttributeError):
                detail = json.loads(detail).get("message", detail)
            raise AriError(method, path, exc.code, detail.strip()) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise AriError(method, path, None, str(reason)) from None
        return json.loads(raw) if raw else None

    # Channels -------------------------------------------------------------------------------------

    def answer(self, channel_id: str) -> None:
        self.request("POST", f"/channels/{channel_id}/answer")

    def ring(self, channel_id: str) -> None:
        """Indicate ringing to the caller (a channel not yet answered hears ringback meanwhile)."""
        self.request("POST", f"/channels/{channel_id}/ring")

    def hangup(self, channel_id: str, reason: str = "normal") -> None:
        self.request("DELETE", f"/channels/{channel_id}", {"reason": reason})

    def continue_in_dialplan(self, channel_id: str, context: str, extension: str = "s", priority: int = 1) -> None:
        """Hand the channel back to the dialplan (used to transfer a caller to the operator)."""
        params: dict[str, str | int] = {"context": context, "extension": extension, "priority": priority}
        self.request("POST", f"/channels/{channel_id}/continue", params)

    def set_channel_var(self, channel_id: str, name: str, value: str) -> None:
        self.request("POST", f"/channels/{channel_id}/variable", {"variable": name, "value": value})

    def channel_var(self, channel_id: str, name: str) -> str:
        return str(self.request("GET", f"/channels/{channel_id}/variable", {"variable": name})["value"])

    def external_media(self, app: str, external_host: str, channel_id: str | None = None) -> Event:
        """An ExternalMedia channel that sends and receives the call's audio as RTP ulaw at `external_host`."""
        params: dict[str, str | int] = {
            "app": app,
            "external_host": external_host,
            "format": "ulaw",
            "encapsulation": "rtp",
            "transport": "udp",
            "direction": "both",
        }
        if channel_id:
            params["channelId"] = channel_id
        result: Event = self.request("POST", "/channels/externalMedia", params)
        return result

    # Bridges --------------------------------------------------------------------------------------

    def create_bridge(self, name: str = "") -> str:
        params = {"type": "mixing", "name": name} if name else {"type": "mixing"}
        return str(self.request("POST", "/bridges", params)["id"])

    def add_to_bridge(self, bridge_id: str, channel_id: str) -> None:
        self.request("POST", f"/bridges/{bridge_id}/addChannel", {"channel": channel_id})

    def destroy_bridge(self, bridge_id: str) -> None:
        self.request("DELETE", f"/bridges/{bridge_id}")

    def list_bridges(self) -> list[Event]:
        return list(self.request("GET", "/bridges"))

    def list_channels(self) -> list[Event]:
        return list(self.request("GET", "/channels"))

    # Endpoints ------------------------------------------------------------------------------------

    def endpoint_channels(self, technology: str, resource: str) -> list[str]:
        """The ids of the channels on an endpoint now (``PJSIP``, ``provider``: the calls on the trunk)."""
        endpoint = self.request("GET", f"/endpoints/{technology}/{resource}")
        return [str(channel_id) for channel_id in (endpoint or {}).get("channel_ids", [])]


class AriEvents:
    """The ARI events WebSocket for one Stasis app, kept connected until `stop()`.

    Runs in its own thread. Each event is parsed and passed to `on_event` on that thread; `on_state`
    hears "connected" and "disconnected" so the service can log them. After a disconnect it waits
    `backoff` seconds, doubling up to `max_backoff`, and resets to the minimum after a connection
    that worked.

    Failed attempts are logged without spam: while Asterisk is not answering (the box booting, a restart) the
    first failure is one line, "waiting for ARI at <url>", and then nothing until it has been down for
    ``quiet_for`` seconds, after which one WARNING per ``quiet_for`` says it is still unreachable.
    """

    def __init__(
        self,
        endpoint: AriEndpoint,
        on_event: Callable[[Event], None],
        on_state: Callable[[str], None] | None = None,
        *,
        ping_interval: float = 20.0,
        ping_timeout: float = 10.0,
        min_backoff: float = 0.5,
        max_backoff: float = 10.0,
        quiet_for: float = 60.0,
    ) -> None:
        problem = keepalive_problem(ping_interval, ping_timeout)
        if problem:
            raise ValueError(problem)
        self._endpoint = endpoint
        self._on_event = on_event
        self._on_state = on_state or (lambda _state: None)
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._min_backoff = min_backoff
        self._max_backoff = max_backoff
        self._quiet_for = quiet_for
        self._last_error = ""
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._app: websocket.WebSocketApp | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"ari-events-{endpoint.app}", daemon=True)
        self.connections = 0

    def start(self) -> None:
        self._thread.start()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def stop(self, timeout: float = 5.0) -> None:
        """Close the connection cleanly and wait (up to ``timeout`` seconds) for its thread to end.

        The close is made on the connection's own thread: websocket-client's reader waits in select() for up to
        ``ping_timeout`` seconds, and a close made here could shut the socket under it without waking it (then
        stop() waited out that timeout, one stop in two). A ping wakes the reader with its pong, and the reader,
        seeing the service stopping, closes. A connection not yet open, or a server that does not answer within half
        the timeout, is closed from here.
        """
        self._stop.set()
        with self._lock:
            app = self._app
        sock = app.sock if app is not None and self._connected.is_set() else None
        if sock is not None and self._thread.is_alive():
            with contextlib.suppress(websocket.WebSocketException, OSError):
                sock.ping()
            self._thread.join(timeout / 2)
        if app is not None and self._thread.is_alive():
            app.close()
        if self._thread.is_alive():
            self._thread.join(timeout / 2)

    def _run(self) -> None:
        backoff = self._min_backoff
        down_since: float | None = None  # monotonic time of the first failed attempt in a row
        next_warning = 0.0
        while not self._stop.is_set():
            app = websocket.WebSocketApp(
                self._endpoint.events_url(),
                header=[f"Authorization: {self._endpoint.authorization()}"],
                on_open=self._opened,
                on_message=self._message,
                on_error=self._failed,
                on_pong=self._ponged,
            )
            with self._lock:
                self._app = app
            if self._stop.is_set():
                break
            self._last_error = ""
            try:
                app.run_forever(ping_interval=self._ping_interval, ping_timeout=self._ping_timeout)
            except Exception:  # websocket-client raises on some socket errors instead of returning
                log.exception("ARI events connection failed")
            was_connected = self._connected.is_set()
            self._connected.clear()
            with self._lock:
                self._app = None
            if self._stop.is_set():
                break
            now = time.monotonic()
            if was_connected:
                backoff = self._min_backoff
                down_since = now
                next_warning = now + self._quiet_for
                self._on_state("disconnected")
                log.warning("ARI events connection lost; reconnecting in %.1f s", backoff)
            elif down_since is None:
                down_since = now
                next_warning = now + self._quiet_for
                log.info(
                    "waiting for ARI at %s (%s): Asterisk is starting or not running; retrying quietly",
                    self._endpoint.url,
                    self._last_error or "no answer",
                )
            elif now >= next_warning:
                next_warning = now + self._quiet_for
                log.warning(
                    "ARI at %s still unreachable after %.0f s (%s); still retrying",
                    self._endpoint.url,
                    now - down_since,
                    self._last_error or "no answer",
                )
            self._stop.wait(backoff)
            backoff = min(backoff * 2, self._max_backoff)

    def _failed(self, _app: websocket.WebSocketApp, error: Exception) -> None:
        self._last_error = str(error) or type(error).__name__

    def _opened(self, _app: websocket.WebSocketApp) -> None:
        self.connections += 1
        self._connected.set()
        self._on_state("connected")

    def _ponged(self, app: websocket.WebSocketApp, _payload: bytes) -> None:
        if self._stop.is_set():  # stop() pinged to wake this thread: the close is made here, see stop()
            app.close()

    def _message(self, app: websocket.WebSocketApp, message: str) -> None:
        if self._stop.is_set():
            app.close()
            return
        try:
            event = json.loads(message)
        except ValueError:
            log.warning("ARI sent a message that is not JSON; ignored")
            return
        if isinstance(event, dict):
            try:
                self._on_event(event)
            except Exception:
                log.exception("handling ARI event %s failed", event.get("type"))
