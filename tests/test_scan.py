"""scan's drive loop: several logs become one timeline; --since/--until cut it."""
from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import List, Optional

from agent.events import Finding
from agent.pipeline import Pipeline
from agent.sources.replay import FileReport, run_groups
from agent.sources.files import expand, group_files
from detectors.base import Detector

SIDEKIQ = Path(__file__).resolve().parent / "fixtures" / "logs" / "sidekiq"
STAMP = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})Z")


class Recorder(Detector):
    name = "recorder"
    kinds = frozenset({"job", "process", "error"})

    def __init__(self) -> None:
        super().__init__()
        self.seen: List[tuple] = []  # type: ignore[type-arg]

    def feed(self, event) -> None:  # type: ignore[no-untyped-def]
        self.seen.append((event.ts, event.source, event.line))

    def flush(self, until: Optional[float]) -> List[Finding]:
        return []


def _run(paths: List[str], since: Optional[float] = None, until: Optional[float] = None) -> Recorder:
    files, problems = expand(paths)
    assert problems == []
    recorder = Recorder()
    reports = {f.path: FileReport(f.path) for f in files}
    run_groups(list(group_files(files).values()), reports, Pipeline([recorder]), since=since, until=until)
    return recorder


def _later(line: str, seconds: float) -> str:
    m = STAMP.match(line)
    if m is None:
        return line  # a backtrace line: no time of its own
    t = datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f") + timedelta(seconds=seconds)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + line[m.end(1):]


def _two_logs(tmp_path: Path) -> List[str]:
    # the same real Sidekiq lines as two hosts' logs, the second one 50 ms later
    lines = (SIDEKIQ / "sidekiq5_failure.log").read_text(encoding="utf-8").splitlines()
    shifted = [_later(l, 0.05) for l in lines]  # overlapping in time: the logs must interleave
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "sidekiq.log").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (tmp_path / "b" / "sidekiq.log").write_text("\n".join(shifted) + "\n", encoding="utf-8")
    return [str(tmp_path / "a" / "sidekiq.log"), str(tmp_path / "b" / "sidekiq.log")]


def test_events_of_several_logs_reach_the_detectors_in_time_order(tmp_path):
    paths = _two_logs(tmp_path)
    seen = _run(paths).seen
    assert {source for _, source, _ in seen} == set(paths)
    times = [ts for ts, _, _ in seen]
    assert times == sorted(times)
    switches = sum(1 for x, y in zip(seen, seen[1:]) if x[1] != y[1])
    assert switches > 2  # interleaved, not one log after the other
    for path in paths:  # and each log keeps its own order
        lines = [line for _, source, line in seen if source == path]
        assert lines == sorted(lines)


def test_since_and_until_drop_events_outside_the_window(tmp_path):
    paths = _two_logs(tmp_path)
    everything = _run(paths).seen
    times = sorted(ts for ts, _, _ in everything)
    since, until = times[1], times[-2]
    kept = _run(paths, since=since, until=until).seen
    assert kept and len(kept) < len(everything)
    assert all(since <= ts <= until for ts, _, _ in kept)
