"""Serving the backend: uvicorn (lifespan startup before it listens) or gunicorn
with one uvicorn worker (binds first, as staging ran it)."""

from __future__ import annotations

import logging
import os
import signal
import sys
import warnings
from typing import Any

import uvicorn
from fastapi import FastAPI

from replica.backend import messages
from replica.backend.app import BackendConfig, create_app, load_config, request_stop
from replica.settings import BackendSettings

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
STARTUP_FAILURE = 3  # uvicorn's own exit code when lifespan startup fails
WORKER_BOOT_ERROR = 3  # gunicorn's Arbiter.WORKER_BOOT_ERROR: the master halts

# ws="websockets" is chosen on purpose (the keepalive behaviour the incident notes describe);
# set at import so a process that preloads uvicorn's protocol modules stays quiet too.
warnings.filterwarnings("ignore", message="The `websockets` implementation is deprecated")


def configure_logging() -> None:
    """Log lines of :data:`LOG_FORMAT` to stderr. The caller's file and line, the
    thread and the multiprocessing process name are not gathered per record: no
    format here uses them (the logging HOWTO's "Optimization"; a backend logs a few
    dozen lines per run). The pid is: gunicorn's format shows it."""
    logging._srcfile = None
    logging.logThreads = logging.logMultiprocessing = False
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format=LOG_FORMAT, force=True)


def uvicorn_options(settings: BackendSettings) -> dict[str, Any]:
    """uvicorn's settings for the backend, whether it runs alone or as a gunicorn worker.

    ``ws_max_size`` is the ``max_message_size`` the welcome advertises: a larger
    message is refused from its frame header (close 1009), never buffered.
    """
    return {
        "ws": "websockets",
        "ws_max_size": messages.MAX_MESSAGE_SIZE,
        "ws_ping_interval": settings.ws_ping_interval_s,
        "ws_ping_timeout": settings.ws_ping_timeout_s,
        "lifespan": "on",
        "log_config": None,
        "timeout_graceful_shutdown": 5,
    }


def serve(settings: BackendSettings, config: BackendConfig | None = None) -> int:
    """Serve until SIGTERM/SIGINT; returns the process exit code (0 after a graceful stop).

    Raises :class:`replica.backend.app.InvalidSettingError` before binding if a setting is bad.
    """
    config = config or load_config(settings)
    app = create_app(settings, config)
    if settings.server == "gunicorn":
        return _serve_gunicorn(app, settings)
    return _serve_uvicorn(app, settings)


class _Server(uvicorn.Server):
    """uvicorn's server, also telling a blocking startup in progress to give up on SIGTERM,
    and the harness (``notify_fd``) once it serves."""

    def __init__(self, config: uvicorn.Config, app: FastAPI, notify_fd: int | None = None) -> None:
        super().__init__(config)
        self._app = app
        self._notify_fd = notify_fd
        self.signalled = False

    async def startup(self, sockets: list[Any] | None = None) -> None:
        await super().startup(sockets)  # exits the process if the app's startup failed
        if self._notify_fd is not None:
            notify_serving(self._notify_fd)
            self._notify_fd = None

    def handle_exit(self, sig: int, frame: Any) -> None:
        self.signalled = True
        request_stop(self._app)
        super().handle_exit(sig, frame)


def notify_serving(fd: int) -> None:
    """One byte on the harness's readiness socket, which is then closed: the harness
    waiting for this backend checks it at once instead of at its next poll."""
    try:
        os.write(fd, b"1")
    except OSError:  # the harness stopped waiting: nothing to tell
        pass
    finally:
        os.close(fd)


def _serve_uvicorn(app: FastAPI, settings: BackendSettings) -> int:
    server = _Server(
        uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            fd=settings.fd,  # when set: serve on the harness's socket (listens once startup is done)
            **uvicorn_options(settings),
        ),
        app,
        settings.notify_fd,
    )
    # uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown; with these
    # handlers in place that re-raise is absorbed and the process exits 0.
    stop_signals: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, frame: stop_signals.append(signum))
                for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run()
    except SystemExit as exc:  # uvicorn's sys.exit(3) when lifespan startup fails
        if not server.signalled:
            return exc.code if isinstance(exc.code, int) else STARTUP_FAILURE
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0 if server.started or server.signalled else STARTUP_FAILURE


def _worker_class(settings: BackendSettings, app: FastAPI) -> type:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from uvicorn.workers import UvicornWorker

    class ReplicaUvicornWorker(UvicornWorker):
        """uvicorn's gunicorn worker with the replica's server: SIGTERM also abandons a hung startup."""

        CONFIG_KWARGS = {"loop": "auto", "http": "auto", **uvicorn_options(settings)}

        async def _serve(self) -> None:
            self.config.app = self.wsgi
            server = _Server(self.config, app, settings.notify_fd)
            install_sigquit = getattr(self, "_install_sigquit_handler", None)
            if install_sigquit is not None:
                install_sigquit()
            try:
                await server.serve(sockets=self.sockets)
            except SystemExit:
                if not server.signalled:
                    raise
                return
            if not server.started and not server.signalled:
                sys.exit(WORKER_BOOT_ERROR)

    return ReplicaUvicornWorker


def _serve_gunicorn(app: FastAPI, settings: BackendSettings) -> int:
    from gunicorn.app.base import BaseApplication

    options: dict[str, Any] = {
        "bind": f"fd://{settings.fd}" if settings.fd is not None else f"{settings.host}:{settings.port}",
        "workers": 1,
        "worker_class": _worker_class(settings, app),
        "preload_app": True,
        "graceful_timeout": 5,
        "errorlog": "-",
        "accesslog": None,
        "loglevel": "info",
        "proc_name": "replica-backend",
    }

    class ReplicaGunicorn(BaseApplication):
        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> FastAPI:
            return app

    ReplicaGunicorn().run()  # the arbiter exits the process itself on a worker boot failure
    return 0
