"""Rails' own request log, in every shape Rails 3 to 8 writes it.

Matched shapes (a line is ``[Logger prefix][tags][message]``; each layer optional):

    I, [2024-05-01T12:00:00.123456 #4321]  INFO -- : [3f2c…] Started GET "/posts" for 1.2.3.4 at 2024-05-01 12:00:00 +0000
    [3f2c…] Processing by PostsController#index as HTML          (Rails 8 on STDOUT: no prefix, no time)
    Completed 200 OK in 58ms (Views: 40.4ms | ActiveRecord: 15.3ms (12 queries, 3 cached) | GC: 1.2ms)
      Author Load (0.2ms)  SELECT "authors".* FROM "authors" WHERE "authors"."id" = $1 LIMIT $2  [["id", 3], ["LIMIT", 1]]
      ↳ app/views/posts/index.html.erb:12:in `block in _app_views…'
    F, […] FATAL -- : [3f2c…]
    [3f2c…] ActiveRecord::ConnectionTimeoutError (could not obtain a connection from the pool …):
    [3f2c…] app/controllers/posts_controller.rb:7:in `index'
    method=GET path=/posts format=html controller=PostsController action=index status=200 duration=58.33 …  (lograge)

Started/Processing/Completed become one ``Request`` at Completed; a SQL line waits for
its ``↳`` line; an exception header collects its message and backtrace lines until the
request logs something else. Lines without a time of their own take the last time seen
for their request (the ``Started … at`` time for Rails 8 bare lines), then the envelope's.
"""
from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import fields as dataclass_fields
from operator import attrgetter
from typing import Dict, List, Optional, Sequence, Tuple

from agent.events import Bullet, Error, Event, Request, Sql
from agent.parsers import lograge
from agent.parsers.base import ANSI, NOTHING, Parser, share, strip_ansi
from agent.parsers.bullet import parse_bullet_block
from agent.parsers.rails_lines import (
    ACTIVEJOB_ERROR, ACTIVEJOB_TAG, ACTIVEJOB_TAGGED_LINE, ADDITION, COMMON_LINE, COMPLETED, COMPLETED_RAILS30, EXCEPTION, FRAME, HEADER_END, MAX_MESSAGE_LINES,
    NO_TAGS, ONE_TAG, PLAIN_PREFIX, PlainSecondClock, PREFIX, PROCESSING, PROCESSING_ENDPOINT, REAL_FRAME, SQL, SQL_HEAD, STARTED, STARTED_HEAD, USUAL_COMPLETED, UUIDISH,
    request_key, split_tags,
)
from agent.parsers.numbers import bounded_float, bounded_int, safe_iso

MAX_OPEN_REQUESTS = 4096  # requests started but not completed that we remember
MAX_REMEMBERED_MESSAGES = 1024  # Started / Processing messages whose reading feed_lines remembers
MAX_SQL_HEADS = 8192  # SQL line heads (name, duration) feed_lines remembers (rails-debug has 7,191 distinct: 93% hits, 79% with 4,096)
MAX_REMEMBERED_COMPLETED = 4096  # Completed messages whose numbers feed_lines remembers
MAX_RECORD_LINES = 60  # a backtrace longer than this is cut in the event (counted as parsed)
MAX_BACKTRACE = 20
STALE_AFTER_LINES = 400  # a held record is emitted once this many lines passed without it
ABSORBED, COMPLETED_BY_LINE, NOT_MINE = 1, 2, 3

# Sql and Request built with positional arguments in feed_lines (keywords cost twice as much); a
# keyword adapter takes over should a dataclass's field order ever change (as sidekiq.new_job).
_SINGLE_CALL = attrgetter("single_call")
_SQL_ORDER = ("ts", "source", "line", "raw", "request_id", "name", "duration_ms", "sql", "binds", "cached", "source_location", "pid")
_REQUEST_ORDER = (
    "ts", "source", "line", "raw", "request_id", "method", "path", "endpoint", "status", "duration_ms",
    "view_ms", "db_ms", "queries", "cached", "allocations", "error", "pid",
)


def _sql_by_keywords(*values: object) -> Sql:
    return Sql(**dict(zip(_SQL_ORDER, values)))  # type: ignore[arg-type]


def _request_by_keywords(*values: object) -> Request:
    return Request(**dict(zip(_REQUEST_ORDER, values)))  # type: ignore[arg-type]


def _in_order(cls: type, order: Tuple[str, ...]) -> bool:
    return tuple(f.name for f in dataclass_fields(cls)) == order


new_sql = Sql if _in_order(Sql, _SQL_ORDER) else _sql_by_keywords
new_request = Request if _in_order(Request, _REQUEST_ORDER) else _request_by_keywords


#: a Completed line's (status, duration_ms, view_ms, db_ms, queries, cached, allocations)
CompletedNumbers = Tuple[Optional[object], ...]


