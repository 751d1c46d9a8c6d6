"""The auth service: validates access tokens for the backend over HTTP."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from replica.auth.tokens import TokenError, verify_token
from replica.settings import AuthSettings

logger = logging.getLogger("replica.auth")


class ValidateRequest(BaseModel):
    token: str


def create_app(settings: AuthSettings) -> FastAPI:
    app = FastAPI(title="replica auth service", docs_url=None, redoc_url=None, openapi_url=None)
    secret = settings.jwt_secret

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err.get('loc', ()) if p != 'body') or 'body'}: {err.get('msg')}"
            for err in exc.errors()
        )
        return JSONResponse(
            status_code=422,
            content={"valid": False, "error": f'expected a JSON body {{"token": "<jwt>"}} ({problems})'},
        )

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "healthy"}

    @app.post("/auth/validate")
    async def validate(body: ValidateRequest) -> JSONResponse:
        try:
            claims = verify_token(secret, body.token)
        except TokenError as exc:
            logger.info("token rejected: %s", exc.reason)
            return JSONResponse(status_code=401, content={"valid": False, "error": exc.reason})
        logger.info("token accepted for %s", claims.sub)
        return JSONResponse(
            content={
                "valid": True,
                "user_id": claims.sub,
                "email": claims.email,
                "permissions": list(claims.permissions),
            }
        )

    return app
