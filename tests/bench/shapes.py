"""Real line shapes for the benchmark generators, read from the corpus at run time.

Nothing here is invented where the corpus has it: request blocks (with their FATAL
exception reports and backtraces) come from ``rails_log_parser/example*.log``, SQL
statements and their ``↳`` source lines from ``select_rails_log/simple.log``, Sidekiq
job, boot and failure lines from ``sidekiq_log_analyzer/sidekiq.log.gz``. When the
reference app's captured logs exist (``tests/fixtures/logs/e2e/<setup>/*.log``) their
request blocks and statements join the pools. The few shapes the corpus lacks (the
pool-timeout exception, the Sidekiq 6/7 line layout) are built from the format strings
quoted in shared/reference/rails-signals.md (A.3, B.1, D.1-D.3).
"""
from __future__ import annotations

import glob
import gzip
import os
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

_PREFIX = re.compile(r"([DIWEFAU]), \[(\S+) #(\d+)\] *([A-Z]+) -- [^:]*: ?(.*)")
_TAG = re.compile(r"\[([0-9a-f]{8}-[0-9a-f-]{27})\] ?(.*)")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_SQL = re.compile(r"(CACHE )?(.*?) \((\d+(?:\.\d+)?)ms\)  (.*)")


def corpus_dir() -> str:
    """The real-log corpus, copied into the repository (tests/fixtures/corpus/PROVENANCE.md)."""
    path = os.path.join(REPO, "tests", "fixtures", "corpus")
    if not os.path.isfile(os.path.join(path, "PROVENANCE.md")):
        raise SystemExit(f"benchmark: the log corpus is missing at {path}")
    return path


def e2e_logs(setup: str) -> List[str]:
    return sorted(glob.glob(os.path.join(REPO, "tests", "fixtures", "logs", "e2e", setup, "*.log")))


# ----- Rails request blocks ----------------------------------------------------------------


@dataclass
class Record:
    """One logger call: a prefixed line and the bare lines that continue it."""

    level: str  # "INFO", "FATAL", … ("" for a tagged line without Logger prefix)
    msg: str  # message after the request-id tag
    extra: List[str] = field(default_factory=list)  # continuation lines, tag stripped
    extra_tagged: List[bool] = field(default_factory=list)


@dataclass
class Block:
    records: List[Record]
    error: bool  # has a FATAL report or a 5xx


def request_blocks(paths: List[str]) -> Tuple[List[Block], List[Block]]:
    """(normal blocks, error blocks): every request of these logs, lines grouped by request id."""
    blocks: Dict[str, List[Record]] = {}
    for path in paths:
        last: Optional[Record] = None
        with open(path, encoding="utf-8", errors="replace") as fh:
            for raw in fh:
                line = raw.rstrip("\n")
                m = _PREFIX.match(line)
                if m:
                    t = _TAG.match(m.group(5))
                    if not t:
                        last = None
                        continue
                    last = Record(m.group(4), t.group(2))
                    blocks.setdefault(f"{path}:{t.group(1)}", []).append(last)
                    continue
                if last is None:
                    continue
                t = _TAG.match(line)
                last.extra.append(t.group(2) if t else line)
                last.extra_tagged.append(bool(t))
    normal: List[Block] = []
    errors: List[Block] = []
    for records in blocks.values():
        completed = [r for r in records if r.msg.startswith("Completed ")]
        if not completed:
            continue
        is_error = any(r.level == "FATAL" for r in records) or completed[-1].msg.startswith("Completed 5")
        (errors if is_error else normal).append(Block(records, is_error))
    return normal, errors


