"""Checks of the outside services the assistant needs: the OpenAI API key, and a login on each MikroTik."""

from __future__ import annotations

import json
import shlex
import ssl
import urllib.error
import urllib.request
from contextlib import suppress
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from centralita.config.box import Part
from centralita.config.env import ConfigError, redact_url
from centralita.config.network import NetworkSettings, RouterConfig
from centralita.doctor.context import INBOUND_UNIT, Context
from centralita.doctor.model import Result
from centralita.isp.routeros.client import RouterAuthError, RouterError, connect, tls_wrapper

DEFAULT_BASE_URL = "wss://api.openai.com/v1/realtime"
RESTART = f"systemctl restart {INBOUND_UNIT}"


def models_url(base_url: str) -> str:
    """The REST ``/v1/models`` URL next to a Realtime WebSocket URL (wss -> https, ws -> http).

    ``wss://api.openai.com/v1/realtime`` -> ``https://api.openai.com/v1/models``; a path prefix before
    ``/v1`` (a proxy) is kept.
    """
    parts = urlsplit(base_url)
    scheme = {"wss": "https", "ws": "http"}.get(parts.scheme, parts.scheme)
    index = parts.path.find("/v1")
    prefix = parts.path[:index] if index >= 0 else ""
    return urlunsplit((scheme, parts.netloc, prefix + "/v1/models", "", ""))


def models_curl(url: str, env_path: Path) -> str:
    """A shell command that GETs ``url`` with the key of ``env_path``: sed hands curl its Authorization
    header on a pipe (``-K -``), so the key is never on a command line, where ``ps`` would show it."""
    script = r's/^OPENAI_API_KEY="?([^"]*)"?$/header = "Authorization: Bearer \1"/p'
    return f"sed -nE {shlex.quote(script)} {shlex.quote(str(env_path))} | curl -s -K - {shlex.quote(redact_url(url))}"


def _error_body(raw: bytes) -> tuple[str, str]:
    """(code or type, message) of an OpenAI error body ``{"error": {...}}``; empty strings when not one."""
    with suppress(ValueError, AttributeError, TypeError):
        error = json.loads(raw.decode("utf-8", "replace"))["error"]
        return str(error.get("code") or error.get("type") or ""), str(error.get("message") or "")
    return "", raw.decode("utf-8", "replace").strip()[:160]


