"""Access tokens as the staging test minted them: HS256 JWTs (pure, no I/O).

Claims: ``sub``, ``email``, ``permissions``, ``iat``, ``exp``, ``type: "access"``,
``iss: "netra-auth-service"``, ``jti``.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import jwt

ISSUER = "netra-auth-service"
TOKEN_TYPE = "access"
ALGORITHM = "HS256"
DEFAULT_SUBJECT = "staging-e2e-user-001"
DEFAULT_PERMISSIONS: tuple[str, ...] = ("read", "write")


class TokenError(Exception):
    """A token that is not accepted; ``reason`` is short and safe to return to a client."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Claims:
    sub: str
    email: str
    permissions: tuple[str, ...]
    iat: int
    exp: int
    type: str
    iss: str
    jti: str


def mint_token(
    secret: str,
    *,
    sub: str = DEFAULT_SUBJECT,
    email: str | None = None,
    permissions: Sequence[str] | None = None,
    ttl_s: int = 1800,
    now: float | None = None,
) -> str:
    if not secret:
        raise ValueError("a secret is required")
    issued = int(time.time() if now is None else now)
    claims = {
        "sub": sub,
        "email": email if email is not None else f"{sub}@staging.example.test",
        "permissions": list(DEFAULT_PERMISSIONS if permissions is None else permissions),
        "iat": issued,
        "exp": issued + ttl_s,
        "type": TOKEN_TYPE,
        "iss": ISSUER,
        "jti": str(uuid.uuid4()),
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def mint_with_claims(secret: str, claims: Mapping[str, Any], *, ttl_s: int = 1800) -> str:
    """An HS256 token of exactly ``claims`` (a project's probe), with ``iat`` and ``exp`` added unless given."""
    issued = int(time.time())
    return jwt.encode({"iat": issued, "exp": issued + ttl_s, **claims}, secret, algorithm=ALGORITHM)


def verify_token(secret: str, token: str, *, now: float | None = None) -> Claims:
    """Check signature, expiry, issuer and type; raise :class:`TokenError` otherwise."""
    options = {"require": ["sub", "iat", "exp", "iss", "type", "jti"], "verify_exp": now is None}
    try:
        payload = jwt.decode(token, secret, algorithms=[ALGORITHM], issuer=ISSUER, options=options)
    except jwt.ExpiredSignatureError:
        raise TokenError("token expired") from None
    except jwt.InvalidSignatureError:
        raise TokenError("bad signature") from None
    except jwt.InvalidIssuerError:
        raise TokenError("wrong issuer") from None
    except jwt.MissingRequiredClaimError as exc:
        raise TokenError(f"missing claim {exc.claim!r}") from None
    except jwt.DecodeError:
        raise TokenError("malformed token") from None
    except jwt.InvalidTokenError as exc:
        raise TokenError(f"invalid token: {exc}") from None
    if now is not None and int(payload["exp"]) <= now:
        raise TokenError("token expired")
    if payload.get("type") != TOKEN_TYPE:
        raise TokenError("wrong token type")
    permissions = payload.get("permissions") or []
    if not isinstance(permissions, list) or not all(isinstance(p, str) for p in permissions):
        raise TokenError("malformed permissions claim")
    return Claims(
        sub=str(payload["sub"]),
        email=str(payload.get("email") or ""),
        permissions=tuple(permissions),
        iat=int(payload["iat"]),
        exp=int(payload["exp"]),
        type=str(payload["type"]),
        iss=str(payload["iss"]),
        jti=str(payload["jti"]),
    )
