"""The JUnit and HTML reports: pure writers over run results, checked against the
Jenkins JUnit schema and in a real headless chromium."""

from __future__ import annotations

import re

from replica.diagnose import Mismatch, Ranked
from replica.evidence import Evidence, ServerError
from replica.fingerprint import Expectation, Fingerprint
from replica.html_report import html_page, steps
from replica.junit import diagnosis_junit, results_junit
from replica.probe import Observation, TimelineEvent
from replica.runner import RunResult
from replica.scenarios import Catalog
from tests.report_checks import assert_valid_junit, render

SERVED = Fingerprint(handshake="accepted", welcome=True, pong=True)
SEED = Fingerprint(handshake="accepted", welcome=False, close_code=1011, close_reason="Internal error", closed_by="server", close_after_ms=5)
TYPE_ERROR = ServerError(
    level="ERROR", logger="replica.ws", message="WebSocket error", exception_type="TypeError",
    exception_message="Object of type WebSocketState is not JSON serializable",
)


def run(name: str, handler: str, fp: Fingerprint, verdict: str, *, mismatches=(), errors=(), faults=(), expected=Expectation()) -> RunResult:
    closed = fp.close_code is not None
    timeline = [
        TimelineEvent(t_ms=1, event="health", detail="200"),
        TimelineEvent(t_ms=3, event="no_token_handshake", detail="http_403"),
        TimelineEvent(t_ms=4, event="connect"),
        TimelineEvent(t_ms=6, event="handshake", detail="accepted"),
    ]
    if closed:
        timeline.append(TimelineEvent(t_ms=11, event="closed", detail=f"{fp.close_code} {fp.close_reason!r} by server"))
    else:
        timeline += [TimelineEvent(t_ms=8, event="message", detail="system_message"), TimelineEvent(t_ms=8, event="welcome"),
                     TimelineEvent(t_ms=9, event="ping_sent"), TimelineEvent(t_ms=10, event="message", detail="pong"),
                     TimelineEvent(t_ms=10, event="pong")]
    return RunResult(
        name=name, scenario=name.split("@")[0], handler=handler, driver="local", expected=expected, observed=fp,
        verdict=verdict, mismatches=list(mismatches), backend_ready=True, duration_ms=120,
        observation=Observation(base_url="http://x", url="ws://x/ws", fingerprint=fp, timeline=timeline),
        evidence=Evidence(server_errors=list(errors), no_token="http_403"), faults=list(faults),
    )


RUNS = [
    run("seed-1011", "incident", SEED, "pass", errors=[TYPE_ERROR], faults=[("backend", "defect auth-log-json")]),
    run("seed-1011@recommended", "recommended", SEED, "fail", mismatches=["welcome: expected True, observed False"], errors=[TYPE_ERROR]),
    run("slow-postgres", "incident", SERVED, "pass", faults=[("postgres", "latency latency=100 downstream")]),
    run("mine", "project", SERVED, "observed", expected=None),
]


def test_junit_validates_and_a_failure_carries_the_mismatches_and_the_server_evidence():
    suite = assert_valid_junit(results_junit(RUNS, suite="replica scenarios run")).find("testsuite")
    assert (suite.get("tests"), suite.get("failures")) == ("4", "1")
    cases = suite.findall("testcase")
    assert [(c.get("classname"), c.get("name")) for c in cases] == [
        ("seed-1011", "incident #1"), ("seed-1011", "recommended #1"), ("slow-postgres", "incident #1"), ("mine", "project #1"),
    ]
    failure = cases[1].find("failure")
    assert failure.get("message") == "welcome: expected True, observed False"
    assert "TypeError: Object of type WebSocketState is not JSON serializable" in failure.text
    assert "connection without a token: http_403" in failure.text
    assert [c.find("failure") for c in (cases[0], cases[2], cases[3])] == [None, None, None]
    assert "verdict: observed" in cases[3].find("system-out").text
    assert "fault on postgres: latency latency=100 downstream" in cases[2].find("system-out").text


