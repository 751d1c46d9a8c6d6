"""Access tokens (HS256, the staging test's claims) and how the backend finds them."""

from __future__ import annotations

import base64
import secrets

import jwt
import pytest

from replica.auth.tokens import ISSUER, TokenError, mint_token, verify_token
from replica.backend.auth_client import choose_subprotocol, encode_subprotocol_token, extract_token

NOW = 1_757_318_400


@pytest.fixture
def secret() -> str:
    return secrets.token_urlsafe(32)


def test_minted_token_has_the_staging_claims(secret: str) -> None:
    token = mint_token(secret, email="e2e@example.test", permissions=["read"], now=NOW)
    header = jwt.get_unverified_header(token)
    payload = jwt.decode(token, options={"verify_signature": False})
    assert header["alg"] == "HS256"
    assert set(payload) == {"sub", "email", "permissions", "iat", "exp", "type", "iss", "jti"}
    assert payload["sub"] == "staging-e2e-user-001"
    assert payload["email"] == "e2e@example.test"
    assert payload["permissions"] == ["read"]
    assert payload["iat"] == NOW and payload["exp"] == NOW + 1800
    assert payload["type"] == "access" and payload["iss"] == ISSUER == "netra-auth-service"


def test_jti_is_unique(secret: str) -> None:
    a = jwt.decode(mint_token(secret, now=NOW), options={"verify_signature": False})["jti"]
    b = jwt.decode(mint_token(secret, now=NOW), options={"verify_signature": False})["jti"]
    assert a != b


def test_verify_round_trip(secret: str) -> None:
    claims = verify_token(secret, mint_token(secret, sub="staging-e2e-user-002", permissions=["a", "b"]))
    assert claims.sub == "staging-e2e-user-002"
    assert claims.permissions == ("a", "b")
    assert claims.type == "access"


def _reason(secret: str, token: str, **kw: float) -> str:
    with pytest.raises(TokenError) as excinfo:
        verify_token(secret, token, **kw)
    return excinfo.value.reason


def test_rejections_have_short_reasons(secret: str) -> None:
    assert _reason(secret, mint_token(secret, ttl_s=-10)) == "token expired"
    assert _reason(secret, mint_token(secret, now=NOW), now=NOW + 1801) == "token expired"
    assert _reason("another-" + secret, mint_token(secret)) == "bad signature"
    assert _reason(secret, "not.a.jwt") == "malformed token"
    base = {"sub": "u", "iat": NOW, "exp": 4_102_444_800, "jti": "j"}
    assert _reason(secret, jwt.encode({**base, "iss": "elsewhere", "type": "access"}, secret)) == "wrong issuer"
    assert _reason(secret, jwt.encode({**base, "iss": ISSUER, "type": "refresh"}, secret)) == "wrong token type"
    assert _reason(secret, jwt.encode({**base, "iss": ISSUER}, secret)) == "missing claim 'type'"


def test_alg_none_is_refused(secret: str) -> None:
    payload = {"sub": "u", "iat": NOW, "exp": 4_102_444_800, "jti": "j", "iss": ISSUER, "type": "access"}
    unsigned = jwt.encode(payload, key=None, algorithm="none")
    with pytest.raises(TokenError):
        verify_token(secret, unsigned)


def test_mint_needs_a_secret() -> None:
    with pytest.raises(ValueError):
        mint_token("")


# --- where the backend finds the token ---------------------------------------------------------


def test_token_from_bearer_header() -> None:
    assert extract_token({"authorization": "Bearer abc.def.ghi"}, []) == "abc.def.ghi"
    assert extract_token({"authorization": "bearer  abc "}, []) == "abc"
    assert extract_token({"authorization": "Basic abc"}, []) is None
    assert extract_token({}, []) is None


def test_token_from_subprotocol() -> None:
    token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1In0.sig"
    proto = encode_subprotocol_token(token)
    assert proto.startswith("jwt.") and "=" not in proto
    assert base64.urlsafe_b64decode(proto[4:] + "=" * (-len(proto[4:]) % 4)).decode() == token
    assert extract_token({}, ["jwt-auth", proto]) == token
    assert extract_token({}, ["jwt."]) is None
    assert extract_token({}, ["jwt.%%%"]) is None
    assert extract_token({"authorization": "Bearer header-wins"}, [proto]) == "header-wins"


def test_subprotocol_choice() -> None:
    assert choose_subprotocol(["jwt.abc", "jwt-auth"]) == "jwt-auth"
    assert choose_subprotocol(["jwt.abc"]) is None
    assert choose_subprotocol([]) is None
