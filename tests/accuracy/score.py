#!/usr/bin/env python3
"""Accuracy scorer: run ``railwatch scan`` on each labelled scenario and compare with its truth.

    python tests/accuracy/score.py [--json] [scenario ...]

A scenario is a folder ``tests/accuracy/scenarios/<name>/`` holding ``truth.json``::

    {"description": "...",
     "logs": "tests/fixtures/logs/accuracy/<name>",   # repo-relative folder of captured logs
     "files": ["production.log", "sidekiq.log"],       # optional: which of them (default: all *.log
                                                       #   except puma.log and sidekiq.stdout.log)
     "setup": {...},                                   # what was varied (documentation)
     "facts": {"revision": "...", ...},                # optional AppFacts the operator would give
     "settings": {"sidekiq_failures": {...}},          # optional detector settings (config file)
     "expect": [{"detector": "...", "subject": {k: v}, "severity": "critical", "why": "..."}],
     "silent": [{"detector": "...", "subject": {k: v}, "why": "..."}],  # subject optional
     "max_severity_elsewhere": "warning" | "none"}

Each incident is matched at most once:

* an expectation is *found* by an incident of its detector whose subject contains its subject
  items; found with another severity is *wrong severity*; when only other subjects of that
  detector were reported, the first of them is taken as *wrong subject*; otherwise *missed*;
* an unmatched critical incident is a *false critical*; an unmatched warning is an
  *unexpected warning*, tolerated when ``max_severity_elsewhere`` is "warning" unless it
  matches a ``silent`` entry (then it is a *silence broken*).

A scenario fails on a miss, a wrong subject, a wrong severity, a false critical or a broken
silence (or any unexpected warning when ``max_severity_elsewhere`` is "none"). The exit status
is 1 when any scenario fails.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SCENARIOS_DIR = os.path.join(HERE, "scenarios")
SKIPPED_LOGS = ("puma.log", "sidekiq.stdout.log")  # boot/shutdown lines only; not the app's logs


@dataclass
class Outcome:
    """How one scenario scored. Lists hold one-line descriptions of incidents or expectations."""

    scenario: str
    expected: int = 0
    found: List[str] = field(default_factory=list)
    missed: List[str] = field(default_factory=list)
    wrong_subject: List[str] = field(default_factory=list)
    wrong_severity: List[str] = field(default_factory=list)
    false_critical: List[str] = field(default_factory=list)
    silence_broken: List[str] = field(default_factory=list)
    unexpected_warnings: List[str] = field(default_factory=list)
    warnings_allowed: bool = True
    errors: List[str] = field(default_factory=list)

    @property
    def failures(self) -> List[str]:
        out = (["missed: " + m for m in self.missed] + ["wrong subject: " + m for m in self.wrong_subject]
               + ["wrong severity: " + m for m in self.wrong_severity]
               + ["false critical: " + m for m in self.false_critical]
               + ["must stay silent: " + m for m in self.silence_broken])
        if not self.warnings_allowed:
            out += ["unexpected warning: " + m for m in self.unexpected_warnings]
        return out + ["scan error: " + e for e in self.errors]

    @property
    def passed(self) -> bool:
        return not self.failures


def load_truth(name: str) -> Dict[str, Any]:
    with open(os.path.join(SCENARIOS_DIR, name, "truth.json")) as f:
        return json.load(f)


def scenario_names() -> List[str]:
    return sorted(d for d in os.listdir(SCENARIOS_DIR) if os.path.isfile(os.path.join(SCENARIOS_DIR, d, "truth.json")))


def log_paths(truth: Dict[str, Any]) -> List[str]:
    folder = os.path.join(ROOT, truth["logs"])
    if truth.get("files"):
        return [os.path.join(folder, f) for f in truth["files"]]
    return [p for p in sorted(glob.glob(os.path.join(folder, "*.log"))) if os.path.basename(p) not in SKIPPED_LOGS]


def _subject_matches(want: Dict[str, Any], got: Dict[str, Any]) -> bool:
    return all(str(got.get(k)) == str(v) for k, v in want.items())


def _describe(incident: Any) -> str:
    return "%s %s %s" % (incident.detector, incident.severity, json.dumps(incident.subject, sort_keys=True))


def _describe_want(want: Dict[str, Any]) -> str:
    return "%s %s %s" % (want["detector"], want.get("severity", "?"), json.dumps(want.get("subject", {}), sort_keys=True))


def score(name: str, truth: Dict[str, Any], incidents: Sequence[Any]) -> Outcome:
    """Compare one scan's incidents with a truth (pure: no I/O, testable on its own)."""
    out = Outcome(name, expected=len(truth.get("expect", [])),
                  warnings_allowed=truth.get("max_severity_elsewhere", "warning") == "warning")
    left = list(incidents)
    unmatched_wants = []
    for want in truth.get("expect", []):
        hit = next((i for i in left if i.detector == want["detector"]
                    and _subject_matches(want.get("subject", {}), i.subject)), None)
        if hit is None:
            unmatched_wants.append(want)
            continue
        left.remove(hit)
        if hit.severity == want["severity"]:
            out.found.append(_describe(hit))
        else:
            out.wrong_severity.append("expected %s, got %s" % (want["severity"], _describe(hit)))
    for want in unmatched_wants:  # after all exact matches, so a wrong subject never steals one
        other = next((i for i in left if i.detector == want["detector"]), None)
        if other is None:
            out.missed.append(_describe_want(want))
        else:
            left.remove(other)
            out.wrong_subject.append("expected %s, got %s" % (_describe_want(want), _describe(other)))
    for inc in left:
        silenced = any(s["detector"] == inc.detector and _subject_matches(s.get("subject", {}), inc.subject)
                       for s in truth.get("silent", []))
        if inc.severity == "critical":
            out.false_critical.append(_describe(inc))
        elif silenced:
            out.silence_broken.append(_describe(inc))
        else:
            out.unexpected_warnings.append(_describe(inc))
    return out