def _completed_numbers(msg: str) -> CompletedNumbers:
    """A USUAL_COMPLETED message's numbers, as _completed and _read_additions read them; () for any
    other message (feed's way reads it). A pure function of the text, so feed_lines remembers it."""
    cm = USUAL_COMPLETED.fullmatch(msg)
    if cm is None:
        return ()
    status, duration, views, db, queries, cached, allocations = cm.groups()
    # bounded_float/bounded_int, without the call where the digits cannot pass MAX_VALUE
    view_ms = db_ms = n_queries = n_cached = n_allocations = None
    if db is not None:
        db_ms = float(db) if len(db) < 16 else bounded_float(db)
        if views is not None:
            view_ms = float(views) if len(views) < 16 else bounded_float(views)
        if queries is not None:
            n_queries = int(queries) if len(queries) < 16 else bounded_int(queries)
            n_cached = int(cached) if len(cached) < 16 else bounded_int(cached)
        if allocations is not None:
            n_allocations = int(allocations) if len(allocations) < 16 else bounded_int(allocations)
    duration_ms = float(duration) if len(duration) < 16 else bounded_float(duration)
    return (int(status), duration_ms, view_ms, db_ms, n_queries, n_cached, n_allocations)


class _Open:
    """What we know of a request between Started and Completed."""

    __slots__ = ("method", "path", "endpoint", "ts")

    def __init__(self, method: str = "", path: str = "", endpoint: str = "", ts: Optional[float] = None) -> None:
        self.method = method
        self.path = path
        self.endpoint = endpoint
        self.ts = ts


class _Held:
    """A record waiting for continuation lines: a SQL line (↳) or an exception."""

    __slots__ = ("event", "lines", "frames", "message_open", "last_lineno", "single_call", "in_pieces")

    def __init__(self, event: Event, first_line: str, lineno: int, message_open: bool = False, single_call: bool = False) -> None:
        self.event = event
        self.lines = [first_line]
        self.frames: List[str] = []
        self.message_open = message_open  # a multi-line exception message not yet closed by "):"
        self.last_lineno = lineno
        # written by one logger call (lines without the Logger prefix): the next call of
        # anyone ends it. Rails 5.2 wrote each piece as its own prefixed call instead.
        self.single_call = single_call
        # Rails <= 5.2's exception report: a prefixed FATAL header, then more prefixed FATAL
        # calls (source excerpt, backtrace), any of them multi-line. Other processes' calls
        # land between the pieces, so only this request's next non-FATAL line ends it.
        self.in_pieces = isinstance(event, Error) and not single_call and event.level == "FATAL"


class _HeldSql(_Held):
    """A SQL line waiting for its ↳ line: the fields _continues and _release read of a held Sql,
    made without the exception-only ones (lines, frames), which nothing reads for a Sql."""

    __slots__ = ()
    # a held SQL line is never any of these (only exceptions and Bullet warnings set them): class
    # attributes, read through the instance, so that making one sets two slots instead of five
    message_open = False
    single_call = False
    in_pieces = False

    def __init__(self, event: Sql, lineno: int) -> None:  # noqa: super().__init__ not called on purpose
        self.event = event
        self.last_lineno = lineno


