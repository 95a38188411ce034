"""The incident store: SQLite in the state directory (stdlib sqlite3, WAL).

Tables: ``incidents`` (one row per incident, the full record as JSON plus indexed
columns), ``incident_updates`` (every change sinks must hear about), ``outbox`` (one row
per update per sink: attempts, next_attempt_at, last_error, delivered_at) and
``checkpoints`` (small JSON values by key, e.g. tail offsets).

An update and its outbox rows are written in the same transaction as the incident, so
a crash between "opened" and "delivered" loses nothing: the rows are still pending when
the agent comes back. The schema is versioned with ``PRAGMA user_version`` and numbered
migrations applied in order; a database from a newer railwatch is refused, not damaged.
The database and its directory are private (0600 / 0700): they hold evidence lines.
"""
from __future__ import annotations

import json
import os
import sqlite3
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence

from agent.clock import Clock
from agent.fsutil import private_dir
from agent.incidents.model import Incident, IncidentUpdate

DB_NAME = "railwatch.sqlite3"

# (version, statements). Never edit a released migration: append a new one.
MIGRATIONS = [
    (1, """
    CREATE TABLE incidents (
        id TEXT PRIMARY KEY,
        fingerprint TEXT NOT NULL,
        detector TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('open', 'resolved')),
        severity TEXT NOT NULL,
        opened_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        resolved_at REAL,
        recurrence INTEGER NOT NULL DEFAULT 1,
        data TEXT NOT NULL
    );
    CREATE INDEX incidents_by_fingerprint ON incidents (fingerprint, recurrence);
    CREATE INDEX incidents_by_status ON incidents (status);
    CREATE TABLE incident_updates (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        incident_id TEXT NOT NULL REFERENCES incidents (id),
        kind TEXT NOT NULL,
        at REAL NOT NULL,
        payload TEXT NOT NULL
    );
    CREATE INDEX updates_by_incident ON incident_updates (incident_id, id);
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        update_id INTEGER NOT NULL REFERENCES incident_updates (id),
        incident_id TEXT NOT NULL,
        sink TEXT NOT NULL,
        created_at REAL NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL,
        last_error TEXT NOT NULL DEFAULT '',
        delivered_at REAL,
        gave_up_at REAL,
        UNIQUE (update_id, sink)
    );
    CREATE INDEX outbox_pending ON outbox (sink, delivered_at, gave_up_at, next_attempt_at);
    CREATE TABLE checkpoints (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        updated_at REAL NOT NULL
    );
    """),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]


class StoreError(RuntimeError):
    """The store cannot be opened or used (newer schema, unreadable file)."""


@dataclass
class OutboxRow:
    id: int
    update_id: int
    incident_id: str
    sink: str
    created_at: float
    attempts: int
    next_attempt_at: float
    last_error: str
    delivered_at: Optional[float]
    gave_up_at: Optional[float]


