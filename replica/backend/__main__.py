"""``python -m replica.backend``: validate the settings, then serve.

A bad setting (handler, failpoint spec, defect list, or any value) prints
``error: <message>`` to stderr and exits with code 2 before the port is bound.
"""

from __future__ import annotations

import sys

from pydantic import ValidationError

from replica.backend.app import InvalidSettingError, load_config
from replica.backend.server import configure_logging, serve
from replica.errors import USAGE_ERROR
from replica.settings import BackendSettings


def main() -> int:
    try:
        settings = BackendSettings.from_env()
    except ValidationError as exc:
        problems = "; ".join(f"REPLICA_{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors())
        print(f"error: {problems}", file=sys.stderr)
        return USAGE_ERROR
    configure_logging()
    try:
        config = load_config(settings)
    except InvalidSettingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return USAGE_ERROR
    return serve(settings, config)


if __name__ == "__main__":
    sys.exit(main())

__all__ = ["main", "serve"]