def test_junit_replaces_what_xml_cannot_hold():
    noisy = ServerError(level="ERROR", logger="app", message="colour \x1b[31mred\x1b[0m and a NUL \x00")
    xml = results_junit([run("seed-1011", "incident", SEED, "fail", mismatches=["close \x07"], errors=[noisy])])
    failure = assert_valid_junit(xml).find("testsuite/testcase/failure")
    assert "\ufffd[31mred" in failure.text and failure.get("message") == "close \ufffd"


def test_diagnosis_junit_fails_only_when_nothing_explains_the_observation():
    differs = Mismatch(field="close_reason", expected="Service unavailable", observed="Internal error")
    real = Ranked(scenario="seed-1011", handler="incident", title="t", matches=True, score=1.0, mismatches=[], notes=["same reason"])
    other = Ranked(scenario="supervisor-missing", handler="incident", title="t", matches=False, score=0.5, mismatches=[differs])
    explained = assert_valid_junit(diagnosis_junit("1011 Internal error", [real, other])).find("testsuite")
    assert explained.get("failures") == "0" and explained.get("tests") == "3"
    unexplained = assert_valid_junit(diagnosis_junit("1011 Internal error", [other])).find("testsuite")
    failure = unexplained.find("testcase/failure")
    assert failure.get("message") == "not explained by anything in the catalog"
    assert differs.text in failure.text


def test_the_diagram_goes_from_the_faults_through_accept_to_the_exception_and_the_close():
    labels = [(s.source, s.to, s.label) for s in steps(RUNS[0])]
    assert labels[0] == ("fault proxy", "backend", "backend: defect auth-log-json")
    order = [s.label for s in steps(RUNS[0])]
    exception = order.index("TypeError: Object of type WebSocketState is not JSON serializable")
    assert order.index("accept") < exception == order.index("close 1011 'Internal error' by server (11 ms)") - 1
    assert steps(RUNS[2])[0].to == "dependencies"


def test_every_scenario_describes_its_faults():
    catalog = Catalog.load()
    faulty = [s for s in catalog.scenarios.values() if s.toxics or s.down or s.backend.failpoints or s.backend.defects]
    assert faulty and all(s.faults() for s in faulty)


def test_the_page_renders_in_chromium_with_a_diagram_per_run_and_no_console_errors(tmp_path):
    page = tmp_path / "runs.html"
    page.write_text(html_page(RUNS))
    assert not re.search(r"(src|href)=\"?https?:", page.read_text())
    rendered = render(page, tmp_path / "profile")
    assert rendered.console == []
    assert rendered.dom.count('<svg class="sequence"') == len(RUNS)
    assert "Which fix cures which cause" in rendered.dom and "still fails (1011 Internal error)" in rendered.dom
    assert "Object of type WebSocketState is not JSON serializable" in rendered.dom


def test_the_browser_check_sees_a_console_error_and_a_blocked_fetch(tmp_path):
    page = tmp_path / "bad.html"
    page.write_text(html_page(RUNS[:1]).replace("</body>", '<img src="http://192.0.2.1/x.png"></body>'))
    assert render(page, tmp_path / "profile").console


def test_the_fix_grid_puts_the_built_in_variants_first_then_a_users_handler_and_only_handlers_that_ran():
    from replica.report import fix_grid

    runs = [
        run("seed-1011@mine", "tests.fix:handler", SERVED, "observed", expected=None),
        run("seed-1011@recommended", "recommended", SEED, "fail"),
        run("seed-1011", "incident", SEED, "pass"),
        run("slow-postgres@landed-fix", "landed-fix", SERVED, "pass"),
    ]
    grid = fix_grid(runs, ["seed-1011"])
    assert grid.causes == ["seed-1011"]
    assert grid.handlers == ["incident", "recommended", "tests.fix:handler"]
    assert grid.cells[("seed-1011", "tests.fix:handler")].verdict == "observed"
    assert fix_grid(runs).handlers == ["incident", "landed-fix", "recommended", "tests.fix:handler"]
