"""openai.api_key against the real fake Realtime server (GET /v1/models), and routeros.* against the real
fake RouterOS server."""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from doctor_support import FakeBox, env_text, make_app_dir, options

from centralita.doctor import apis
from centralita.doctor.context import Context
from centralita.doctor.model import Result, Status
from centralita_testing.fake_realtime import FakeRealtimeServer, Faults
from centralita_testing.fake_routeros.server import FakeRouterOS

ROUTER_USER = "api-soporte"
ROUTER_PASSWORD = "s3creto-2025"


@pytest.fixture(scope="module")
def realtime() -> Iterator[FakeRealtimeServer]:
    with FakeRealtimeServer() as server:
        yield server


@pytest.fixture
def router() -> Iterator[FakeRouterOS]:
    with FakeRouterOS(None, ROUTER_USER, ROUTER_PASSWORD) as fake:
        yield fake


def _ctx(tmp_path: Path, **env: str) -> Context:
    app = make_app_dir(tmp_path, env_text(**env))
    return Context(options(tmp_path, FakeBox.healthy(), app / ".env"))


def _one(results: list[Result]) -> Result:
    assert len(results) == 1
    return results[0]


@pytest.mark.parametrize(
    ("base", "models"),
    [
        ("wss://api.openai.com/v1/realtime", "https://api.openai.com/v1/models"),
        ("ws://127.0.0.1:8765/v1/realtime", "http://127.0.0.1:8765/v1/models"),
        ("wss://gateway.example.net/openai/v1/realtime?x=1", "https://gateway.example.net/openai/v1/models"),
        ("wss://realtime.example.net", "https://realtime.example.net/v1/models"),
    ],
)
def test_models_url(base: str, models: str) -> None:
    assert apis.models_url(base) == models


def test_the_fake_servers_key_is_accepted(tmp_path: Path, realtime: FakeRealtimeServer) -> None:
    ctx = _ctx(tmp_path, OPENAI_BASE_URL=realtime.base_url, OPENAI_API_KEY=realtime.api_key)
    result = _one(apis.check_openai_key(ctx))
    assert result.status is Status.OK
    url = f"http://127.0.0.1:{realtime.port}/v1/models"
    assert result.seen == f"{url} accepted the key; gpt-realtime is among its 2 models"


def test_a_wrong_key_fails_with_where_to_put_a_good_one(tmp_path: Path, realtime: FakeRealtimeServer) -> None:
    ctx = _ctx(tmp_path, OPENAI_BASE_URL=realtime.base_url, OPENAI_API_KEY="sk-wrong-0123456789")
    result = _one(apis.check_openai_key(ctx))
    assert result.status is Status.FAIL
    assert result.seen == (
        f"http://127.0.0.1:{realtime.port}/v1/models refused OPENAI_API_KEY from {tmp_path}/app/.env "
        "(401 invalid_api_key)"
    )
    assert "https://platform.openai.com/api-keys" in result.fix
    assert "bridge_openai_api_key" in result.fix
    assert "systemctl restart openai-inbound-calls" in result.fix
    assert "sk-wrong" not in result.seen + result.fix


@pytest.mark.parametrize("quote", ['"', ""])
def test_the_key_test_command_works_and_keeps_the_key_off_the_command_line(
    tmp_path: Path, realtime: FakeRealtimeServer, quote: str
) -> None:
    """The ``test:`` command of the fixes, run by a real shell: sed reads the key from the .env (quoted, as the
    role writes it, or bare) and hands it to curl on a pipe."""
    env = tmp_path / ".env"
    env.write_text(f"OPENAI_MODEL=gpt-realtime\nOPENAI_API_KEY={quote}{realtime.api_key}{quote}\n", encoding="utf-8")
    url = f"http://127.0.0.1:{realtime.port}/v1/models"
    command = apis.models_curl(url, env)
    assert realtime.api_key not in command
    answer = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=30, check=False)
    assert answer.returncode == 0, answer.stderr
    assert "gpt-realtime" in [model["id"] for model in json.loads(answer.stdout)["data"]]


def test_a_wrong_key_fix_names_the_test_command(tmp_path: Path, realtime: FakeRealtimeServer) -> None:
    ctx = _ctx(tmp_path, OPENAI_BASE_URL=realtime.base_url, OPENAI_API_KEY="sk-wrong-0123456789")
    result = _one(apis.check_openai_key(ctx))
    assert f"test: {apis.models_curl(f'http://127.0.0.1:{realtime.port}/v1/models', ctx.env.path)}" in result.fix


