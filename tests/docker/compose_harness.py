"""A minimal harness process for the Ctrl-C test: brings the compose stack up
with testcontainers' ``DockerCompose`` and always tears it down.

    python -m tests.docker.compose_harness   (project name etc. from the environment)

Prints ``up-started`` before ``docker compose up`` and ``stack-up`` once every
service is healthy, then waits. SIGINT (Ctrl-C) or SIGTERM at any point runs
``docker compose down --volumes`` before it exits with 130.
"""

from __future__ import annotations

import signal
import sys
import time

from testcontainers.compose import DockerCompose

from tests.docker.conftest import COMPOSE_FILE, IMAGES_ENV, REPO


def _sigterm(_signo: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    signal.signal(signal.SIGTERM, _sigterm)
    compose = DockerCompose(REPO, compose_file_name=COMPOSE_FILE, env_file=str(IMAGES_ENV), wait=True, build=False)
    try:
        print("up-started", flush=True)
        compose.start()
        print("stack-up", flush=True)
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        return 130
    finally:
        # A second Ctrl-C must not cut the teardown short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        compose.stop(down=True)
        print("torn-down", flush=True)


if __name__ == "__main__":
    sys.exit(main())
