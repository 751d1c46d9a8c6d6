"""JUnit XML for CI (GitHub, GitLab, Jenkins): results → an XML string.

One testcase per run: classname = scenario, name = ``handler #repeat``; a failure
carries the mismatches and the server's evidence; a run with no expectation is
observed (a passing testcase whose system-out says so). Testcases hold no
``properties``: the Jenkins schema allows them on the testsuite only.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Iterable

from replica.diagnose import Ranked
from replica.report import evidence_lines, outcome_words
from replica.runner import RunResult


#: Characters XML 1.0 cannot hold (a log's escape codes, NULs): replaced, so the file stays valid.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _clean(text: str) -> str:
    return _NOT_XML.sub("\ufffd", text)


def _case(parent: ET.Element, classname: str, name: str, seconds: float) -> ET.Element:
    return ET.SubElement(parent, "testcase", classname=classname, name=name, time=f"{seconds:.3f}")


def _fail(case: ET.Element, message: str, kind: str, text: str) -> None:
    ET.SubElement(case, "failure", message=_clean(message), type=kind).text = _clean(text)


def _out(case: ET.Element, lines: list[str]) -> None:
    if lines:
        ET.SubElement(case, "system-out").text = _clean("\n".join(lines))


def _document(suite: ET.Element) -> str:
    cases = suite.findall("testcase")
    suite.set("tests", str(len(cases)))
    suite.set("failures", str(sum(c.find("failure") is not None for c in cases)))
    suite.set("errors", "0")
    suite.set("skipped", "0")
    suite.set("time", f"{sum(float(c.get('time', '0')) for c in cases):.3f}")
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def run_lines(r: RunResult) -> list[str]:
    """What a run showed: its verdict and fingerprint, the faults applied, and the server's evidence."""
    expected = r.expected.describe() if r.expected is not None else "nothing (observed, not judged)"
    lines = [
        f"verdict: {r.verdict} ({outcome_words(r.observed, baseline=r.name == r.scenario)[0]}) on the {r.driver} driver",
        f"fingerprint: {r.observed.summary()}",
        f"expected: {expected}",
    ]
    lines += [f"fault on {hop}: {what}" for hop, what in r.faults]
    if not r.backend_ready:
        lines.append(f"backend not ready: {r.backend_detail}")
    return lines + evidence_lines(r)


def results_junit(results: Iterable[RunResult], suite: str = "replica") -> str:
    """A testsuite of the runs."""
    root = ET.Element("testsuite", name=suite)
    for r in results:
        case = _case(root, r.scenario, f"{r.handler} #{r.repeat}", r.duration_ms / 1000)
        lines = run_lines(r)
        if r.verdict == "fail":
            _fail(case, "; ".join(r.mismatches), "FingerprintMismatch", "\n".join(r.mismatches + lines))
        _out(case, lines)
    return _document(root)


def diagnosis_junit(observed: str, ranked: list[Ranked]) -> str:
    """A testsuite of a diagnosis: whether anything explains the observation, then each candidate."""
    root = ET.Element("testsuite", name="diagnose")
    props = ET.SubElement(root, "properties")
    ET.SubElement(props, "property", name="observed", value=_clean(observed))
    verdict = _case(root, "diagnose", "observation is explained", 0.0)
    explaining = [r for r in ranked if r.matches]
    if explaining:
        _out(verdict, [f"explained by {r.scenario}" for r in explaining])
    elif ranked:
        best = ranked[0]
        text = [f"observed: {observed}", f"nearest: {best.scenario} (score {best.score:.2f})"] + [m.text for m in best.mismatches]
        _fail(verdict, "not explained by anything in the catalog", "Unexplained", "\n".join(text))
    else:
        _fail(verdict, "no candidate causes", "Unexplained", f"observed: {observed}")
    for r in ranked:
        case = _case(root, r.scenario, r.handler, 0.0)
        head = f"score {r.score:.2f}: " + ("explains the observation" if r.matches else "does not explain it")
        _out(case, [head] + (r.notes if r.matches else [m.text for m in r.mismatches]))
    return _document(root)
