"""The auth service as a real uvicorn process, over HTTP."""

from __future__ import annotations

import os
import secrets
import sys
from typing import Iterator

import httpx
import pytest

from replica.auth.tokens import mint_token
from replica.drivers.local.group import ProcessGroup
from replica.drivers.local.ports import bind_loopback
from replica.drivers.local.process import ManagedProcess
from replica.polling import wait_for_http, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def group() -> Iterator[ProcessGroup]:
    with ProcessGroup() as g:
        yield g


@pytest.fixture(scope="module")
def auth(group: ProcessGroup) -> Iterator[tuple[str, str, ManagedProcess]]:
    secret = secrets.token_urlsafe(32)
    with bind_loopback() as listener:  # bound here and handed over: no port race
        port = listener.getsockname()[1]
        env = {**os.environ, "AUTH_HOST": "127.0.0.1", "AUTH_FD": str(listener.fileno()), "JWT_SECRET": secret}
        process = group.start([sys.executable, "-m", "replica.auth"], name="auth", env=env, pass_fds=[listener.fileno()])
    url = f"http://127.0.0.1:{port}"
    wait_for_http(f"{url}/health", timeout=20, process=process, what="the auth service")
    yield url, secret, process


def test_health(auth: tuple[str, str, ManagedProcess]) -> None:
    url, _, _ = auth
    response = httpx.get(f"{url}/health", timeout=5)
    assert response.status_code == 200
    assert response.json() == {"status": "healthy"}


def test_valid_token(auth: tuple[str, str, ManagedProcess]) -> None:
    url, secret, _ = auth
    token = mint_token(secret, sub="staging-e2e-user-003", email="three@example.test", permissions=["chat"])
    response = httpx.post(f"{url}/auth/validate", json={"token": token}, timeout=5)
    assert response.status_code == 200
    assert response.json() == {
        "valid": True, "user_id": "staging-e2e-user-003", "email": "three@example.test", "permissions": ["chat"],
    }


@pytest.mark.parametrize(
    ("make_token", "reason"),
    [
        (lambda s: mint_token(s, ttl_s=-5), "token expired"),
        (lambda s: mint_token("other-" + s), "bad signature"),
        (lambda s: "garbage", "malformed token"),
    ],
)
def test_invalid_tokens_get_401_with_a_reason(auth: tuple[str, str, ManagedProcess], make_token, reason: str) -> None:
    url, secret, _ = auth
    response = httpx.post(f"{url}/auth/validate", json={"token": make_token(secret)}, timeout=5)
    assert response.status_code == 401
    assert response.json() == {"valid": False, "error": reason}


def test_malformed_requests_get_422_with_a_clear_message(auth: tuple[str, str, ManagedProcess]) -> None:
    url, _, _ = auth
    broken = httpx.post(
        f"{url}/auth/validate", content=b"{not json", headers={"content-type": "application/json"}, timeout=5
    )
    assert broken.status_code == 422
    assert broken.json()["valid"] is False
    assert broken.json()["error"].startswith('expected a JSON body {"token": "<jwt>"}')
    missing = httpx.post(f"{url}/auth/validate", json={"tok": "x"}, timeout=5)
    assert missing.status_code == 422
    assert "token: Field required" in missing.json()["error"]


def test_the_secret_never_reaches_the_log(auth: tuple[str, str, ManagedProcess]) -> None:
    url, secret, process = auth
    token = mint_token(secret)
    assert httpx.post(f"{url}/auth/validate", json={"token": token}, timeout=5).status_code == 200
    wait_until(lambda: "token accepted" in process.log_tail(200), 5, what="the auth log line")
    log = process.log_tail(400)
    assert secret not in log
    assert token not in log


def test_missing_secret_refuses_to_start(group: ProcessGroup) -> None:
    env = {k: v for k, v in os.environ.items() if k != "JWT_SECRET"}
    with bind_loopback() as listener:
        env.update(AUTH_FD=str(listener.fileno()))
        process = group.start(
            [sys.executable, "-m", "replica.auth"], name="auth-nosecret", env=env, pass_fds=[listener.fileno()]
        )
    wait_until(lambda: process.poll() is not None, 20, what="the auth service to exit")
    assert process.returncode != 0
    assert "JWT_SECRET is not set" in process.log_tail(20)