class RailsParser(Parser):
    name = "rails"
    description = "Rails logger (Logger prefix, tagged or bare Rails 8 STDOUT lines), debug SQL, exceptions, lograge"

    def __init__(self, source: str) -> None:
        super().__init__(source)
        self._open: "OrderedDict[str, _Open]" = OrderedDict()
        self._done: "OrderedDict[str, str]" = OrderedDict()  # request key -> endpoint, after Completed
        self._held: Dict[str, _Held] = {}
        self._seq: Dict[str, int] = {}  # per-pid request counter, for logs without request ids
        self._prefixed = False
        self._expect_exception: Dict[str, bool] = {}  # keys whose FATAL/ERROR header line was just seen
        self._last_error_key = "\0"
        self._second_key = ""  # "2024-05-01T12:00:00" of the last prefixed line, and its epoch
        self._second_epoch = 0.0
        self._endpoints: Dict[str, Optional[str]] = {}  # Processing message -> its endpoint (None: not one)
        self._started_of: Dict[str, Tuple[str, ...]] = {}  # Started message -> (method, path), () if not read
        self._plain_clock = PlainSecondClock()  # feed_lines' reading of a new second
        self._completed_of: Dict[str, CompletedNumbers] = {}  # Completed message -> its numbers, () if not USUAL_COMPLETED
        self._sql_heads: Dict[str, Tuple[bool, str, Optional[float], int]] = {}  # SQL line head -> (cached, name, duration_ms, end)

    # ----- sniffing -------------------------------------------------------------------
    @classmethod
    def sniff(cls, lines: Sequence[str]) -> float:
        """Share of lines that are Rails', but only if some line is unmistakably Rails."""
        seen = hits = 0
        strong = False
        for raw in lines:
            line = strip_ansi(raw).rstrip()
            if not line:
                continue
            seen += 1
            if PREFIX.match(line):
                hits += 1
                strong = True
                continue
            tags, msg = split_tags(line)
            msg = msg.lstrip()
            if msg.startswith(("Started ", "Processing by ")) or COMPLETED.match(msg) or COMPLETED_RAILS30.match(msg):
                hits += 1
                strong = True
            elif msg.startswith(("Parameters: ", "Rendered ", "Rendering ", "Redirected to ")) or SQL.match(" " + msg):
                hits += 1
            elif tags and UUIDISH.match(tags[0]):
                hits += 1  # a request-tagged continuation line (backtrace, exception message)
        return hits / seen if strong and seen else 0.0

    # ----- parsing --------------------------------------------------------------------
    def feed(self, line: str, lineno: int, ts_hint: Optional[float] = None) -> List[Event]:
        if "\x1b" in line:
            line = strip_ansi(line)
        ts: Optional[float] = None
        pid = ""
        level = ""
        msg = line
        prefixed = False
        if len(line) > 4 and line[1] == "," and line[3] == "[":
            split = self._split_prefix(line)
            if split is not None:
                prefixed = self._prefixed = True
                ts, pid, level, msg = split
        tags: List[str] = NO_TAGS
        key = ""
        if msg[:1] == "[":
            # the common case, one request-id tag: "[3f2c9a0e-8b1d-4e7a-9c55-2b8f0d6e1a77] …"
            if len(msg) > 38 and msg[37] == "]" and msg[38] == " " and msg[9] == "-" and msg[39:40] != "[":
                key = msg[1:37]
                tags = [key]
                msg = msg[39:]
            else:
                tags, msg = split_tags(msg)
                key = request_key(tags)
        if not key and pid:
            key = self._pid_key(pid)
        if ts is None:
            ts = self._time_for(key, ts_hint)
        else:
            self.last_ts = ts

        out: List[Event] = NOTHING
        if self._held and (prefixed or tags):
            out = self._release_finished_calls(key)
        if self._held:
            held_key = key
            if not prefixed and not tags and key not in self._held and self._last_error_key in self._held:
                held_key = self._last_error_key  # raw backtrace / message lines carry no tag
            held = self._held.get(held_key)
            if held is not None:
                verdict = self._continues(held, msg, prefixed, level, line, lineno)
                if verdict == ABSORBED:
                    return out  # what this line's new logger call completed for other requests
                released = self._release(held_key)
                if released is not None:
                    out = out + [released] if out else [released]
                if verdict == COMPLETED_BY_LINE:
                    return out
            elif lineno % 64 == 0:
                out = out + self._release_stale(lineno) if out else self._release_stale(lineno)

        produced = self._message(msg, key, tags, ts, pid, level, line, lineno, prefixed)
        if produced is not None:
            out = (out + [produced]) if out else [produced]
        return out

    def finish(self) -> List[Event]:
        return [e for e in map(self._release, list(self._held)) if e is not None]

    def feed_lines(self, lines: Sequence[str], first_lineno: int) -> List[Event]:  # noqa: C901 - one hot loop on purpose
        """``feed`` on each line, with the usual lines read here in one regex match each.

        A line read here is Logger-prefixed (``PLAIN_PREFIX``) and carries one UUID request
        tag or none (``COMMON_LINE``); its Started / Processing / Completed / Rendered /
        Parameters / SQL / ``↳`` message is handled inline, the same way ``feed`` and its
        helpers would. Anything else — another message, an odd tag, a time that does not
        parse — goes to ``feed`` (or its helpers) before any state changed. The state
        ``feed`` keeps in attributes (last time, same-second cache) lives in locals here
        and is handed back around each such call. tests/parsers/test_rails_feed_lines.py
        holds both to the same events.
        """
        out: List[Event] = []
        append = out.append
        feed = self.feed
        common = COMMON_LINE.match
        activejob_tagged = ACTIVEJOB_TAGGED_LINE.match
        one_tag = ONE_TAG.match
        ansi_sub = ANSI.sub
        sql_match = SQL_HEAD.match
        completed_of = self._completed_of
        plain_time = self._plain_clock.read
        processing_match = PROCESSING_ENDPOINT.match
        started_match = STARTED_HEAD.match
        held = self._held
        opened = self._open
        done = self._done
        endpoints = self._endpoints
        started_of = self._started_of
        sql_heads = self._sql_heads
        seq = self._seq
        source = self.source
        second_key, second_epoch = self._second_key, self._second_epoch
        last_ts = self.last_ts
        prefixed_seen = self._prefixed
        # True once no held record is a one-call record (single_call): the lines read here hold
        # only SQL lines, which never are, so the look at every held record is skipped until
        # feed or one of its helpers has run again
        unmarked = False
        for lineno, raw in enumerate(lines, first_lineno):
            line = ansi_sub("", raw) if "\x1b" in raw else raw
            m = common(line) or activejob_tagged(line)
            if m is not None:
                second, fraction, pid, level, key, msg = m.groups()
                if second == second_key:
                    ts = second_epoch + float(fraction)
                else:
                    ts = plain_time(second, fraction)  # = safe_iso(second + fraction), as _split_prefix
                    if ts is not None:
                        second_key, second_epoch = second, ts - float(fraction)
                if ts is not None:  # else feed reads the line (and finds no time either)
                    if key is None:
                        key = f"pid{pid}.{seq.get(pid, 0)}"
                    last_ts = ts
                    if not prefixed_seen:
                        self._prefixed = prefixed_seen = True
                    if held:
                        # feed's held-record step for a prefixed line (held_key is key)
                        if not unmarked:
                            unmarked = self._release_calls_before(key, out)
                        h = held.get(key)
                        if h is not None:
                            event = h.event
                            if type(event) is Sql:
                                body = msg.lstrip()
                                if body[:1] == "↳":
                                    event.source_location = body[1:].strip()
                                    event.raw = f"{event.raw}\n{line}"
                                    del held[key]
                                    append(event)
                                    continue
                                del held[key]
                                append(event)
                            else:
                                unmarked = False
                                if self._meet_held(h, key, msg, True, level, line, lineno, out):
                                    continue
                        elif lineno % 64 == 0:
                            stale = self._release_stale(lineno)
                            if stale:
                                out.extend(stale)
                    # _message, the usual messages inline
                    first = msg[:1]
                    if first == "S" and msg.startswith("Started ") and key[0] != "p":
                        method_path = started_of.get(msg)
                        if method_path is None:  # not seen lately: the same request line repeats within its second
                            sm = started_match(msg)
                            method_path = sm.groups() if sm is not None else ()
                            if len(started_of) >= MAX_REMEMBERED_MESSAGES:
                                started_of.clear()
                            started_of[msg] = method_path
                        req = opened.get(key)
                        if req is None:
                            if method_path:
                                opened[key] = _Open(*method_path, "", ts)
                            else:
                                opened[key] = _Open("", "", "", ts)
                            if len(opened) > MAX_OPEN_REQUESTS:
                                opened.popitem(last=False)
                            continue
                        if method_path:
                            req.method, req.path = method_path
                        req.ts = ts
                        continue
                    if first == "P" and msg.startswith("Processing by "):
                        endpoint = endpoints.get(msg, "")
                        if endpoint == "":  # not seen yet: a few distinct messages make most Processing lines
                            pm = processing_match(msg)
                            endpoint = pm.group(1) if pm is not None else None
                            if len(endpoints) >= MAX_REMEMBERED_MESSAGES:
                                endpoints.clear()
                            endpoints[msg] = endpoint
                        if endpoint is not None:
                            req = opened.get(key)
                            if req is None:
                                req = opened[key] = _Open()
                                if len(opened) > MAX_OPEN_REQUESTS:
                                    opened.popitem(last=False)
                            req.endpoint = endpoint
                        continue
                    if first == "C":
                        numbers = completed_of.get(msg)
                        if numbers is None:  # not seen lately: most Completed lines repeat one of a few thousand
                            numbers = _completed_numbers(msg)
                            if len(completed_of) >= MAX_REMEMBERED_COMPLETED:
                                completed_of.clear()
                            completed_of[msg] = numbers
                        if numbers:
                            status, duration_ms, view_ms, db_ms, n_queries, n_cached, n_allocations = numbers
                            req = opened.pop(key, None)
                            if req is None:
                                req = _Open()
                            event = new_request(
                                ts, source, lineno, line, key, req.method, req.path, req.endpoint, status, duration_ms,
                                view_ms, db_ms, n_queries, n_cached, n_allocations, "", pid,
                            )
                            done[key] = req.endpoint
                            if len(done) > 1024:
                                done.popitem(last=False)
                            append(event)
                            continue
                    elif first == "E" and msg.startswith("Enqueued ") and msg[9:10] != "(" and "ms)  " not in msg:
                        # ActiveJob's enqueue line: none of _message's shapes (EXCEPTION needs "Enqueued (",
                        # SQL "ms)  "), so _message would make nothing of it and change nothing
                        continue
                    elif first == " ":
                        at = msg.find("ms)  ")  # SQL's shape: without it, only the skips below apply
                        body = msg.lstrip()
                        first = body[:1]
                        if first == "R" and body.startswith(("Rendered ", "Rendering ", "Redirected to ")):
                            continue
                        if at < 0:
                            if first == "P" and body.startswith("Parameters: "):
                                continue  # none of _message's shapes
                            # else _message (a ↳ line no SQL line waits for, a blank FATAL line, …)
                        elif first != "↳" and not body.startswith(("Started ", "Processing by ", "Completed ")):
                            # _sql and _hold (body is not blank: it holds "ms)"). The part up to the first
                            # "ms)  " decides SQL's match when the match ends there (no try of SQL's can end
                            # elsewhere without reading past it), so such heads are remembered: a few
                            # hundred make most lines.
                            head = msg[: at + 5]
                            known = sql_heads.get(head)
                            if known is None:
                                qm = sql_match(msg)
                                if qm is not None:
                                    cached, _, name, duration, db_time = qm.groups()
                                    known = (cached is not None, name.strip(), bounded_float(db_time or duration), qm.end())
                                    if known[3] == len(head):
                                        if len(sql_heads) >= MAX_SQL_HEADS:
                                            sql_heads.clear()
                                        sql_heads[head] = known
                            if known is not None:
                                is_cached, name, duration_ms, end = known
                                # _sql's split of the statement (msg[end:]) at its last "  [" (not at its
                                # start) when it ends in "]", found in msg itself: one slice fewer
                                cut = msg.rfind("  [", end + 1)
                                if cut > 0 and msg[-1:] == "]":
                                    statement, binds = msg[end:cut], msg[cut + 2 :]
                                else:
                                    statement, binds = msg[end:], ""
                                held[key] = _HeldSql(
                                    new_sql(
                                        ts, source, lineno, line, key if not key.startswith("pid") or key in opened else "",
                                        name, duration_ms, statement.strip(), binds, is_cached, "", pid,
                                    ),
                                    lineno,
                                )
                                continue
                    if m.group(5) is None:
                        tags = NO_TAGS
                    else:
                        tags = [key, ACTIVEJOB_TAG] if m.re is ACTIVEJOB_TAGGED_LINE else [key]
                    produced = self._message(msg, key, tags, ts, pid, level, line, lineno, True)
                    unmarked = False
                    if produced is not None:
                        append(produced)
                    continue
            elif not held and not line.strip():
                continue  # a blank line with nothing held: feed makes nothing of it and changes nothing
            elif held and line[:1] != "[" and not (line[1:2] == "," and line[3:4] == "["):
                # no prefix, no tag: feed gives the line to the last held exception or Bullet
                # warning (unless a record is held under no key at all)
                error_key = self._last_error_key
                h = None if "" in held else held.get(error_key)
                if h is not None:
                    if type(h.event) is Bullet and len(h.lines) < MAX_RECORD_LINES:
                        h.lines.append(line)
                        h.last_lineno = lineno
                        continue
                    verdict = self._continues(h, line, False, "", line, lineno)
                    unmarked = False
                    if verdict == ABSORBED:
                        continue
                    released_one = self._release(error_key)
                    if released_one is not None:
                        append(released_one)
                    if verdict == COMPLETED_BY_LINE:
                        continue
                    self.last_ts = last_ts
                    produced = self._message(line, "", NO_TAGS, last_ts, "", "", line, lineno, False)
                    unmarked = False
                    last_ts = self.last_ts
                    if produced is not None:
                        append(produced)
                    continue
            elif line[:1] == "[" and not (line[1:2] == "," and line[3:4] == "["):
                tm = one_tag(line)
                if tm is not None:
                    # one request tag, no prefix (a multi-line exception report, Rails 8 STDOUT):
                    # feed's steps for a tagged line without a time of its own
                    key = tm.group(1)
                    msg = line[tm.end() :]
                    req = opened.get(key)
                    ts = req.ts if req is not None and req.ts is not None else last_ts
                    if held:
                        if not unmarked:
                            unmarked = self._release_calls_before(key, out)
                        h = held.get(key)
                        if h is not None:
                            unmarked = False
                            if self._meet_held(h, key, msg, False, "", line, lineno, out):
                                continue
                        elif lineno % 64 == 0:
                            stale = self._release_stale(lineno)
                            if stale:
                                out.extend(stale)
                    self.last_ts = last_ts
                    produced = self._message(msg, key, [key], ts, "", "", line, lineno, False)
                    unmarked = False
                    last_ts = self.last_ts
                    if produced is not None:
                        append(produced)
                    continue
            # not the usual shape: feed, with the state it reads and writes handed over
            self.last_ts, self._second_key, self._second_epoch = last_ts, second_key, second_epoch
            events = feed(raw, lineno)
            unmarked = False
            if events:
                out.extend(events)
            last_ts, second_key, second_epoch = self.last_ts, self._second_key, self._second_epoch
            prefixed_seen = self._prefixed
        self.last_ts, self._second_key, self._second_epoch = last_ts, second_key, second_epoch
        return out

    # ----- helpers --------------------------------------------------------------------
    def _meet_held(self, held: _Held, key: str, msg: str, prefixed: bool, level: str, line: str, lineno: int, out: List[Event]) -> bool:
        """feed's step for a line of ``key`` while a record is held for it (feed_lines' rare path):
        True when the line is used up (absorbed into the record, or it completed it)."""
        verdict = self._continues(held, msg, prefixed, level, line, lineno)
        if verdict == ABSORBED:
            return True
        released = self._release(key)
        if released is not None:
            out.append(released)
        return verdict == COMPLETED_BY_LINE

    def _split_prefix(self, line: str) -> Optional[Tuple[Optional[float], str, str, str]]:
        """``I, [2024-05-01T12:00:00.123456 #4321]  INFO -- : msg`` -> (ts, pid, level, msg).

        The usual shape (a plain ``.123456`` fraction, a one-word level, no progname) is
        read by one match of ``PLAIN_PREFIX``; anything else by string slicing, which
        gives the same fields for the usual shape (tests/parsers compare both).
        """
        m = PLAIN_PREFIX.match(line)
        if m is not None:
            second, fraction, pid, level, end = m.group(1), m.group(2), m.group(3), m.group(4), m.end()
            if second == self._second_key:
                return self._second_epoch + float(fraction), pid, level, line[end:]
            ts = safe_iso(second + fraction)
            if ts is not None:
                self._second_key, self._second_epoch = second, ts - float(fraction)
            return ts, pid, level, line[end:]
        return self._split_prefix_slowly(line)

    def _split_prefix_slowly(self, line: str) -> Optional[Tuple[Optional[float], str, str, str]]:
        close = line.find("] ", 5)
        hash_at = line.rfind(" #", 5, close)
        sep = line.find(" -- ", close)
        colon = line.find(": ", sep + 4) if sep > 0 else -1
        if close < 0 or hash_at < 0 or colon < 0:
            m = PREFIX.match(line)  # something unusual: let the full pattern decide
            if m is None:
                return None
            return safe_iso(m.group(2)), m.group(3), m.group(4), line[m.end() :]
        stamp = line[4:hash_at]
        fraction = stamp[19:]
        # same second as the previous line (the usual case): only the fraction is new. Only a
        # bare ".123456" takes this path; a zone offset ("+01:00") or anything odd goes to safe_iso.
        plain = fraction[:1] == "." and 1 < len(fraction) <= 10 and fraction[1:].isascii() and fraction[1:].isdigit()
        if plain and stamp[:19] == self._second_key:
            ts: Optional[float] = self._second_epoch + float(fraction)
        else:
            ts = safe_iso(stamp)
            if ts is not None and plain:
                self._second_key, self._second_epoch = stamp[:19], ts - float(fraction)
        return ts, line[hash_at + 2 : close], line[close + 2 : sep].strip(), line[colon + 2 :]

    def _pid_key(self, pid: str) -> str:
        return f"pid{pid}.{self._seq.get(pid, 0)}"

    def _time_for(self, key: str, ts_hint: Optional[float]) -> Optional[float]:
        req = self._open.get(key) if key else None
        if req is not None and req.ts is not None:
            return req.ts
        if ts_hint is not None:
            self.last_ts = ts_hint
            return ts_hint
        return self.last_ts

    def _message(
        self, msg: str, key: str, tags: List[str], ts: Optional[float], pid: str, level: str, line: str, lineno: int, prefixed: bool
    ) -> Optional[Event]:
        body = msg.lstrip()
        first = body[:1]
        if not body:
            if level in ("FATAL", "ERROR"):
                expect = self._expect_exception
                expect[key] = True  # Rails' exception report opens with a blank FATAL line
                if len(expect) > 64:
                    # forget the oldest only: clearing the lot dropped this key too, and with it
                    # the exception report that follows (an Error lost every 65th report)
                    del expect[next(iter(expect))]
            return None
        if first == "S" and body.startswith("Started "):
            return self._started(body, key, ts, pid, ts_given=prefixed)
        if first == "P" and body.startswith("Processing by "):
            m = PROCESSING.match(body)
            if m:
                self._request(key).endpoint = f"{m.group(1)}#{m.group(2)}"
            return None
        if first == "C" and body.startswith("Completed "):
            return self._completed(body, key, ts, pid, line, lineno)
        if first == "R" and body.startswith(("Rendered ", "Rendering ", "Redirected to ")):
            return None
        if "ms)  " in msg:
            m = SQL.match(msg if msg.startswith(" ") else " " + msg)
            if m is not None:
                return self._sql(m, key, ts, pid, line, lineno)
        if first == "E" and body.startswith("Error performing "):
            m = ACTIVEJOB_ERROR.match(body)
            if m is not None:
                err = Error(
                    ts=ts, source=self.source, line=lineno, origin="activejob", error_class=m.group(4),
                    message=m.group(5).rstrip("):"), job_class=m.group(1), jid=m.group(2), level=level, pid=pid,
                )
                self._hold(key, err, line, lineno, message_open=not body.endswith("):"), prefixed=prefixed)
                return None
        if first.isupper() and "(" in body:
            m = EXCEPTION.match(body)
            # the search for the header's end only where the header matched ("Enqueued X (Job ID: …"
            # and most messages with a bracket do not)
            ended = m is not None and HEADER_END.search(body) is not None
            if m is not None and (ended or level in ("FATAL", "ERROR") or self._expect_exception.pop(key, False)):
                message = m.group(2)
                closed = ended
                if closed:
                    message = message[: message.rfind(")")]
                err = Error(
                    ts=ts, source=self.source, line=lineno, origin="rails", error_class=m.group(1),
                    message=message, request_id=key if not key.startswith("pid") else "",
                    endpoint=self._endpoint(key), level=level or "FATAL", pid=pid,
                )
                self._hold(key, err, line, lineno, message_open=not closed, prefixed=prefixed)
                return None
        if first == "u" and body.startswith("user: ") and level in ("WARN", ""):
            # Bullet.rails_logger: "user: <name>" opens a multi-line N+1 warning
            self._held[key] = _Held(Bullet(ts=ts, source=self.source, line=lineno, raw=line), body, lineno, single_call=True)
            self._last_error_key = key
            return None
        if lograge.looks_like(body):
            fields = lograge.parse(body)
            if fields is not None:
                return lograge.to_request(fields, ts=ts, source=self.source, line=lineno, raw=line, request_id=key, pid=pid)
        if not prefixed and not tags and self._prefixed and body:
            self.unparsed += 1  # in a prefixed file, a stray line that continues nothing
        elif not prefixed and not tags and not self._prefixed and body and not self._open:
            self.unparsed += 1
        return None

    def _request(self, key: str) -> _Open:
        req = self._open.get(key)
        if req is None:
            req = self._open[key] = _Open()
            if len(self._open) > MAX_OPEN_REQUESTS:
                self._open.popitem(last=False)
        return req

    def _started(self, body: str, key: str, ts: Optional[float], pid: str, ts_given: bool) -> None:
        if key.startswith("pid"):
            self._seq[pid] = self._seq.get(pid, 0) + 1
            key = self._pid_key(pid)
        m = STARTED.match(body)
        req = self._request(key)
        if m is not None:
            req.method, req.path = m.group(1), m.group(2)
            # the Logger prefix already gave the time: the "at …" stamp is read only without it
            at = None if ts_given else safe_iso(m.group(3))
            if at is not None:
                ts = at
                self.last_ts = at
        req.ts = ts
        return None

    def _completed(self, body: str, key: str, ts: Optional[float], pid: str, line: str, lineno: int) -> Optional[Event]:
        m = COMPLETED.match(body)
        if m is not None:
            status, duration, adds = m.group(1), m.group(3), m.group(4)
        else:
            m = COMPLETED_RAILS30.match(body)
            if m is None:
                return None
            status, duration, adds = m.group(3), m.group(1), m.group(2)
        req = self._open.pop(key, None) or _Open()
        event = Request(
            ts=ts, source=self.source, line=lineno, raw=line, request_id=key, method=req.method, path=req.path,
            endpoint=req.endpoint, status=bounded_int(status), duration_ms=bounded_float(duration), pid=pid,
        )
        if adds:
            self._read_additions(event, adds)
        if key:
            self._done[key] = req.endpoint
            if len(self._done) > 1024:
                self._done.popitem(last=False)
        return event

    @staticmethod
    def _read_additions(event: Request, adds: str) -> None:
        """``Views: 40.4ms | ActiveRecord: 15.3ms (12 queries, 3 cached) | …`` into the request."""
        for a in ADDITION.finditer(adds):
            label, value = a.group(1), a.group(2)
            if label == "ActiveRecord":
                event.db_ms = bounded_float(value)
                if a.group(3) is not None:
                    event.queries, event.cached = bounded_int(a.group(3)), bounded_int(a.group(4))
            elif label == "Views":
                event.view_ms = bounded_float(value)
            elif label == "Allocations":
                event.allocations = bounded_int(value)

    def _endpoint(self, key: str) -> str:
        req = self._open.get(key)
        if req is not None:
            return req.endpoint
        return self._done.get(key, "")

    def _sql(self, m: "re.Match[str]", key: str, ts: Optional[float], pid: str, line: str, lineno: int) -> None:
        text = m.group(6)
        binds = ""
        cut = text.rfind("  [")
        if cut > 0 and text.endswith("]"):
            text, binds = text[:cut], text[cut + 2 :]
        duration = m.group(5) or m.group(4)
        event = Sql(
            ts=ts, source=self.source, line=lineno, raw=line, request_id=key if not key.startswith("pid") or key in self._open else "",
            name=m.group(3).strip(), duration_ms=bounded_float(duration), sql=text.strip(), binds=binds,
            cached=m.group(1) is not None, pid=pid,
        )
        self._hold(key, event, line, lineno)
        return None

    def _hold(self, key: str, event: Event, line: str, lineno: int, message_open: bool = False, prefixed: bool = True) -> None:
        self._held[key] = _Held(event, line, lineno, message_open, single_call=isinstance(event, Error) and not prefixed)
        if isinstance(event, (Error, Bullet)):
            self._last_error_key = key

    def _continues(self, held: _Held, msg: str, prefixed: bool, level: str, line: str, lineno: int) -> int:
        """Does this line continue the held record? ABSORBED, COMPLETED_BY_LINE or NOT_MINE."""
        event = held.event
        body = msg.strip()
        if isinstance(event, Sql):
            if body.startswith("↳"):
                event.source_location = body[1:].strip()
                event.raw += "\n" + line
                return COMPLETED_BY_LINE
            return NOT_MINE
        if isinstance(event, Bullet):
            # Bullet's warning is one logger call: its lines carry no prefix and no tag
            if prefixed or len(held.lines) >= MAX_RECORD_LINES:
                return NOT_MINE
            held.lines.append(msg)
            held.last_lineno = lineno
            return ABSORBED
        # an exception: message lines until "):", then blank lines and frames
        if prefixed and level not in ("FATAL", "ERROR"):
            return NOT_MINE
        assert isinstance(event, Error)
        if not prefixed and not held.in_pieces:
            held.single_call = True  # this part came in one logger call: the next call ends it
        if held.message_open and REAL_FRAME.match(msg):
            held.message_open = False  # the message never closed (cut or anonymised): frames start here
        if held.message_open:
            if len(held.lines) >= MAX_MESSAGE_LINES:
                held.message_open = False
                return NOT_MINE
            if len(held.lines) < MAX_RECORD_LINES:
                held.lines.append(line)
            if HEADER_END.search(body):
                held.message_open = False
                event.message += "\n" + msg[: msg.rfind(")")]
            else:
                event.message += "\n" + msg
            held.last_lineno = lineno
            return ABSORBED
        if not body or FRAME.match(msg):
            if len(held.lines) < MAX_RECORD_LINES:
                held.lines.append(line)
            if body and len(held.frames) < MAX_BACKTRACE and not body[0].isdigit():
                held.frames.append(body)
            held.last_lineno = lineno
            return ABSORBED
        return NOT_MINE

    def _release(self, key: str) -> Optional[Event]:
        held = self._held.pop(key)
        event = held.event
        if isinstance(event, Bullet):
            found = parse_bullet_block(held.lines, ts=event.ts, source=self.source, line=event.line)
            if found is not None:
                found.raw = "\n".join([event.raw] + held.lines[1:]).rstrip()
            return found
        if isinstance(event, Error):
            event.raw = "\n".join(held.lines).rstrip()
            event.backtrace = tuple(held.frames)
            event.message = event.message.strip()
        return event

    def _release_calls_before(self, key: str, out: List[Event]) -> bool:
        """feed_lines' form of feed's first step with records held: the finished one-call records
        of other requests go to ``out``. True when no one-call record is held at all, so the loop
        skips this step until feed or a helper has run again (its ``unmarked``)."""
        if True in map(_SINGLE_CALL, self._held.values()):
            out.extend(self._release_finished_calls(key))
            return False
        return True

    def _release_finished_calls(self, key: str) -> List[Event]:
        """A new logger call began: one-call records of other requests are complete.

        Without this, a Bullet warning or an exception report waits for its own request's
        next line, which under steady traffic of other requests can take hundreds of lines.
        """
        done = [k for k, h in self._held.items() if h.single_call and k != key]
        return [e for e in map(self._release, done) if e is not None] if done else NOTHING

    def _release_stale(self, lineno: int) -> List[Event]:
        stale = [k for k, h in self._held.items() if lineno - h.last_lineno > STALE_AFTER_LINES]
        return [e for e in map(self._release, stale) if e is not None] if stale else NOTHING


class LogrageParser(RailsParser):
    """The Rails parser, chosen when a file's requests are lograge lines."""

    name = "lograge"
    description = "lograge key=value or JSON request lines (with or without the Rails Logger prefix)"

    @classmethod
    def sniff(cls, lines: Sequence[str]) -> float:
        def message_of(line: str) -> str:
            line = strip_ansi(line)
            m = PREFIX.match(line)
            msg = line[m.end() :] if m else line
            return split_tags(msg)[1]

        # a lograge file still carries Rails lines (FATAL blocks, boot lines): a share of
        # lograge requests is enough, scaled so it beats the plain Rails reading of the file
        found = share(lines, lambda line: lograge.looks_like(message_of(line)))
        return min(1.0, found * 4) if found else 0.0
