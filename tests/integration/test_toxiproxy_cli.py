"""``python -m faults.toxiproxy``: listening line, signals, config file, exit codes."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.integration.cli_support import run_replica
from tests.integration.toxiproxy_support import (  # noqa: F401 - fixtures
    REPO,
    TcpServer,
    connect,
    echo,
    recv_exactly,
    start_server,
)

pytestmark = pytest.mark.slow


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "faults.toxiproxy", *args], cwd=REPO, capture_output=True, text=True, timeout=20
    )


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_closes_everything_and_exits_0(echo: TcpServer, sig: signal.Signals) -> None:
    server = start_server()
    proxy = httpx.post(f"{server.url}/proxies", json={"name": "e", "upstream": echo.address}, timeout=5).json()
    port = int(proxy["listen"].rsplit(":", 1)[1])
    sock = connect(port)
    sock.sendall(b"a")
    assert recv_exactly(sock, 1) == b"a"
    server.process.send_signal(sig)
    assert server.process.wait(timeout=10) == 0
    assert server.process.stdout is not None and server.process.stdout.read() == ""  # exactly one line
    try:
        assert sock.recv(1) == b""
    except ConnectionResetError:
        pass
    sock.close()
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0
        assert probe.connect_ex(("127.0.0.1", server.port)) != 0


def test_config_file_creates_proxies_with_toxics(tmp_path: Path, echo: TcpServer) -> None:
    config = tmp_path / "toxiproxy.json"
    config.write_text(
        json.dumps(
            [
                {
                    "name": "redis",
                    "listen": "127.0.0.1:0",
                    "upstream": echo.address,
                    "toxics": [{"type": "latency", "attributes": {"latency": 30}}],
                },
                {"name": "pg", "upstream": echo.address, "enabled": False},
            ]
        )
    )
    server = start_server("--config", str(config), "--seed", "5")
    try:
        proxies = httpx.get(f"{server.url}/proxies", timeout=5).json()
        assert sorted(proxies) == ["pg", "redis"]
        assert proxies["pg"]["enabled"] is False
        assert proxies["redis"]["toxics"][0]["attributes"] == {"latency": 30, "jitter": 0}
    finally:
        assert server.stop() == 0


def test_bad_arguments_exit_2() -> None:
    result = run_cli("--port", "notaport")
    assert result.returncode == 2 and "--port" in result.stderr and result.stdout == ""
    result = run_cli("--bogus")
    assert result.returncode == 2 and "unrecognized arguments" in result.stderr


def test_unreadable_or_invalid_config_exit_2(tmp_path: Path) -> None:
    result = run_cli("--port", "0", "--config", str(tmp_path / "missing.json"))
    assert result.returncode == 2 and "cannot read config file" in result.stderr
    bad = tmp_path / "bad.json"
    bad.write_text('[{"upstream": "x:1"}]')
    result = run_cli("--port", "0", "--config", str(bad))
    assert result.returncode == 2 and "missing required field: name at proxy 1" in result.stderr
    bad.write_text("{not json")
    result = run_cli("--port", "0", "--config", str(bad))
    assert result.returncode == 2 and "invalid config file" in result.stderr


def test_port_in_use_exits_3(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        busy_port = busy.getsockname()[1]
        result = run_cli("--port", str(busy_port))
        assert result.returncode == 3
        assert "cannot listen" in result.stderr and result.stdout == ""

        config = tmp_path / "busy.json"
        config.write_text(json.dumps([{"name": "p", "upstream": "x:1", "listen": f"127.0.0.1:{busy_port}"}]))
        result = run_cli("--port", "0", "--config", str(config))
    assert result.returncode == 3
    assert f"listen tcp 127.0.0.1:{busy_port}: bind: address already in use" in result.stderr


def run_both(*args: str, tmp_path: Path) -> list[subprocess.CompletedProcess[str]]:
    """The same options given to ``python -m faults.toxiproxy`` and to ``replica proxy serve``."""
    return [run_cli(*args), run_replica("proxy", "serve", *args, state_dir=tmp_path / "state", timeout=20)]


@pytest.mark.parametrize("port", ["99999", "65536", "-1"])
def test_ports_out_of_range_exit_2(tmp_path: Path, port: str) -> None:
    """``replica proxy serve --port 99999`` used to listen on 34463."""
    for result in run_both("--port", port, tmp_path=tmp_path):
        assert result.returncode == 2, result.stderr
        assert "port" in result.stderr and "Traceback" not in result.stderr and result.stdout == ""


def test_an_invalid_host_exits_2(tmp_path: Path) -> None:
    for host in ("", "a" * 64, "bad host"):
        for result in run_both("--port", "0", "--host", host, tmp_path=tmp_path):
            assert result.returncode == 2 and "invalid host" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            '[{"name":"a","upstream":"x:1","toxics":[{"type":"noop","toxicity":1e300}]}]',
            "cannot unmarshal number 1e300 into Go struct field ToxicWrapper.toxicity of type float32 at proxy 1 toxic 1",
        ),
        (
            '[{"name":"a","upstream":"x:1","toxics":[{"type":"latency","attributes":{"latency":' + "9" * 5000 + "}}]}]",
            "into Go struct field LatencyToxic.attributes.latency of type int64 at proxy 1 toxic 1",
        ),
        ("[" * 5000, "invalid character '[' exceeded max depth"),
        ('[{"name":"a","upstream":"x:1","toxics":[{"type":"latency","attributes":{"latncy":1}}]}]', 'unknown field "latncy"'),
        ('[{"name":"a/b","upstream":"x:1"}]', "proxy name must be printable and must not contain '/' at proxy 1"),
        ("NaN", "invalid character 'N' looking for beginning of value"),
    ],
)
def test_config_contents_are_validated_before_starting(tmp_path: Path, content: str, message: str) -> None:
    """Such a config used to end in a traceback and exit 1."""
    config = tmp_path / "config.json"
    config.write_text(content)
    for result in run_both("--port", "0", "--config", str(config), tmp_path=tmp_path):
        assert result.returncode == 2, result.stderr
        assert message in result.stderr and "Traceback" not in result.stderr and result.stdout == ""
