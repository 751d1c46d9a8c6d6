"""Resolving REPLICA_HANDLER and validating the backend's settings before it binds."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from replica.backend.app import InvalidSettingError, load_config
from replica.backend.handlers import VARIANTS, HandlerLoadError, Variant, load_handler
from replica.backend.handlers.steps import detect_e2e_incident, detect_e2e_seed
from replica.settings import BackendSettings

USER_MODULE = textwrap.dedent(
    """
    async def handler(websocket):
        await websocket.accept()

    async def with_default(websocket, extra=None):
        pass

    def sync_handler(websocket):
        pass

    async def two_args(websocket, other):
        pass

    async def no_args():
        pass

    class Holder:
        async def method(self, websocket):
            pass

    holder = Holder()
    not_callable = 3
    """
)


@pytest.fixture
def user_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    package = tmp_path / "userpkg_handlers"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "routes.py").write_text(USER_MODULE)
    (package / "broken.py").write_text("raise RuntimeError('import-time failure')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "userpkg_handlers"
    for name in list(sys.modules):
        if name.startswith("userpkg_handlers"):
            del sys.modules[name]


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.name)
def test_builtin_variants_load(variant: Variant) -> None:
    handler = load_handler(variant.name)
    assert f"{handler.__module__}:{handler.__name__}" == variant.target


def test_user_handler_loads(user_package: str) -> None:
    handler = load_handler(f"{user_package}.routes:handler")
    assert handler.__name__ == "handler"
    assert load_handler(f"{user_package}.routes:with_default").__name__ == "with_default"
    assert load_handler(f"{user_package}.routes:holder.method").__name__ == "method"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nosuchpkg_xyz.routes:handler", "handler 'nosuchpkg_xyz.routes:handler': module 'nosuchpkg_xyz' not found"),
        ("{pkg}.nope:handler", "handler '{pkg}.nope:handler': module '{pkg}.nope' not found"),
        ("{pkg}.routes:missing", "handler '{pkg}.routes:missing': module '{pkg}.routes' has no attribute 'missing'"),
        ("{pkg}.routes:sync_handler", "handler '{pkg}.routes:sync_handler' is not an async callable (expected: async def sync_handler(websocket))"),
        ("{pkg}.routes:not_callable", "handler '{pkg}.routes:not_callable' is not an async callable (expected: async def not_callable(websocket))"),
        ("{pkg}.routes:two_args", "handler '{pkg}.routes:two_args' must take exactly one argument (the websocket)"),
        ("{pkg}.routes:no_args", "handler '{pkg}.routes:no_args' must take exactly one argument (the websocket)"),
        ("{pkg}.broken:handler", "handler '{pkg}.broken:handler': importing '{pkg}.broken' failed: RuntimeError: import-time failure"),
        ("incidnet", "unknown handler 'incidnet': use one of incident, seed-fix, landed-fix, log-line-fix, fallback-handler, startup-wait-5s, recommended or package.module:function"),
        (":handler", "bad handler ':handler': expected package.module:function"),
        ("{pkg}.routes:", "bad handler '{pkg}.routes:': expected package.module:function"),
    ],
)
def test_loading_errors_are_clear(user_package: str, spec: str, message: str) -> None:
    with pytest.raises(HandlerLoadError) as excinfo:
        load_handler(spec.format(pkg=user_package))
    assert str(excinfo.value) == message.format(pkg=user_package)


def test_load_config_names_the_setting() -> None:
    with pytest.raises(InvalidSettingError, match=r"^REPLICA_HANDLER: unknown handler 'x'"):
        load_config(BackendSettings(handler="x"))
    with pytest.raises(InvalidSettingError, match=r"^REPLICA_FAILPOINTS: ws.autth=skip: unknown failpoint 'ws.autth'"):
        load_config(BackendSettings(failpoints="ws.autth=skip"))
    with pytest.raises(InvalidSettingError, match=r"^REPLICA_DEFECTS: unknown defect 'nope'"):
        load_config(BackendSettings(defects="nope"))
    config = load_config(BackendSettings(handler="incident", failpoints="startup.supervisor=skip", defects="auth-log-json"))
    assert config.defects == frozenset({"auth-log-json"})
    assert str(config.failpoints) == "startup.supervisor=skip"


def test_settings_from_env_read_the_new_timeouts() -> None:
    settings = BackendSettings.from_env(
        {"REPLICA_DEPENDENCY_TIMEOUT_S": "1.5", "REPLICA_AUTH_TIMEOUT_S": "2", "REPLICA_RETRY_AFTER_S": "7"}
    )
    assert (settings.dependency_timeout_s, settings.auth_timeout_s, settings.retry_after_s) == (1.5, 2.0, 7)
    assert BackendSettings.from_env(settings.to_env()) == settings


# --- E2E detection (pure parts of the handlers) ------------------------------------------------


def test_incident_e2e_detection() -> None:
    assert detect_e2e_incident({"X-Test-Type": "E2E"}, env={})
    assert detect_e2e_incident({"x-test-type": "integration"}, env={})
    assert detect_e2e_incident({"X-Test-Environment": "staging"}, env={})
    assert detect_e2e_incident({"X-E2E-Test": "yes"}, env={})
    assert detect_e2e_incident({"X-Test-Mode": "1"}, env={})
    assert detect_e2e_incident({}, env={"E2E_TESTING": "true"})
    assert not detect_e2e_incident({"X-Test-Type": "unit", "User-Agent": "Netra-E2E-Tests/1.0"}, env={})


def test_seed_e2e_detection_is_narrower() -> None:
    assert detect_e2e_seed({"X-E2E-Test": "TRUE"})
    assert detect_e2e_seed({"X-Test-Type": "E2E"})
    assert detect_e2e_seed({"X-Test-Mode": "true"})
    assert not detect_e2e_seed({"X-E2E-Test": "1"})
    assert not detect_e2e_seed({"X-Test-Environment": "staging"})


# --- one registry of variants ------------------------------------------------------------------


def test_everything_that_lists_variants_derives_from_the_registry() -> None:
    import importlib
    import sys

    from replica import report, settings
    from replica.backend.handlers.variants import PRELOAD_MODULES
    from replica.scenarios import Scenario

    names = tuple(v.name for v in VARIANTS)
    assert settings.BUILTIN_HANDLERS == names
    assert tuple(report.fix_columns()) == names
    Scenario.model_validate({"name": "x", "title": "t", "hypothesis": "h", "expect": {}, "fixes": {"startup-wait-5s": {}}})
    for module in PRELOAD_MODULES:
        sys.modules.pop(module, None)
    importlib.reload(importlib.import_module("replica.backend.handlers.preload"))
    assert {v.module for v in VARIANTS} <= set(sys.modules)


def test_the_landed_fix_is_split_into_its_three_changes() -> None:
    from replica.backend.handlers.incident import STARTUP_WAIT_S, Changes

    assert Changes() == Changes(log_line_fixed=False, fallback_handler=False, startup_wait_s=STARTUP_WAIT_S)
    waits = {v.name: v.startup_wait_s for v in VARIANTS}
    assert waits["incident"] == waits["log-line-fix"] == waits["fallback-handler"] == 30.0
    assert waits["landed-fix"] == waits["startup-wait-5s"] == 5.0