def _get_models(url: str, key: str, timeout: float) -> tuple[int, bytes]:
    request = urllib.request.Request(url, method="GET")
    request.add_header("Authorization", f"Bearer {key}")
    request.add_header("Accept", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as error:
        return int(error.code), error.read()


def check_openai_key(ctx: Context) -> list[Result]:
    """GET /v1/models with OPENAI_API_KEY: 200, and OPENAI_MODEL among the models the key may use."""
    name = "openai.api_key"
    env = ctx.env
    key = env.get("OPENAI_API_KEY")
    if not key:
        return [Result.skipped(name, f"OPENAI_API_KEY is not set in {env.path}", "env.settings")]
    base = env.get("OPENAI_BASE_URL", DEFAULT_BASE_URL)
    model = env.get("OPENAI_MODEL", "gpt-realtime")
    url = models_url(base)
    curl = models_curl(url, env.path)
    try:
        status, body = _get_models(url, key, ctx.options.timeout)
    except (urllib.error.URLError, OSError, ssl.SSLError) as error:
        reason = getattr(error, "reason", error)
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return [
            Result.fail(
                name,
                f"cannot reach {url}: {reason}",
                f"check the name and route to {parts.hostname} (see network.openai) and any firewall or "
                f"proxy on the way out ({parts.scheme.upper()}, port {port}); test: {curl}",
            )
        ]
    code, message = _error_body(body) if status != 200 else ("", "")
    if status == 401:
        return [
            Result.fail(
                name,
                f"{url} refused OPENAI_API_KEY from {env.path} (401 {code or 'unauthorized'})",
                f"create a key at https://platform.openai.com/api-keys and put it in the vault as "
                f"bridge_openai_api_key (then ansible-playbook site.yml --tags bridge), or set "
                f"OPENAI_API_KEY=<the key> in {env.path} and run: {RESTART}; test: {curl}",
            )
        ]
    if status == 429 and code == "insufficient_quota":
        return [
            Result.fail(
                name,
                f"{url}: the key works but the account has no quota left (429 insufficient_quota)",
                "add credit or raise the limit at https://platform.openai.com/settings/organization/billing",
            )
        ]
    if status == 429 or status >= 500:
        return [
            Result.warn(
                name,
                f"{url} answered {status} {code}: {message[:160]}",
                f"try again in a minute; if it persists, see https://status.openai.com; test: {curl}",
            )
        ]
    if status != 200:
        return [
            Result.fail(
                name,
                f"{url} answered {status} {code}: {message[:160]}",
                f"check OPENAI_BASE_URL in {env.path} (now {base}) and the account's access; test: {curl}",
            )
        ]
    models: list[str] = []
    with suppress(ValueError, TypeError, AttributeError):
        document: Any = json.loads(body)
        models = [str(item.get("id")) for item in document.get("data", []) if isinstance(item, dict)]
    if model not in models:
        return [
            Result.warn(
                name,
                f"{url} accepted the key, but OPENAI_MODEL={model} is not among its {len(models)} models",
                f"set OPENAI_MODEL (in {env.path}, or bridge_openai_model) to a realtime model the key lists: "
                f'{curl} | grep -o \'"id": *"[^"]*realtime[^"]*"\'; then: {RESTART}',
            )
        ]
    return [Result.ok(name, f"{url} accepted the key; {model} is among its {len(models)} models")]


def _router_settings(ctx: Context) -> NetworkSettings | ConfigError:
    """The routers' part of the .env as the service read it, or its problems (none when unreadable)."""
    check = ctx.env.check
    if check is None:
        return NetworkSettings.from_values({})
    if check.network is not None:
        return check.network
    problems = check.problems_of(Part.NETWORK)
    return ConfigError([problem.message for problem in problems], str(ctx.env.path))


def routers(ctx: Context) -> list[RouterConfig]:
    """The routers the .env names (none when the router settings do not validate)."""
    settings = _router_settings(ctx)
    return list(settings.routers) if isinstance(settings, NetworkSettings) else []


def check_routers(ctx: Context) -> list[Result]:
    """Each router in ROUTEROS_ROUTERS answers on its API port and accepts Centralita's login."""
    settings = _router_settings(ctx)
    env = ctx.env
    if isinstance(settings, ConfigError):
        return [
            Result.fail(
                "routeros",
                " ".join(settings.problems),
                f"correct the ROUTEROS_* variables in {env.path} (inventory: the routers' settings), then: {RESTART}",
            )
        ]
    if not settings.routers:
        return [Result.ok("routeros", "no routers configured (ROUTEROS_ROUTERS is empty)")]
    timeout = min(settings.timeout, ctx.options.timeout)
    return [_check_router(router, timeout, env.path.as_posix()) for router in settings.routers]


def _check_router(router: RouterConfig, timeout: float, env_path: str) -> Result:
    name = f"routeros.{router.name}"
    prefix = f"ROUTEROS_{router.name.upper()}_"
    where = f"{router.host}:{router.port}"
    wrapper = None
    if router.tls:
        try:
            context = ssl.create_default_context(cafile=str(router.ca_file) if router.ca_file else None)
        except (OSError, ssl.SSLError) as error:
            return Result.fail(
                name,
                f"cannot load {prefix}CA_FILE={router.ca_file}: {error}",
                f"point {prefix}CA_FILE in {env_path} at the router's CA certificate (PEM)",
            )
        wrapper = tls_wrapper(context, server_hostname=router.host)
    try:
        client = connect(
            router.host,
            router.user,
            router.password.reveal(),
            port=router.port,
            timeout=timeout,
            ssl_wrapper=wrapper,
        )
    except RouterAuthError as error:
        return Result.fail(
            name,
            f"{where} refused the login of {router.user}: {error}",
            f"check {prefix}USER and {prefix}PASSWORD in {env_path} (vault); on the router the user must exist "
            f"in a group with the api policy: /user print where name={router.user}; /user group print",
        )
    except RouterError as error:
        service = "api-ssl" if router.tls else "api"
        return Result.fail(
            name,
            f"cannot reach the API of {router.name} at {where}: {error}",
            f"check the router is up and routed (see network.router.{router.name}; ping {router.host}); on the "
            f"router the {service} service must be enabled on port {router.port} and allowed from this box: "
            f"/ip service print where name={service}; then test: nc -zv {router.host} {router.port}",
        )
    client.close()
    return Result.ok(name, f"{where}{' (TLS)' if router.tls else ''} accepted the login of {router.user}")
