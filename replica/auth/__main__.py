"""``python -m replica.auth``: serve the auth service with uvicorn (settings from the environment)."""

from __future__ import annotations

import logging
import sys

import uvicorn

from replica.auth.app import create_app
from replica.settings import AuthSettings


def main() -> None:
    settings = AuthSettings.from_env()
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = uvicorn.Config(
        create_app(settings), host=settings.host, port=settings.port, fd=settings.fd, log_config=None, lifespan="off"
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
