from pathlib import Path

import pytest

from replica.errors import ConfigError
from replica.scenarios import Catalog, load_scenario

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
