from pathlib import Path

import pytest

from replica.errors import ConfigError
from replica.scenarios import BackendSpec, Catalog, builtin_backend, load_scenario

REQUIRED = {
    "seed-1011",
    "supervisor-missing",
    "thread-service-missing",
    "startup-never-completes",
    "slow-postgres-startup",
    "hung-redis-sync-client",
    "healthy",
}


def test_catalog_has_every_required_hypothesis():
    catalog = Catalog.load()
    assert REQUIRED <= set(catalog.scenarios)
    seed = catalog.scenarios["seed-1011"]
    assert seed.real_cause and seed.backend.defects == ("auth-log-json",)
    assert seed.expect.close_code == 1011 and seed.expect.close_reason == "Internal error"


def test_every_scenario_has_a_check_for_each_variant():
    catalog = Catalog.load()
    for scenario in catalog.scenarios.values():
        variants = set(scenario.fixes) | {scenario.backend.handler}
        assert variants >= {"incident", "seed-fix", "landed-fix", "recommended"}, scenario.name


def test_fix_checks_expand_into_named_runs():
    runs = {r.name: r for r in Catalog.load().runs()}
    run = runs["seed-1011@recommended"]
    assert run.handler == "recommended" and run.backend.handler == "recommended"
    assert run.backend.defects == ("auth-log-json",)
    assert run.expect.welcome is True


def test_select_unknown_name_says_what_exists():
    with pytest.raises(ConfigError, match="unknown scenario 'nope'.*seed-1011"):
        Catalog.load().select(["nope"])


def test_user_handler_is_held_to_the_recommended_outcome():
    catalog = Catalog.load()
    [run] = catalog.select(["supervisor-missing"], handler="myapp.ws:endpoint")
    assert run.name == "supervisor-missing@myapp.ws:endpoint"
    assert run.expect == catalog.scenarios["supervisor-missing"].fixes["recommended"]
    assert run.expect_label == "as recommended"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return path


def test_unknown_key_names_the_field(tmp_path):
    path = write(tmp_path, "x", "name: x\ntitle: t\nhypothesis: h\nexpect: {}\nbackend: {handlr: incident}\n")
    with pytest.raises(ConfigError, match=r"x.yaml: backend.handlr: Extra inputs are not permitted"):
        load_scenario(path)


def test_unknown_fix_variant_is_refused(tmp_path):
    path = write(tmp_path, "x", "name: x\ntitle: t\nhypothesis: h\nexpect: {}\nfixes: {bogus-fix: {}}\n")
    with pytest.raises(ConfigError, match="unknown handler variant 'bogus-fix'"):
        load_scenario(path)


def test_bad_yaml_and_mismatched_name(tmp_path):
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_scenario(write(tmp_path, "y", "name: [unclosed\n"))
    with pytest.raises(ConfigError, match="must match the file name"):
        load_scenario(write(tmp_path, "z", "name: other\ntitle: t\nhypothesis: h\nexpect: {}\n"))


def test_toxic_hop_must_exist(tmp_path):
    text = "name: x\ntitle: t\nhypothesis: h\nexpect: {}\ntoxics: [{hop: mysql, type: latency}]\n"
    with pytest.raises(ConfigError, match="toxics.0.hop"):
        load_scenario(write(tmp_path, "x", text))


def test_a_catalog_scenario_must_predict_a_fingerprint(tmp_path):
    with pytest.raises(ConfigError, match=r"x.yaml: expect: required"):
        load_scenario(write(tmp_path, "x", "name: x\ntitle: t\nhypothesis: h\nexpect:\n"))
    with pytest.raises(ConfigError, match=r"x.yaml: expect: "):
        load_scenario(write(tmp_path, "x", "name: x\ntitle: t\nhypothesis: h\n"))


HEAD = "name: x\ntitle: t\nhypothesis: h\nexpect: {}\n"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("backend: {failpoints: 'ws.autth=raise(TypeError: x)'}",
         "x.yaml: backend.failpoints: ws.autth=raise(TypeError: x): unknown failpoint 'ws.autth'; did you mean 'ws.auth'?"),
        ("backend: {failpoints: 'ws.auth=explode'}", "x.yaml: backend.failpoints: ws.auth=explode: unknown action 'explode'"),
        ("backend: {failpoints: 'ws.welcome=skip'}",
         "x.yaml: backend.failpoints: ws.welcome=skip: 'skip' is not allowed at ws.welcome"),
        ("backend: {defects: [auth-log-jsn]}",
         "x.yaml: backend.defects: unknown defect 'auth-log-jsn'; did you mean 'auth-log-json'? (known: auth-log-json)"),
        ("toxics: [{hop: redis, type: latncy}]",
         "x.yaml: toxics.0.type: unknown toxic type 'latncy' (known: latency, bandwidth, slow_close, timeout, reset_peer, "
         "slicer, limit_data, noop)"),
        ("toxics: [{hop: redis, type: latency, attributes: {latncy: 5}}]",
         "x.yaml: toxics.0: latency has no attribute 'latncy' (known: latency, jitter)"),
    ],
)
def test_a_typo_anywhere_is_refused_naming_file_and_field(tmp_path, body: str, message: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_scenario(write(tmp_path, "x", HEAD + body + "\n"))
    assert str(excinfo.value).startswith(f"{tmp_path}/{message}")
    assert excinfo.value.exit_code == 2


def test_one_bad_file_stops_the_whole_catalog_from_loading(tmp_path) -> None:
    for path in Path(__file__).resolve().parents[2].joinpath("faults", "scenarios").glob("*.yaml"):
        (tmp_path / path.name).write_text(path.read_text())
    Catalog.load(tmp_path)
    bad = tmp_path / "healthy.yaml"
    bad.write_text(bad.read_text().replace("handler: incident", "handler: incident\n  failpoints: ws.autth=skip"))
    with pytest.raises(ConfigError, match=r"healthy.yaml: backend.failpoints: ws.autth=skip: unknown failpoint"):
        Catalog.load(tmp_path)


def test_a_project_of_its_own_may_name_any_well_formed_point() -> None:
    """Only the built-in catalog is held to the built-in backend's declared points."""
    assert BackendSpec(failpoints="ws.publish=raise").failpoints == "ws.publish=raise"
    with pytest.raises(ValueError, match="unknown action 'explode'"):
        BackendSpec(failpoints="ws.publish=explode")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"failpoints": "ws.autth=skip"}, "--failpoints: ws.autth=skip: unknown failpoint 'ws.autth'"),
        ({"defects": ("nope",)}, "--defects: unknown defect 'nope'"),
        ({"startup_mode": "lazy"}, "--startup-mode: Input should be 'blocking' or 'background'"),
    ],
)
def test_builtin_backend_options_are_checked_naming_the_option(options: dict, message: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        builtin_backend(**options)
    assert str(excinfo.value).startswith(message)
