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

Failing safe: every SQLite error leaves this module as a ``StoreError`` whose ``kind``
says what happened (``full``, ``corrupt``, ``missing``, ``error``). The store file is
opened without following a symlink. A store found corrupt or truncated to 0 bytes is
never silently replaced: with ``recover=True`` (the daemon) it is renamed
``railwatch.sqlite3.corrupt-<UTC stamp>`` with a loud message and a new one is started;
without (the CLI) opening it is refused. ``verify_file`` notices a store file deleted or
replaced under a running agent (inode check); ``restore_file`` writes the open
connection's content back to the path.
"""
from __future__ import annotations

import json
import logging
import os
import sqlite3
import stat
import threading
import time
import urllib.parse
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence

from agent.clock import Clock
from agent.fsutil import private_dir
from agent.incidents.model import Incident, IncidentUpdate

DB_NAME = "railwatch.sqlite3"
SIDE_FILES = ("-wal", "-shm", "-journal")

log = logging.getLogger("railwatch.store")

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
    """The store cannot be opened or used; ``kind``: full | corrupt | missing | error."""

    def __init__(self, message: str, kind: str = "error") -> None:
        super().__init__(message)
        self.kind = kind


def error_kind(exc: BaseException) -> str:
    """Classify an SQLite error: disk full and corruption get their own clear messages."""
    text = str(exc).lower()
    if "disk is full" in text or "disk i/o" in text and "full" in text:
        return "full"
    if "malformed" in text or "not a database" in text or "corrupt" in text:
        return "corrupt"
    return "error"


def _wrap(path: str, exc: sqlite3.Error) -> StoreError:
    kind = error_kind(exc)
    hint = {"full": " (the disk holding the state directory is full)",
            "corrupt": " (the store is damaged; `railwatch run` moves it aside)"}.get(kind, "")
    return StoreError(f"{path}: {exc}{hint}", kind)


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

    def __init__(self, state_dir: str, clock: Optional[Clock] = None, recover: bool = False,
                 read_only: bool = False) -> None:
        self.state_dir = state_dir
        self.clock = clock or Clock()
        self.recover = recover and not read_only
        # read_only: for the commands that only look (incidents list/show, status): a mistyped
        # --state-dir must not leave a new directory and an empty store behind
        self.read_only = read_only
        if not read_only:
            private_dir(state_dir)
        self.path = os.path.join(state_dir, DB_NAME)
        self._lock = threading.RLock()
        self._db: Optional[sqlite3.Connection] = None
        self._identity: Optional[tuple] = None  # (st_dev, st_ino) of the file we opened
        self._open()

    def _open(self) -> None:
        try:
            self._connect()
        except StoreError as exc:
            if not (self.recover and exc.kind == "corrupt"):
                raise
            self._drop_connection()
            self.move_aside(str(exc))
            self._connect()

    def _connect(self) -> None:
        if self.read_only:
            self._connect_read_only()
            return
        existed = self._check_file()
        # create the file 0600 before SQLite does, so it (and the -wal/-shm files SQLite
        # creates with the same mode) is never world-readable, whatever the umask;
        # O_NOFOLLOW: a symlink planted at the store path is refused, never chmod'ed through
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
        except OSError as exc:
            raise StoreError(f"{self.path}: {exc.strerror}", "error") from exc
        try:
            os.fchmod(fd, 0o600)
            st = os.fstat(fd)
            self._identity = (st.st_dev, st.st_ino)
        finally:
            os.close(fd)
        try:
            self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # an opened incident must survive a power cut
            self._db.execute("PRAGMA foreign_keys=ON")
            if existed:
                check = self._db.execute("PRAGMA quick_check(1)").fetchone()[0]
                if check != "ok":
                    raise StoreError(f"{self.path}: the store is damaged ({check})", "corrupt")
            self._migrate()
        except sqlite3.Error as exc:
            raise _wrap(self.path, exc) from exc

    def _connect_read_only(self) -> None:
        if not self._check_file():
            raise StoreError(f"no incident store at {self.path} (is --state-dir right? the daemon creates it)", "missing")
        st = os.stat(self.path)
        self._identity = (st.st_dev, st.st_ino)
        try:
            # no -wal beside it: no daemon has the store open, and mode=ro would create -wal/-shm;
            # immutable reads it as it is. With a daemon running, mode=ro shares its WAL.
            live = os.path.exists(self.path + "-wal")
            uri = "file:" + urllib.parse.quote(os.path.abspath(self.path)) + ("?mode=ro" if live else "?mode=ro&immutable=1")
            self._db = sqlite3.connect(uri, uri=True, timeout=30, isolation_level=None, check_same_thread=False)
            self._db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.Error as exc:
            raise _wrap(self.path, exc) from exc

    def _check_file(self) -> bool:
        """True if the store file exists; refuses a symlink or a non-file; a 0-byte one is corrupt."""
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return False
        if stat.S_ISLNK(st.st_mode):
            raise StoreError(f"{self.path} is a symlink; refusing to follow it (remove it or point state.dir elsewhere)")
        if not stat.S_ISREG(st.st_mode):
            raise StoreError(f"{self.path} is not a regular file; refusing to use it")
        if st.st_size == 0:
            raise StoreError(f"{self.path}: the store is 0 bytes (truncated?); its incidents and positions are gone",
                             "corrupt")
        return True

    def move_aside(self, why: str) -> str:
        """Rename the damaged store (and its -wal/-shm) to ``<name>.corrupt-<UTC stamp>``; return the new path."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self.clock.now()))
        target = f"{self.path}.corrupt-{stamp}"
        n = 1
        while os.path.lexists(target):
            n += 1
            target = f"{self.path}.corrupt-{stamp}-{n}"
        os.rename(self.path, target)
        for suffix in SIDE_FILES:
            if os.path.lexists(self.path + suffix):
                os.rename(self.path + suffix, target + suffix)
        log.error("INCIDENT STORE DAMAGED: %s. Moved it aside to %s and started a new, empty store: "
                  "incidents and tail positions from before are not in it (inspect or restore the old file by hand).",
                  why, target)
        return target

    def verify_file(self) -> None:
        """Raise ``StoreError(kind="missing")`` if the store file was deleted or replaced since it was opened."""
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            raise StoreError(f"{self.path}: the store file was deleted while railwatch was running", "missing") from None
        if (st.st_dev, st.st_ino) != self._identity:
            raise StoreError(f"{self.path}: the store file was replaced while railwatch was running", "missing")

    def restore_file(self) -> str:
        """Write what the open connection holds to a new file at the path (after ``verify_file`` failed).

        A replaced file is moved aside first (never overwritten); returns a one-line account."""
        with self._lock:
            replaced = os.path.lexists(self.path)
            aside = self.move_aside("the store file was replaced under the running agent") if replaced else ""
            for suffix in SIDE_FILES:  # a deleted store's -wal/-shm left behind belong to the old file
                if os.path.lexists(self.path + suffix):
                    os.unlink(self.path + suffix)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
            os.close(fd)
            try:
                fresh = sqlite3.connect(self.path, isolation_level=None)
                try:
                    assert self._db is not None
                    self._db.backup(fresh)
                finally:
                    fresh.close()
            except sqlite3.Error as exc:
                raise _wrap(self.path, exc) from exc
            self._drop_connection()
            self._connect()
        return f"restored {self.path} from the running agent's open copy" + (f" (the replacement is at {aside})" if aside else "")

    def reopen(self) -> None:
        """Close and open the store again (after an error); a corrupt store is moved aside if ``recover``."""
        with self._lock:
            self._drop_connection()
            self._open()

    def _drop_connection(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            try:
                db.close()
            except sqlite3.Error:
                pass

    # ------------------------------------------------------------------ plumbing

    def close(self) -> None:
        with self._lock:
            self._drop_connection()

    def __enter__(self) -> "IncidentStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE … COMMIT, rolled back on any exception."""
        with self._lock:
            db = self._connection()
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    yield db
                except BaseException:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                if db.in_transaction:  # a failed COMMIT (disk full) leaves it open
                    try:
                        db.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
                raise _wrap(self.path, exc) from exc

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError(f"{self.path}: the store is closed (reopening failed)")
        return self._db

    def schema_version(self) -> int:
        with self._lock:
            return int(self._connection().execute("PRAGMA user_version").fetchone()[0])

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
            try:
                return self._connection().execute(sql, tuple(args)).fetchall()
            except sqlite3.Error as exc:
                raise _wrap(self.path, exc) from exc

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

    def probe_row(self, sink: str) -> Optional[OutboxRow]:
        """The oldest pending row of ``sink`` that already failed (due or not), in incident order:
        what the deliverer tries to learn whether a down sink is back."""
        rows = self._query(
            "SELECT * FROM outbox o WHERE o.sink = ? AND o.delivered_at IS NULL AND o.gave_up_at IS NULL AND o.attempts > 0"
            " AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.sink = o.sink AND p.incident_id = o.incident_id"
            " AND p.id < o.id AND p.delivered_at IS NULL AND p.gave_up_at IS NULL) ORDER BY o.id LIMIT 1",
            (sink,),
        )
        return OutboxRow(*rows[0]) if rows else None

    def hasten(self, sink: str, now: float, spacing: float) -> int:
        """Make the pending rows of ``sink`` that are waiting out a backoff due now, ``spacing`` s
        apart, oldest first (the sink is back). Rows never tried (held back by the storm limit) keep their time."""
        with self.transaction() as db:
            ids = [r[0] for r in db.execute(
                "SELECT id FROM outbox WHERE sink = ? AND delivered_at IS NULL AND gave_up_at IS NULL AND attempts > 0"
                " AND next_attempt_at > ? ORDER BY id", (sink, now))]
            db.executemany("UPDATE outbox SET next_attempt_at = ? WHERE id = ?",
                           [(now + i * spacing, row_id) for i, row_id in enumerate(ids)])
        return len(ids)

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

    # ------------------------------------------------------------------ retention

    def delete_resolved_before(self, cutoff: float, dry_run: bool = False) -> int:
        """Delete incidents resolved before ``cutoff`` with their updates and outbox rows, keeping the
        latest incident of each fingerprint and any incident with an update still pending. Returns how many."""
        where = ("status = 'resolved' AND resolved_at < ? AND id NOT IN (SELECT incident_id FROM outbox"
                 " WHERE delivered_at IS NULL AND gave_up_at IS NULL) AND recurrence < (SELECT MAX(recurrence)"
                 " FROM incidents l WHERE l.fingerprint = incidents.fingerprint)")
        with self.transaction() as db:
            ids = [r[0] for r in db.execute(f"SELECT id FROM incidents WHERE {where}", (cutoff,))]
            if ids and not dry_run:
                rows = [(i,) for i in ids]
                db.executemany("DELETE FROM outbox WHERE incident_id = ?", rows)
                db.executemany("DELETE FROM incident_updates WHERE incident_id = ?", rows)
                db.executemany("DELETE FROM incidents WHERE id = ?", rows)
                db.executemany("DELETE FROM checkpoints WHERE key = ?", [("bundle:" + i,) for i in ids])
        return len(ids)

    def vacuum(self) -> None:
        """Compact the file (space freed by pruning goes back to the disk) and truncate the WAL."""
        with self._lock:
            try:
                db = self._connection()
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                db.execute("VACUUM")
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:
                raise _wrap(self.path, exc) from exc

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
