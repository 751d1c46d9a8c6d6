"""WebSocket authentication through the auth service (HTTP), as the incident-era route did.

The token comes from ``Authorization: Bearer …`` or from a subprotocol
``jwt.<base64url token>``; it is validated *remotely* (``POST {auth_url}/auth/validate``)
with an explicit timeout. User handlers import :func:`authenticate`.
"""

from __future__ import annotations

import base64
import binascii
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Mapping

import httpx
from starlette.websockets import WebSocket

from replica.tls import client_ssl_context

if TYPE_CHECKING:
    from replica.settings import BackendSettings

logger = logging.getLogger("replica.auth_client")

JWT_SUBPROTOCOL = "jwt-auth"
TOKEN_SUBPROTOCOL_PREFIX = "jwt."


@dataclass(frozen=True)
class AuthResult:
    ok: bool
    user_id: str | None = None
    email: str | None = None
    permissions: tuple[str, ...] = ()
    error: str | None = None
    unavailable: bool = False  # the auth service could not be reached (not the token's fault)


def auth_http(settings: BackendSettings) -> httpx.AsyncClient:
    """A client for the auth service the settings name: its timeout, the shared TLS
    context, and no proxy from the environment (the harness chose that address)."""
    return httpx.AsyncClient(timeout=settings.auth_timeout_s, verify=client_ssl_context(), trust_env=False)


def offered_subprotocols(websocket: WebSocket) -> list[str]:
    return list(websocket.scope.get("subprotocols") or [])


def choose_subprotocol(offered: Iterable[str]) -> str | None:
    """``jwt-auth`` when the client offers it, else none."""
    return JWT_SUBPROTOCOL if JWT_SUBPROTOCOL in offered else None


def _decode_subprotocol_token(value: str) -> str | None:
    encoded = value[len(TOKEN_SUBPROTOCOL_PREFIX):]
    if not encoded:
        return None
    try:
        return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None


def extract_token(headers: Mapping[str, str], subprotocols: Iterable[str]) -> str | None:
    """The bearer token from the headers, else from a ``jwt.<base64url>`` subprotocol."""
    authorization = headers.get("authorization", "")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    for proto in subprotocols:
        if proto.startswith(TOKEN_SUBPROTOCOL_PREFIX):
            token = _decode_subprotocol_token(proto)
            if token:
                return token
    return None


def encode_subprotocol_token(token: str) -> str:
    """The subprotocol a client offers to carry ``token``."""
    return TOKEN_SUBPROTOCOL_PREFIX + base64.urlsafe_b64encode(token.encode()).decode().rstrip("=")


async def validate_remote(client: httpx.AsyncClient, auth_url: str, token: str) -> AuthResult:
    try:
        response = await client.post(auth_url.rstrip("/") + "/auth/validate", json={"token": token})
    except httpx.HTTPError as exc:
        return AuthResult(ok=False, error=f"auth service unreachable: {type(exc).__name__}", unavailable=True)
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code == 200 and body.get("valid") is True:
        return AuthResult(
            ok=True,
            user_id=str(body.get("user_id")),
            email=body.get("email"),
            permissions=tuple(body.get("permissions") or ()),
        )
    if response.status_code in (401, 403):
        return AuthResult(ok=False, error=str(body.get("error") or "token rejected"))
    return AuthResult(ok=False, error=f"auth service returned HTTP {response.status_code}", unavailable=True)


async def authenticate(websocket: WebSocket) -> AuthResult:
    """Authenticate the connection's token against the auth service named in the settings."""
    token = extract_token(websocket.headers, offered_subprotocols(websocket))
    if token is None:
        return AuthResult(ok=False, error="no token (expected Authorization: Bearer or a jwt.<token> subprotocol)")
    state = websocket.app.state
    settings = state.settings
    client: httpx.AsyncClient | None = getattr(state, "auth_http", None)
    if client is None:
        async with auth_http(settings) as own:
            return await validate_remote(own, settings.auth_url, token)
    return await validate_remote(client, settings.auth_url, token)
