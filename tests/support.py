"""Helpers shared by the tests (tests/ is on pytest's pythonpath; this is not a test module)."""
from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any, Callable, Iterable, List, Optional, Sequence, Tuple

import pytest

from agent.events import Event
from agent.parsers.base import Parser

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "logs"
# The real-log corpus, copied into the repository (PROVENANCE.md there) so a fresh clone runs every test.
CORPUS = FIXTURES.parent / "corpus"


def require(path: Path) -> Path:
    """A data file a test needs: its absence is a failure (the data ships with the repository)."""
    if not path.exists():
        pytest.fail(f"missing test data: {path} (tests/fixtures ships it; is the clone complete?)")
    return path


def feed_lines(parser: Parser, lines: Iterable[str]) -> List[Event]:
    """Every event a parser makes of these lines, including what it holds at the end."""
    out: List[Event] = []
    for n, line in enumerate(lines, 1):
        out.extend(parser.feed(line, n))
    out.extend(parser.finish())
    return out


#: the format every file of the corpus must be recognised as ("unknown": reported, skipped)
CORPUS_FORMATS = {
    "chatwoot/bullet.log": "bullet",
    "pgbadger/anonymize.log": "postgres",
    "pgbadger/begin_end.log": "postgres",
    "pgbadger/cloudsql.log.gz": "postgres",
    "pgbadger/cnpg.log.gz": "postgres",
    "pgbadger/light.postgres.log.bz2": "postgres",
    "pgbadger/logplex.gz": "postgres",
    "pgbadger/pg-syslog.1.bz2": "postgres",
    "pgbadger/pg_rawcsv.log": "postgres",
    "pgbadger/pgbouncer.1.21.log.gz": "pgbouncer",
    "pgbadger/postgresql_param_range.log": "postgres",
    "pgbadger/queryid.log.gz": "postgres",
    "pgbadger/rds.log.bz2": "postgres",
    "pgbadger/tempfile_only.log.gz": "postgres",
    "production_log_analyzer/test.syslog.0.14.x.log": "unknown",  # Rails 0.14
    "production_log_analyzer/test.syslog.1.2.shortname.log": "unknown",  # Rails 1.2
    "production_log_analyzer/test.syslog.log": "unknown",  # Rails 0.10
    "rails_log_parser/example.log": "rails",
    "rails_log_parser/example2.log": "rails",
    "request-log-analyzer/merb.log": "unknown",
    "request-log-analyzer/merb_prefixed.log": "unknown",
    "request-log-analyzer/mysql_slow_query.log": "unknown",
    "request-log-analyzer/oink_22.log": "unknown",  # Rails 2.2
    "request-log-analyzer/oink_22_failure.log": "unknown",
    "request-log-analyzer/postgresql.log": "postgres",
    "request-log-analyzer/rails3_failure.log": "rails",
    "request-log-analyzer/rails3_success.log": "rails",
    "request-log-analyzer/rails_1x.log": "unknown",
    "request-log-analyzer/rails_22.log": "unknown",
    "request-log-analyzer/rails_22_cached.log": "unknown",
    "request-log-analyzer/rails_3_partials.log": "rails",
    "request-log-analyzer/rails_unordered.log": "unknown",  # Rails 2.x
    "request-log-analyzer/sinatra.log": "unknown",
    "request-log-analyzer/syslog_1x.log": "unknown",
    "select_rails_log/overlapped.log": "rails",
    "select_rails_log/simple.log": "rails",
    "sidekiq_log_analyzer/sidekiq.log.gz": "sidekiq",  # the corpus' sidekiq.log, gzipped
}


def free_port() -> int:
    """A TCP port free on loopback now (for a server a test starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 60.0, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def cli_runner() -> "Any":
    """A click CliRunner that keeps stderr apart from stdout on every click 8.x (8.1 on
    Python 3.9 mixes them unless told not to; 8.2 dropped the option and always keeps them apart)."""
    from click.testing import CliRunner

    try:
        return CliRunner(mix_stderr=False)  # type: ignore[call-arg]
    except TypeError:
        return CliRunner()


def replay_with_flushes(
    detector: Any, stream: Sequence[Tuple[Event, Optional[float]]], state_of: Callable[[Any], object],
    after_feed: Optional[Callable[[Any], None]] = None,
) -> List[object]:
    """What a detector reports and keeps over ``(event, flush_until or None)`` steps: the findings of
    every periodic flush and of the final one, and ``state_of(detector)`` after each. Two detectors
    fed the same stream (a fast path and its reference) must give equal lists."""
    seen: List[object] = []
    for event, flush_until in stream:
        detector.feed(event)
        if after_feed is not None:
            after_feed(detector)
        if flush_until is not None:
            seen.append([f.to_dict() for f in detector.flush(flush_until)])
            seen.append(state_of(detector))
    seen.append(state_of(detector))
    seen.append([f.to_dict() for f in detector.flush(None)])
    seen.append(state_of(detector))
    return seen
