"""A command imports what it uses: the CLI starts without the catalog's models, the
probe's clients or the backend's servers, and a scenario run on a running stack
without httpx (and its async backend) or anything of the servers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
#: Never needed in the process of a command that only reads, prints or asks a running stack.
SERVERS = ("asyncpg", "redis", "fastapi", "starlette", "uvicorn", "gunicorn")
HTTPX = ("httpx", "httpcore", "anyio")


def loaded_after(code: str, returncode: int = 0) -> set[str]:
    """Top-level packages a fresh interpreter has loaded after running ``code`` (which exits ``returncode``)."""
    # At exit (a command ends the process itself), what was loaded by then.
    report = "import atexit, json, sys\natexit.register(lambda: print(json.dumps(sorted({m.split('.')[0] for m, module in sys.modules.items() if module is not None}))))"
    probe = f"{report}\n{code}"
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == returncode, result.stderr
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


def command(argv: list[str], *setup: str) -> str:
    """Code that runs ``replica ARGV`` as the console script does, after the lines ``setup``."""
    return "\n".join(["import os, sys, replica.__main__", *setup, f"sys.argv = ['replica', *{argv!r}]", "replica.__main__.main()"])


def test_importing_the_cli_loads_no_model_client_or_server() -> None:
    loaded = loaded_after("import replica.cli")
    assert "typer" in loaded and "rich" in loaded
    for package in ("pydantic", "yaml", "jwt", "websockets", "h11", *HTTPX, *SERVERS):
        assert package not in loaded, f"`import replica.cli` loads {package}"


def test_a_run_on_a_running_stack_loads_neither_httpx_nor_a_server() -> None:
    """Every module `scenarios run` imports on its way to a running stack's lanes API."""
    code = "\n".join(
        [
            "import replica.cli, replica.report, replica.generic_catalog, replica.runner, replica.shard",
            "import replica.drivers.stack, replica.drivers.up.remote",
            "from replica.scenarios import Catalog",
            "Catalog.load().select(['healthy'])",
        ]
    )
    loaded = loaded_after(code)
    assert {"pydantic", "yaml", "websockets", "h11", "jwt"} <= loaded
    for package in (*HTTPX, *SERVERS):
        assert package not in loaded, f"a run on a running stack loads {package}"


@pytest.mark.parametrize(
    ("argv", "unused"),
    [
        (["--help"], ("pydantic", "yaml", "websockets", "h11", *HTTPX, *SERVERS)),
        (["scenarios", "list"], ("websockets", "h11", "jwt", *HTTPX, *SERVERS)),
    ],
)
def test_a_command_loads_only_what_it_uses(argv: list[str], unused: tuple[str, ...]) -> None:
    loaded = loaded_after(command(argv))
    for package in unused:
        assert package not in loaded, f"`replica {' '.join(argv)}` loads {package}"


def test_the_fork_servers_preload_skips_httpxs_command_line_client() -> None:
    loaded = loaded_after("import replica.drivers.local.preload")
    assert {"httpx", "fastapi", "uvicorn"} <= loaded
    for package in ("rich", "pygments"):  # click stays: uvicorn's own
        assert package not in loaded, f"the fork server's preload loads {package}"


def test_a_command_that_uses_httpx_skips_its_command_line_client(tmp_path: Path) -> None:
    """`replica status` asks the stack's services with httpx (here: no stack is running)."""
    code = command(["status"], f"os.environ['REPLICA_STATE_DIR'] = {str(tmp_path / 'state')!r}")
    loaded = loaded_after(code, returncode=1)  # no stack runs
    assert "httpx" in loaded
    for package in ("click", "pygments"):
        assert package not in loaded, f"`replica status` loads {package}"


def test_a_run_of_the_built_in_backend_does_not_load_the_project_files_models(tmp_path: Path) -> None:
    """No replica.toml here and no --config: the project module is not imported."""
    code = "\n".join(
        [
            "import os, sys",
            f"os.chdir({str(tmp_path)!r})",
            "import replica.cli",
            "assert replica.cli.project_option(None) is None",
            "assert 'replica.project' not in sys.modules, 'the project module was loaded'",
        ]
    )
    loaded_after(code)