def pool_timeout_block(template: Block) -> Block:
    """A request ending in ActiveRecord::ConnectionTimeoutError: a corpus request whose end is
    replaced by Rails 5.2's separate FATAL records (rails-signals A.3) with the 5.0+ message (B.1)."""
    head = [r for r in template.records if not r.msg.startswith(("Completed ", "  Rendered", "  Rendering"))]
    fatal = [
        Record("FATAL", "  "),
        Record("FATAL", "ActiveRecord::ConnectionTimeoutError (could not obtain a connection from the pool within 5.000 seconds "
                        "(waited 5.002 seconds); all pooled connections were in use):"),
        Record("FATAL", "  "),
        Record("FATAL", "activerecord (5.2.5) lib/active_record/connection_adapters/abstract/connection_pool.rb:201:in `block in wait_poll'"),
    ]
    fatal[-1].extra = [
        "activerecord (5.2.5) lib/active_record/connection_adapters/abstract/connection_pool.rb:190:in `loop'",
        "activerecord (5.2.5) lib/active_record/connection_adapters/abstract/connection_pool.rb:190:in `wait_poll'",
        "activerecord (5.2.5) lib/active_record/connection_adapters/abstract/connection_pool.rb:151:in `internal_poll'",
        "activerecord (5.2.5) lib/active_record/connection_adapters/abstract/connection_pool.rb:277:in `internal_poll'",
    ]
    fatal[-1].extra_tagged = [True] * len(fatal[-1].extra)
    done = Record("INFO", "Completed 500 Internal Server Error in 5003ms (ActiveRecord: 0.0ms)")
    return Block(head + [done] + fatal, True)


# ----- SQL statements -------------------------------------------------------------------------


@dataclass
class Statement:
    name: str  # "User Load", "TRANSACTION"
    sql: str  # colour codes stripped
    binds: str  # "" or the inspected array
    location: str  # "app/views/…:12" from the following ↳ line ("" if none)
    cached: bool = False


def sql_statements(paths: List[str]) -> List[Statement]:
    """Every debug SQL line of these logs with the ``↳`` line that follows it."""
    out: List[Statement] = []
    for path in paths:
        with open(path, encoding="utf-8", errors="replace") as fh:
            pending: Optional[Statement] = None
            for raw in fh:
                m = _PREFIX.match(raw.rstrip("\n"))
                if not m:
                    continue
                t = _TAG.match(m.group(5))
                msg = _ANSI.sub("", t.group(2) if t else m.group(5)).strip()
                if msg.startswith("↳"):
                    if pending is not None:
                        pending.location = msg[1:].strip()
                        pending = None
                    continue
                s = _SQL.match(msg)
                if not s or "Storage" in s.group(2):
                    pending = None
                    continue
                text, binds = s.group(4), ""
                cut = text.rfind("  [")
                if cut > 0 and text.endswith("]"):
                    text, binds = text[:cut], text[cut + 2:]
                pending = Statement(s.group(2).strip(), text, binds, "", cached=bool(s.group(1)))
                out.append(pending)
    return out


# ----- Sidekiq ---------------------------------------------------------------------------------

_SK_LEGACY = re.compile(r"(\S+) (\d+) TID-(\w+) (?:(\w+) JID-(\w+) )?(INFO|WARN|ERROR): (.*)")


@dataclass
class SidekiqShapes:
    workers: List[str]  # job classes, most frequent first
    boot: List[str]  # messages of a boot sequence
    stop: List[str]  # quiet + shutdown messages
    fail_warn: List[str]  # WARN messages after a "fail": job hash, "Class: message", first frame
    fail_backtrace: List[str]  # the bare backtrace lines after them


def sidekiq_shapes(path: str) -> SidekiqShapes:
    counts: Dict[str, int] = {}
    boot: List[str] = []
    stop: List[str] = []
    fail_warn: List[str] = []
    backtrace: List[str] = []
    state = ""
    opener = gzip.open if path.endswith(".gz") else open  # the corpus keeps sidekiq.log gzipped
    with opener(path, "rt", encoding="utf-8", errors="replace") as fh:
        for raw in fh:
            line = raw.rstrip("\n")
            m = _SK_LEGACY.match(line)
            if m is None:
                if state == "fail" and line.startswith("/") and not backtrace[30:]:
                    backtrace.append(line)
                continue
            worker, level, msg = m.group(4), m.group(6), m.group(7)
            if worker:
                counts[worker] = counts.get(worker, 0) + 1
                state = "fail" if msg.startswith("fail") and not fail_warn else ""
                continue
            if state == "fail" and level == "WARN":
                fail_warn.append(msg)
                continue
            if msg.startswith(("Running in", "See LICENSE", "Upgrade to", "Booting")) and len(boot) < 4:
                boot.append(msg)
            elif msg.startswith(("Received", "Terminating", "Scheduler", "Shutting", "Bye!")) and len(stop) < 5:
                stop.append(msg)
    workers = sorted(counts, key=lambda w: -counts[w])
    return SidekiqShapes(workers, boot, stop, fail_warn, backtrace)
