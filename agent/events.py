"""The one data model that flows through railwatch.

Parsers turn lines (or multi-line records) into small typed ``Event``s; detectors
turn events into ``Finding``s; reports and the incident store consume findings.

Times are float seconds since the epoch, UTC, taken from the log line itself (a
Logger prefix without a zone is read as UTC). Detectors never read the wall clock,
so a log replayed by ``scan`` and the same log tailed live give the same findings.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import ClassVar, Dict, List, Optional, Tuple

#: evidence text longer than this is cut (a 50 MB line must not end up in a report)
MAX_EVIDENCE_CHARS = 4000


@dataclass(eq=False)
class Event:
    """Base of every event: where it came from and when it happened."""

    kind: ClassVar[str] = "event"
    ts: Optional[float] = None  # epoch seconds UTC; None only if the source never had a time
    source: str = ""  # path of the file (or "<stdin>", "poll:psutil")
    line: int = 0  # 1-based line number of the record's first line
    raw: str = ""  # the original text (all lines of a multi-line record, joined by "\n")


@dataclass(eq=False)
class Request(Event):
    """A finished HTTP request (Rails ``Completed``, a lograge or semantic_logger line)."""

    kind: ClassVar[str] = "request"
    request_id: str = ""
    method: str = ""
    path: str = ""
    endpoint: str = ""  # "PostsController#index"
    status: Optional[int] = None
    duration_ms: Optional[float] = None
    view_ms: Optional[float] = None
    db_ms: Optional[float] = None
    queries: Optional[int] = None  # Rails 7.2+: "(N queries, M cached)"; includes cached
    cached: Optional[int] = None
    allocations: Optional[int] = None
    error: str = ""  # lograge's error='Class: message'
    pid: str = ""


@dataclass(eq=False)
class Sql(Event):
    """One ActiveRecord statement from a debug log."""

    kind: ClassVar[str] = "sql"
    request_id: str = ""
    name: str = ""  # "Author Load", "TRANSACTION", "" for unnamed
    duration_ms: Optional[float] = None
    sql: str = ""
    binds: str = ""  # the inspected bind array, verbatim
    cached: bool = False  # CACHE hit: no database round trip
    source_location: str = ""  # the "↳ app/…" line, when verbose_query_logs is on
    pid: str = ""


@dataclass(eq=False)
class Error(Event):
    """An exception or error record, backtrace grouped (Rails, Sidekiq, Puma, Postgres…)."""

    kind: ClassVar[str] = "error"
    origin: str = ""  # "rails", "sidekiq", "puma", "postgres", "pgbouncer", "activejob"
    error_class: str = ""
    message: str = ""
    backtrace: Tuple[str, ...] = ()  # the first frames only
    request_id: str = ""
    endpoint: str = ""  # filled when the request is known
    job_class: str = ""
    jid: str = ""
    code: str = ""  # SQLSTATE or similar
    level: str = ""
    pid: str = ""


@dataclass(eq=False)
class Job(Event):
    """A Sidekiq (or ActiveJob) job transition."""

    kind: ClassVar[str] = "job"
    STATES: ClassVar[Tuple[str, ...]] = ("enqueue", "start", "done", "fail", "retry", "dead")
    state: str = ""
    job_class: str = ""
    jid: str = ""
    queue: str = ""
    tid: str = ""
    pid: str = ""
    elapsed_s: Optional[float] = None
    error_class: str = ""
    error_message: str = ""
    backtrace: Tuple[str, ...] = ()
    retry_count: Optional[int] = None


@dataclass(eq=False)
class Process(Event):
    """A server process lifecycle line (Sidekiq or Puma boot, shutdown, kill, crash)."""

    kind: ClassVar[str] = "process"
    component: str = ""  # "sidekiq", "puma"
    state: str = ""  # "boot", "shutdown", "stopped", "worker_timeout", "worker_boot", "crash", "redis_error"
    pid: str = ""
    message: str = ""


@dataclass(eq=False)
class DbStatement(Event):
    """A statement seen by the database server (Postgres duration / slow-query lines)."""

    kind: ClassVar[str] = "db_statement"
    duration_ms: Optional[float] = None
    sql: str = ""
    tags: Dict[str, str] = field(default_factory=dict)  # QueryLogs / marginalia comment
    user: str = ""
    database: str = ""
    pid: str = ""


@dataclass(eq=False)
class Bullet(Event):
    """A Bullet gem warning (N+1 or unused eager loading)."""

    kind: ClassVar[str] = "bullet"
    detection: str = ""  # "n_plus_one", "unused_eager_loading", "counter_cache"
    model: str = ""  # "Post"
    associations: Tuple[str, ...] = ()  # ("author",)
    request: str = ""  # "GET /posts"
    call_stack: Tuple[str, ...] = ()


@dataclass(eq=False)
class Metric(Event):
    """A sample from a poller (psutil, Puma /stats, Sidekiq's Redis, pg_stat_activity)."""

    kind: ClassVar[str] = "metric"
    name: str = ""
    labels: Dict[str, str] = field(default_factory=dict)
    value: float = 0.0


@dataclass(eq=False)
class Deploy(Event):
    """A deploy marker: a new REVISION, a Capistrano line, or an explicit marker."""

    kind: ClassVar[str] = "deploy"
    revision: str = ""


EVENT_TYPES: Tuple[type, ...] = (Request, Sql, Error, Job, Process, DbStatement, Bullet, Metric, Deploy)

SEVERITIES: Tuple[str, ...] = ("warning", "critical")  # in rising order


def severity_rank(severity: str) -> int:
    return SEVERITIES.index(severity)


@dataclass
class Evidence:
    """A pointer back to the exact lines a finding rests on."""

    path: str
    line: int
    text: str
    ts: Optional[float] = None  # the event's time, so reports can put evidence in time order
    role: str = ""  # what the line shows ("pool error", "connection holder"…); "" = let the report infer it

    @classmethod
    def of(cls, event: Event) -> "Evidence":
        text = event.raw
        if len(text) > MAX_EVIDENCE_CHARS:
            text = text[:MAX_EVIDENCE_CHARS] + " …[cut]"
        return cls(path=event.source, line=event.line, text=text, ts=event.ts)


@dataclass
class Triage:
    """The first hour of an expert's triage, written by the detector."""

    summary: str
    likely_cause: str = ""
    containment: List[str] = field(default_factory=list)
    prevention: List[str] = field(default_factory=list)


@dataclass
class Finding:
    """What a detector reports: one problem, its subject, its evidence and its triage.

    ``subject`` names what the fix is about (endpoint, table, sql fingerprint, job_class,
    error_class, queue). The fingerprint is a stable hash of detector + subject: never
    times, counts or host names, so the same bug seen twice, or on many hosts, dedupes.
    """

    detector: str
    severity: str
    title: str
    subject: Dict[str, str]
    first_seen: float
    last_seen: float
    count: int
    evidence: List[Evidence]
    triage: Triage
    details: Dict[str, object] = field(default_factory=dict)  # numbers behind the verdict

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, not {self.severity!r}")

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.detector, self.subject)

    def to_dict(self) -> Dict[str, object]:
        data = asdict(self)
        data["fingerprint"] = self.fingerprint
        return data


def fingerprint(detector: str, subject: Dict[str, str]) -> str:
    # XXX: the serialisation is part of the dedupe contract with downstream systems
    # (PagerDuty dedup_key, Alertmanager labels); changing it splits open incidents.
    payload = json.dumps([detector, sorted(subject.items())], separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]