def _facts(truth: Dict[str, Any]) -> Any:
    from detectors.base import AppFacts

    return AppFacts(**truth.get("facts", {}))


def _settings(truth: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    if not truth.get("settings"):
        return None
    from detectors import REGISTRY  # name -> detector class

    return {name: REGISTRY[name].settings_type.from_mapping(values, name)
            for name, values in truth["settings"].items()}


def run_scenario(name: str) -> Outcome:
    """Scan a scenario's logs (imports the agent lazily) and score the incidents."""
    from agent.scan import scan

    truth = load_truth(name)
    result = scan(log_paths(truth), facts=_facts(truth), settings=_settings(truth))
    out = score(name, truth, result.incidents)
    out.errors.extend(result.errors)
    return out


COLUMNS = ("scenario", "expected", "found", "missed", "wrong subject", "wrong severity", "false critical",
           "silence broken", "unexpected warnings", "verdict")


def table(outcomes: Sequence[Outcome]) -> str:
    rows = [COLUMNS]
    for o in outcomes:
        rows.append((o.scenario, str(o.expected), str(len(o.found)), str(len(o.missed)), str(len(o.wrong_subject)),
                     str(len(o.wrong_severity)), str(len(o.false_critical)), str(len(o.silence_broken)),
                     str(len(o.unexpected_warnings)) + ("" if o.warnings_allowed else " (none allowed)"),
                     "pass" if o.passed else "FAIL"))
    total = [sum(int(r[i].split()[0]) for r in rows[1:]) for i in range(1, 9)]
    rows.append(("TOTAL (%d scenarios, %d failing)" % (len(outcomes), sum(not o.passed for o in outcomes)),)
                + tuple(str(t) for t in total) + ("",))
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("scenarios", nargs="*", help="names under tests/accuracy/scenarios (default: all)")
    p.add_argument("--json", action="store_true", help="one JSON document instead of the table")
    args = p.parse_args(argv)
    sys.path.insert(0, ROOT)
    names = args.scenarios or scenario_names()
    outcomes = [run_scenario(n) for n in names]
    if args.json:
        print(json.dumps([dict(asdict(o), passed=o.passed, failures=o.failures) for o in outcomes], indent=1))
    else:
        print(table(outcomes))
        for o in outcomes:
            for f in o.failures:
                print("%s: %s" % (o.scenario, f))
    return 0 if all(o.passed for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