def test_a_model_the_key_cannot_use_is_a_warning(tmp_path: Path, realtime: FakeRealtimeServer) -> None:
    ctx = _ctx(
        tmp_path, OPENAI_BASE_URL=realtime.base_url, OPENAI_API_KEY=realtime.api_key, OPENAI_MODEL="gpt-nonexistent"
    )
    result = _one(apis.check_openai_key(ctx))
    assert result.status is Status.WARN
    assert "OPENAI_MODEL=gpt-nonexistent is not among its 2 models" in result.seen


def test_an_overloaded_api_is_a_warning(tmp_path: Path, realtime: FakeRealtimeServer) -> None:
    realtime.faults = Faults(refuse=True)
    try:
        ctx = _ctx(tmp_path, OPENAI_BASE_URL=realtime.base_url, OPENAI_API_KEY=realtime.api_key)
        result = _one(apis.check_openai_key(ctx))
    finally:
        realtime.faults = Faults()
    assert result.status is Status.WARN
    assert "answered 503 server_error" in result.seen


def test_an_unreachable_api_fails(tmp_path: Path) -> None:
    result = _one(apis.check_openai_key(_ctx(tmp_path, OPENAI_BASE_URL="ws://127.0.0.1:9/v1/realtime")))
    assert result.status is Status.FAIL
    assert "Connection refused" in result.seen
    assert "(HTTP, port 9)" in result.fix


def test_no_routers_is_ok(tmp_path: Path) -> None:
    result = _one(apis.check_routers(_ctx(tmp_path)))
    assert (result.name, result.status) == ("routeros", Status.OK)


def _router_env(router: FakeRouterOS, password: str = ROUTER_PASSWORD) -> dict[str, str]:
    return {
        "ROUTEROS_ROUTERS": "nucleo",
        "ROUTEROS_NUCLEO_HOST": router.host,
        "ROUTEROS_NUCLEO_PORT": str(router.port),
        "ROUTEROS_NUCLEO_USER": ROUTER_USER,
        "ROUTEROS_NUCLEO_PASSWORD": password,
        "ROUTEROS_TIMEOUT": "1",
    }


def test_a_router_that_accepts_the_login(tmp_path: Path, router: FakeRouterOS) -> None:
    result = _one(apis.check_routers(_ctx(tmp_path, **_router_env(router))))
    assert (result.name, result.status) == ("routeros.nucleo", Status.OK)
    assert result.seen == f"{router.host}:{router.port} accepted the login of {ROUTER_USER}"
    assert router.logins == 1
    assert router.wait_until(lambda: router.open_connections == 0)


def test_a_wrong_router_password_fails(tmp_path: Path, router: FakeRouterOS) -> None:
    result = _one(apis.check_routers(_ctx(tmp_path, **_router_env(router, "wrong"))))
    assert result.status is Status.FAIL
    assert "refused the login of api-soporte" in result.seen
    assert "ROUTEROS_NUCLEO_USER and ROUTEROS_NUCLEO_PASSWORD" in result.fix


def test_a_router_that_is_down_fails(tmp_path: Path, router: FakeRouterOS) -> None:
    env = _router_env(router)
    router.stop()
    result = _one(apis.check_routers(_ctx(tmp_path, **env)))
    assert result.status is Status.FAIL
    assert f"cannot reach the API of nucleo at 127.0.0.1:{env['ROUTEROS_NUCLEO_PORT']}" in result.seen
    assert "/ip service print where name=api" in result.fix


def test_bad_router_settings_fail_once(tmp_path: Path) -> None:
    result = _one(apis.check_routers(_ctx(tmp_path, ROUTEROS_ROUTERS="nucleo")))
    assert (result.name, result.status) == ("routeros", Status.FAIL)
    assert "ROUTEROS_NUCLEO_HOST is missing" in result.seen


def _get(url: str, key: str | None) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(url)
    if key is not None:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_the_fake_server_serves_v1_models_like_the_real_api(realtime: FakeRealtimeServer) -> None:
    url = f"http://{realtime.host}:{realtime.port}/v1/models"
    status, body = _get(url, realtime.api_key)
    assert status == 200
    assert body["object"] == "list"
    assert isinstance(body["data"], list)
    assert {"id": "gpt-realtime", "object": "model", "created": 1756271701, "owned_by": "system"} in body["data"]
    status, body = _get(url, "sk-wrong-0123456789")
    assert status == 401
    error = body["error"]
    assert isinstance(error, dict)
    assert (error["type"], error["code"]) == ("invalid_request_error", "invalid_api_key")
    assert str(error["message"]).startswith("Incorrect API key provided")
    status, body = _get(url, None)
    assert status == 401
    assert isinstance(body["error"], dict)
    assert body["error"]["code"] == "missing_api_key"