class IncidentStore:
    """SQLite-backed incidents, updates, outbox and checkpoints. Thread-safe (one connection, a lock)."""

    def __init__(self, state_dir: str, clock: Optional[Clock] = None) -> None:
        self.state_dir = state_dir
        self.clock = clock or Clock()
        private_dir(state_dir)
        self.path = os.path.join(state_dir, DB_NAME)
        # create the file 0600 before SQLite does, so it (and the -wal/-shm files SQLite
        # creates with the same mode) is never world-readable, whatever the umask
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
        os.chmod(self.path, 0o600)
        self._lock = threading.RLock()
        try:
            self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # an opened incident must survive a power cut
            self._db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: {exc}") from exc

    # ------------------------------------------------------------------ plumbing

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> "IncidentStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE … COMMIT, rolled back on any exception."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def schema_version(self) -> int:
        with self._lock:
            return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        current = self.schema_version()
        if current > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path}: schema version {current} is newer than this railwatch supports ({SCHEMA_VERSION}); upgrade railwatch"
            )
        for version, sql in MIGRATIONS:
            if version <= current:
                continue
            with self.transaction() as db:
                for statement in _statements(sql):
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {int(version)}")

    def _query(self, sql: str, args: Sequence[Any] = ()) -> List[sqlite3.Row]:
        with self._lock:
            cur = self._db.execute(sql, tuple(args))
            return cur.fetchall()

    # ------------------------------------------------------------------ incidents

    def save_incident(self, db: sqlite3.Connection, incident: Incident) -> None:
        """Insert or replace an incident (inside a ``transaction()``)."""
        db.execute(
            "INSERT INTO incidents (id, fingerprint, detector, status, severity, opened_at, updated_at, resolved_at, recurrence, data)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET status=excluded.status, severity=excluded.severity,"
            " updated_at=excluded.updated_at, resolved_at=excluded.resolved_at, data=excluded.data",
            (incident.id, incident.fingerprint, incident.detector, incident.status, incident.severity, incident.opened_at,
             incident.updated_at, incident.resolved_at, incident.recurrence, _dumps(incident.to_dict())),
        )

    def record(self, incident: Incident, update: Optional[IncidentUpdate], sinks: Sequence[str],
               next_attempt_at: Optional[float] = None) -> Optional[IncidentUpdate]:
        """Save the incident, and the update with one outbox row per sink, in one transaction."""
        now = self.clock.now()
        with self.transaction() as db:
            self.save_incident(db, incident)
            if update is None:
                return None
            cur = db.execute(
                "INSERT INTO incident_updates (incident_id, kind, at, payload) VALUES (?, ?, ?, ?)",
                (incident.id, update.kind, update.at, "{}"),
            )
            update.update_id = int(cur.lastrowid or 0)
            db.execute("UPDATE incident_updates SET payload = ? WHERE id = ?", (_dumps(update.to_dict()), update.update_id))
            due = now if next_attempt_at is None else next_attempt_at
            db.executemany(
                "INSERT INTO outbox (update_id, incident_id, sink, created_at, next_attempt_at) VALUES (?, ?, ?, ?, ?)",
                [(update.update_id, incident.id, name, now, due) for name in sinks],
            )
        return update

    def get_incident(self, incident_id: str) -> Optional[Incident]:
        rows = self._query("SELECT data FROM incidents WHERE id = ?", (incident_id,))
        return Incident.from_dict(json.loads(rows[0][0])) if rows else None

    def find_incident(self, ref: str) -> List[Incident]:
        """Incidents whose id is ``ref`` or starts with it (the CLI accepts a unique prefix)."""
        exact = self.get_incident(ref)
        if exact is not None:
            return [exact]
        pattern = ref.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        rows = self._query("SELECT data FROM incidents WHERE id LIKE ? ESCAPE '\\' ORDER BY opened_at LIMIT 20", (pattern,))
        return [Incident.from_dict(json.loads(r[0])) for r in rows]

    def latest_for_fingerprint(self, fingerprint: str) -> Optional[Incident]:
        rows = self._query(
            "SELECT data FROM incidents WHERE fingerprint = ? ORDER BY recurrence DESC, opened_at DESC LIMIT 1", (fingerprint,)
        )
        return Incident.from_dict(json.loads(rows[0][0])) if rows else None

    def open_incidents(self) -> List[Incident]:
        rows = self._query("SELECT data FROM incidents WHERE status = 'open' ORDER BY opened_at")
        return [Incident.from_dict(json.loads(r[0])) for r in rows]

    def list_incidents(self, status: Optional[str] = None, limit: int = 100) -> List[Incident]:
        if status:
            rows = self._query("SELECT data FROM incidents WHERE status = ? ORDER BY updated_at DESC LIMIT ?", (status, limit))
        else:
            rows = self._query("SELECT data FROM incidents ORDER BY updated_at DESC LIMIT ?", (limit,))
        return [Incident.from_dict(json.loads(r[0])) for r in rows]

    def count_updates_since(self, kinds: Sequence[str], since: float) -> int:
        marks = ",".join("?" for _ in kinds)
        rows = self._query(f"SELECT COUNT(*) FROM incident_updates WHERE kind IN ({marks}) AND at > ?", (*kinds, since))
        return int(rows[0][0])

    def updates_for(self, incident_id: str) -> List[IncidentUpdate]:
        rows = self._query("SELECT id, payload FROM incident_updates WHERE incident_id = ? ORDER BY id", (incident_id,))
        return [IncidentUpdate.from_dict(json.loads(p), update_id=i) for i, p in rows]

    def get_update(self, update_id: int) -> Optional[IncidentUpdate]:
        rows = self._query("SELECT id, payload FROM incident_updates WHERE id = ?", (update_id,))
        return IncidentUpdate.from_dict(json.loads(rows[0][1]), update_id=rows[0][0]) if rows else None

    # ------------------------------------------------------------------ outbox

    def due_outbox(self, now: float, sinks: Sequence[str], limit: int = 100) -> List[OutboxRow]:
        """Pending rows due by ``now`` for these sinks, oldest first, at most one per (incident, sink):
        an incident's updates reach a sink in order (no resolve before its trigger)."""
        if not sinks:
            return []
        marks = ",".join("?" for _ in sinks)
        rows = self._query(
            f"SELECT * FROM outbox o WHERE o.sink IN ({marks}) AND o.delivered_at IS NULL AND o.gave_up_at IS NULL"
            " AND o.next_attempt_at <= ? AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.sink = o.sink"
            " AND p.incident_id = o.incident_id AND p.id < o.id AND p.delivered_at IS NULL AND p.gave_up_at IS NULL)"
            " ORDER BY o.id LIMIT ?",
            (*sinks, now, limit),
        )
        return [OutboxRow(*r) for r in rows]

    def outbox_for(self, incident_id: Optional[str] = None, pending_only: bool = False) -> List[OutboxRow]:
        where, args = [], []  # type: List[str], List[Any]
        if incident_id is not None:
            where.append("incident_id = ?")
            args.append(incident_id)
        if pending_only:
            where.append("delivered_at IS NULL AND gave_up_at IS NULL")
        sql = "SELECT * FROM outbox" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id"
        return [OutboxRow(*r) for r in self._query(sql, args)]

    def mark_delivered(self, row_id: int, now: float) -> None:
        with self.transaction() as db:
            db.execute("UPDATE outbox SET delivered_at = ?, attempts = attempts + 1, last_error = '' WHERE id = ?", (now, row_id))

    def mark_retry(self, row_id: int, next_attempt_at: float, error: str) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?, last_error = ? WHERE id = ?",
                (next_attempt_at, error[:500], row_id),
            )

    def mark_failed(self, row_id: int, now: float, error: str) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE outbox SET attempts = attempts + 1, gave_up_at = ?, last_error = ? WHERE id = ?", (now, error[:500], row_id)
            )

    def last_delivery(self, incident_id: str, sink: str) -> Optional[OutboxRow]:
        rows = self._query(
            "SELECT * FROM outbox WHERE incident_id = ? AND sink = ? ORDER BY id DESC LIMIT 1", (incident_id, sink)
        )
        return OutboxRow(*rows[0]) if rows else None

    # ------------------------------------------------------------------ checkpoints

    def get_checkpoint(self, key: str) -> Optional[Dict[str, Any]]:
        rows = self._query("SELECT value FROM checkpoints WHERE key = ?", (key,))
        return json.loads(rows[0][0]) if rows else None

    def set_checkpoints(self, values: Mapping[str, Mapping[str, Any]]) -> None:
        """Write several checkpoints atomically (all or none)."""
        now = self.clock.now()
        with self.transaction() as db:
            db.executemany(
                "INSERT INTO checkpoints (key, value, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                [(k, _dumps(dict(v)), now) for k, v in values.items()],
            )

    def delete_checkpoints(self, keys: Sequence[str]) -> None:
        with self.transaction() as db:
            db.executemany("DELETE FROM checkpoints WHERE key = ?", [(k,) for k in keys])


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, default=str)


def _statements(sql: str) -> List[str]:
    return [s.strip() for s in sql.split(";") if s.strip()]
