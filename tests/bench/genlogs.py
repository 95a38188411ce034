"""Deterministic generators of large, realistic logs for the scan benchmarks.

    python tests/bench/genlogs.py KIND SIZE_MB OUT [--seed N]
    KIND: rails-info | rails-debug | sidekiq | sidekiq7

Every line is a real corpus line shape (see shapes.py) with fresh times, pids, request
ids, jids and durations. Requests and jobs of several threads interleave the way a
multi-threaded Puma or Sidekiq process writes them; multi-line records (exception
reports, backtraces) stay in one piece, as one logger call writes them. Proportions:

* rails-info: Rails 5.2-7 production log at info level, ~100 requests/s over 4 Puma
  threads, 0.5 % of requests end in an exception report with a backtrace, plus one
  pool-exhaustion episode (10 minutes, at most 2 % of the file) (ConnectionTimeoutError on 30 % of requests).
* rails-debug: debug level, colourised as Rails writes it; per request 3-40 SQL
  statements each with its ``↳`` line (about 85 % of all lines), CACHE hits,
  transactions, 5 % of requests with an N+1 burst of 20-60 identical-shape loads.
  Statement shapes: the corpus statements x 24 model/table names, PostgreSQL binds.
* sidekiq / sidekiq7: Sidekiq 4-5 (the corpus' own layout) or 6.0-7.3 (rails-signals
  D.1) job log, 10 threads, start/done pairs, 0.5 % failures with the WARN job hash,
  error line and backtrace, a boot/shutdown cycle every 100k jobs, and one failure
  storm (ConnectionTimeoutError after 5.00x s, as quoted in ISSUE_QUOTES.md).

Same seed, size and inputs (the corpus, and tests/fixtures/logs/e2e when present):
byte-identical output. The generated data is never committed.
"""
from __future__ import annotations

import argparse
import calendar
import os
import random
import re
import sys
import time
from typing import Callable, Iterator, List, Optional, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import shapes  # noqa: E402

START = calendar.timegm((2024, 5, 1, 0, 0, 0, 0, 0, 0))
FLUSH_LINES = 20000

# A record to write: (level, message, continuation lines as (request-tagged?, text))
Emit = Tuple[str, str, List[Tuple[bool, str]]]


class Clock:
    """Log time in microseconds, rendered with the seconds part cached (it changes rarely)."""

    def __init__(self, rng: random.Random, lines_per_s: float) -> None:
        self.us = START * 1_000_000
        self.rng = rng
        self.mean_gap = 1_000_000 / lines_per_s
        self._sec = -1
        self._iso = ""
        self._space = ""

    def tick(self) -> None:
        self.us += int(self.rng.expovariate(1.0) * self.mean_gap) + 1

    def skip(self, seconds: float) -> None:
        self.us += int(seconds * 1_000_000)

    def _refresh(self) -> int:
        sec = self.us // 1_000_000
        if sec != self._sec:
            self._sec = sec
            t = time.gmtime(sec)
            self._iso = time.strftime("%Y-%m-%dT%H:%M:%S", t)
            self._space = time.strftime("%Y-%m-%d %H:%M:%S", t)
        return self.us % 1_000_000

    # _refresh() first: an f-string reads self._iso before calling _refresh() inside it,
    # which stamped the first line of each new second with the previous second (and the
    # very first line, before any refresh, with no date at all)
    def iso_us(self) -> str:
        us = self._refresh()
        return f"{self._iso}.{us:06d}"

    def iso_ms_z(self) -> str:
        us = self._refresh()
        return f"{self._iso}.{us // 1000:03d}Z"

    def spaced(self) -> str:
        self._refresh()
        return self._space

    @property
    def seconds(self) -> float:
        return self.us / 1_000_000 - START


def uuid(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"


def write_interleaved(out: str, size_mb: float, streams: int, new_unit: Callable[[int], Iterator[Emit]],
                      render: Callable[[int, Emit], str], clock: Clock, rng: random.Random) -> int:
    """Interleave ``streams`` concurrent units (requests, jobs) until the file has ``size_mb``."""
    target = int(size_mb * 1024 * 1024)
    written = 0
    lines = 0
    active = [new_unit(i) for i in range(streams)]
    buf: List[str] = []
    with open(out, "w", encoding="utf-8", newline="\n") as fh:
        while written < target:
            i = rng.randrange(streams)
            clock.tick()
            try:
                rec = next(active[i])
            except StopIteration:
                active[i] = new_unit(i)
                continue
            buf.append(render(i, rec))
            lines += 1
            if len(buf) >= FLUSH_LINES:
                chunk = "\n".join(buf) + "\n"
                fh.write(chunk)
                written += len(chunk.encode("utf-8")) if not chunk.isascii() else len(chunk)
                buf.clear()
        if buf:
            fh.write("\n".join(buf) + "\n")
    return lines


# ----- Rails --------------------------------------------------------------------------------

LEVEL_LETTER = {"DEBUG": "D", "INFO": "I", "WARN": "W", "ERROR": "E", "FATAL": "F", "UNKNOWN": "A"}


def _rails_render(clock: Clock, pids: List[int], rids: List[str]) -> Callable[[int, Emit], str]:
    def render(stream: int, rec: Emit) -> str:
        level, msg, extra = rec
        rid = rids[stream]
        head = f"{LEVEL_LETTER[level]}, [{clock.iso_us()} #{pids[stream % len(pids)]}] {level:>5} -- : [{rid}] {msg}"
        if not extra:
            return head
        return head + "\n" + "\n".join(f"[{rid}] {text}" if tagged else text for tagged, text in extra)
    return render


def _request_records(block: shapes.Block, rng: random.Random, clock: Clock, slow: float) -> Iterator[Emit]:
    for r in block.records:
        msg = r.msg
        if msg.startswith("Started ") and " at 20" in msg:
            msg = msg[: msg.rfind(" at 20")] + f" at {clock.spaced()} +0000"
        elif msg.startswith("Completed ") and "ms" in msg and not msg.startswith("Completed 500 Internal Server Error in 5003ms"):
            before, _, after = msg.partition(" in ")
            number, _, rest = after.partition("ms")
            if number.isdigit():
                msg = f"{before} in {max(1, int(int(number) * slow * rng.lognormvariate(0, 0.4)))}ms{rest}"
        yield r.level, msg, list(zip(r.extra_tagged, r.extra))


def generate_rails_info(out: str, size_mb: float, seed: int = 1) -> int:
    rng = random.Random(seed)
    corpus = shapes.corpus_dir()
    normal, errors = shapes.request_blocks(
        [os.path.join(corpus, "rails_log_parser", n) for n in ("example.log", "example2.log")] + shapes.e2e_logs("info"))
    timeouts = [shapes.pool_timeout_block(b) for b in normal if any(r.msg.startswith("Started ") for r in b.records)]
    clock = Clock(rng, lines_per_s=600)
    pids = [rng.randrange(2000, 60000) for _ in range(2)]
    rids = [""] * 4
    total_s = size_mb * 1024 * 1024 / 170 / 600  # ~170 bytes a line: the episode sits 40 % in
    episode = (total_s * 0.4, total_s * 0.4 + min(600.0, total_s * 0.02))

    def new_request(stream: int) -> Iterator[Emit]:
        rids[stream] = uuid(rng)
        in_episode = episode[0] <= clock.seconds < episode[1]
        if in_episode and rng.random() < 0.3:
            block = rng.choice(timeouts)
        elif rng.random() < 0.005:
            block = rng.choice(errors)
        else:
            block = rng.choice(normal)
        return _request_records(block, rng, clock, 3.0 if in_episode else 1.0)

    render = _rails_render(clock, pids, rids)
    return write_interleaved(out, size_mb, 4, new_request, render, clock, rng)


MODELS = [
    "Account", "Order", "LineItem", "Product", "Invoice", "Comment", "Post", "Tag", "Subscription", "Payment",
    "Address", "Shipment", "Notification", "Membership", "Team", "Project", "Task", "Message", "Conversation",
    "Review", "Category", "Coupon", "Organization", "Event",
]


def _table(model: str) -> str:
    snake = "".join(("_" + c.lower()) if c.isupper() else c for c in model).lstrip("_")
    if snake.endswith("y"):
        return snake[:-1] + "ies"
    return snake + ("es" if snake.endswith(("s", "sh", "ch")) else "s")


def _pg_binds(sql: str) -> str:
    parts = sql.split("?")
    out = [parts[0]]
    for n, part in enumerate(parts[1:], 1):
        out.append(f"${n}{part}")
    text = "".join(out)
    return {"begin transaction": "BEGIN", "commit transaction": "COMMIT"}.get(text, text)


COLOUR = {"SELECT": "34", "INSERT": "32", "UPDATE": "33", "DELETE": "31"}


def statement_bank(statements: List[shapes.Statement]) -> Tuple[List[Tuple[str, str, str, str]], List[Tuple[str, str, str, str]]]:
    """(reads, writes) as (name, sql, binds, location): corpus statements renamed to every model."""
    reads: List[Tuple[str, str, str, str]] = []
    writes: List[Tuple[str, str, str, str]] = []
    seen = set()
    for st in statements:
        if st.name == "TRANSACTION" or st.cached:
            continue
        model = st.name.split(" ")[0]
        table = _table(model.split("::")[-1]) if "::" not in model else None
        for target in MODELS if table else [model]:
            name, sql, binds, loc = st.name, st.sql, st.binds, st.location
            if table:
                new_table = _table(target)
                name = name.replace(model, target, 1)
                sql = sql.replace(f'"{table}"', f'"{new_table}"')
                loc = loc.replace(f"/{table}/", f"/{new_table}/").replace(f"{model.lower()}.rb", f"{new_table[:-1]}.rb")
            sql = _pg_binds(sql)
            if (name, sql) in seen:
                continue
            seen.add((name, sql))
            (writes if sql.startswith(("INSERT", "UPDATE", "DELETE")) else reads).append((name, sql, binds, loc))
    return reads, writes


def generate_rails_debug(out: str, size_mb: float, seed: int = 2) -> int:
    rng = random.Random(seed)
    corpus = shapes.corpus_dir()
    sel = os.path.join(corpus, "select_rails_log")
    normal, _ = shapes.request_blocks([os.path.join(sel, "simple.log")] + shapes.e2e_logs("debug"))
    reads, writes = statement_bank(shapes.sql_statements([os.path.join(sel, "simple.log"), os.path.join(sel, "overlapped.log")]
                                                         + shapes.e2e_logs("debug")))
    clock = Clock(rng, lines_per_s=3000)
    pids = [rng.randrange(2000, 60000) for _ in range(2)]
    rids = [""] * 4

    def sql_line(name: str, sql: str, binds: str, cached: bool = False) -> str:
        ms = "0.0" if cached else f"{rng.lognormvariate(-1.2, 1.0):.1f}"
        colour = COLOUR.get(sql.split(" ", 1)[0], "36")
        binds = _vary_binds(binds, rng)
        tail = f"  {binds}" if binds else ""
        return f"  \x1b[1m\x1b[36m{'CACHE ' if cached else ''}{name} ({ms}ms)\x1b[0m  \x1b[1m\x1b[{colour}m{sql}\x1b[0m{tail}"

    def queries() -> Iterator[Emit]:
        kind = rng.random()
        count = rng.randint(3, 15) if kind < 0.7 else rng.randint(15, 40)
        for _ in range(count):
            name, sql, binds, loc = rng.choice(reads)
            cached = rng.random() < 0.15
            yield "DEBUG", sql_line(name, sql, binds, cached), []
            yield "DEBUG", f"  ↳ {loc}", []
        if rng.random() < 0.05:  # an N+1 burst: one shape, a different id each time
            name, sql, binds, loc = rng.choice(reads)
            for _ in range(rng.randint(20, 60)):
                yield "DEBUG", sql_line(name, sql, binds), []
                yield "DEBUG", f"  ↳ {loc}", []
        if rng.random() < 0.1:
            loc = rng.choice(writes)[3]
            yield "DEBUG", sql_line("TRANSACTION", "BEGIN", ""), []
            yield "DEBUG", f"  ↳ {loc}", []
            for _ in range(rng.randint(1, 3)):
                name, sql, binds, loc = rng.choice(writes)
                yield "DEBUG", sql_line(name, sql, binds), []
                yield "DEBUG", f"  ↳ {loc}", []
            yield "DEBUG", sql_line("TRANSACTION", "COMMIT", ""), []
            yield "DEBUG", f"  ↳ {loc}", []

    def new_request(stream: int) -> Iterator[Emit]:
        rids[stream] = uuid(rng)
        block = rng.choice(normal)
        records = [r for r in block.records if not shapes._SQL.match(shapes._ANSI.sub("", r.msg).strip())
                   and "↳" not in r.msg]
        return _debug_request(records, queries(), rng, clock)

    return write_interleaved(out, size_mb, 4, new_request, _rails_render(clock, pids, rids), clock, rng)


def _debug_request(records: List[shapes.Record], sql: Iterator[Emit], rng: random.Random, clock: Clock) -> Iterator[Emit]:
    """The request's own lines with its statements after ``Parameters`` (or ``Processing``)."""
    block = shapes.Block(records, False)
    placed = False
    for level, msg, extra in _request_records(block, rng, clock, 1.0):
        if not placed and (msg.startswith(("  Rendering", "  Rendered", "Completed", "Redirected"))):
            placed = True
            yield from sql
        yield level, msg, extra


def _vary_binds(binds: str, rng: random.Random) -> str:
    if '["id", ' not in binds:
        return binds
    head, _, tail = binds.partition('["id", ')
    number, _, rest = tail.partition("]")
    return f'{head}["id", {rng.randrange(1, 500000)}]{rest}' if number.isdigit() else binds


# ----- Sidekiq ------------------------------------------------------------------------------


def _tid(rng: random.Random) -> str:
    n = rng.getrandbits(30)
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while n:
        n, r = divmod(n, 36)
        out = digits[r] + out
    return out or "0"


def generate_sidekiq(out: str, size_mb: float, seed: int = 3, layout: str = "legacy") -> int:
    """``layout`` "legacy": Sidekiq 4/5 as in the corpus; "7": Sidekiq 6.0-7.3 Pretty lines."""
    rng = random.Random(seed)
    sk = shapes.sidekiq_shapes(os.path.join(shapes.corpus_dir(), "sidekiq_log_analyzer", "sidekiq.log.gz"))
    workers = sk.workers + ["MailerJob", "WebhookDeliveryJob", "ReportExportJob", "SearchIndexJob", "ImageVariantJob"]
    clock = Clock(rng, lines_per_s=400)
    state = {"pid": rng.randrange(2000, 60000), "lines": 0}
    tids = [_tid(rng) for _ in range(10)]
    total_s = size_mb * 1024 * 1024 / 110 / 400
    storm = (total_s * 0.6, total_s * 0.6 + min(300.0, total_s * 0.02))
    legacy = layout == "legacy"

    def head(tid: str, klass: Optional[str], jid: Optional[str], level: str, elapsed: Optional[float] = None) -> str:
        if legacy:
            ctx = f" {klass} JID-{jid}" if klass else ""
            return f"{clock.iso_ms_z()} {state['pid']} TID-{tid}{ctx} {level}: "
        ctx = f" class={klass} jid={jid}" if klass else ""
        if elapsed is not None:
            ctx += f" elapsed={elapsed:.3f}"
        return f"{clock.iso_ms_z()} pid={state['pid']} tid={tid}{ctx} {level}: "

    def job(stream: int) -> Iterator[Emit]:
        state["lines"] += 1
        tid = tids[stream]
        if state["lines"] % 100000 == 0:
            yield from lifecycle(tid)
        klass = workers[min(int(rng.expovariate(0.6)), len(workers) - 1)]
        jid = f"{rng.getrandbits(96):024x}"
        yield "", head(tid, klass, jid, "INFO") + "start", []
        in_storm = storm[0] <= clock.seconds < storm[1] and klass == workers[0]
        if in_storm and rng.random() < 0.3:
            elapsed = 5.0 + rng.random() * 0.01
            clock.skip(elapsed / 10)
            yield from fail(tid, klass, jid, elapsed, "ActiveRecord::ConnectionTimeoutError",
                            "could not obtain a connection from the pool within 5.000 seconds (waited 5.001 seconds); "
                            "all pooled connections were in use")
            return
        elapsed = rng.lognormvariate(-2.5, 1.3)
        if rng.random() < 0.005:
            yield from fail(tid, klass, jid, elapsed, "", "")
            return
        done = "done" if not legacy else f"done: {elapsed:.3f} sec"
        yield "", head(tid, klass, jid, "INFO", elapsed) + done, []

    def fail(tid: str, klass: str, jid: str, elapsed: float, error_class: str, message: str) -> Iterator[Emit]:
        yield "", head(tid, klass, jid, "INFO", elapsed) + ("fail" if not legacy else f"fail: {elapsed:.3f} sec"), []
        job_hash, error, frame = sk.fail_warn[:3]
        job_hash = job_hash.replace('"UserStatWorker"', f'"{klass}"').replace("b6c2630ba0d895c184e40f3b", jid)
        if not legacy:  # 7.x: the context has no jobstr (rails-signals D.3)
            job_hash = job_hash[: job_hash.find(',"jobstr"')] + "}" if ',"jobstr"' in job_hash else job_hash
        if error_class:
            error = f"{error_class}: {message}"
        yield "", head(tid, None, None, "WARN") + job_hash, []
        yield "", head(tid, None, None, "WARN") + error, []
        yield "", head(tid, None, None, "WARN") + frame, [(False, f) for f in sk.fail_backtrace[: rng.randint(8, len(sk.fail_backtrace))]]

    def lifecycle(tid: str) -> Iterator[Emit]:
        for msg in sk.stop:
            yield "", head(tid, None, None, "INFO") + msg, []
        clock.skip(8)
        state["pid"] = rng.randrange(2000, 60000)
        for msg in sk.boot:
            yield "", head(tid, None, None, "INFO") + msg, []

    def render(stream: int, rec: Emit) -> str:
        _, text, extra = rec
        return text + ("\n" + "\n".join(t for _, t in extra) if extra else "")

    return write_interleaved(out, size_mb, 10, job, render, clock, rng)


# Rails 5-7 production logs of the corpus (Logger prefix, request-id tags), oldest first.
CORPUS_RAILS = [
    ("rails_log_parser", "example.log"),
    ("rails_log_parser", "example2.log"),
    ("select_rails_log", "simple.log"),
    ("select_rails_log", "overlapped.log"),
]


def generate_rails_corpus(out: str, size_mb: float, seed: int = 5) -> int:
    """Real Rails lines, not generated shapes: the corpus' production logs repeated until
    ``size_mb``. Each file of each copy is moved to a day of its own (every copy of a file
    has one date), so time runs forward through the whole log."""
    import datetime as _dt

    pieces = []
    for folder, name in CORPUS_RAILS:
        with open(os.path.join(shapes.corpus_dir(), folder, name), encoding="utf-8", errors="replace") as fh:
            text = fh.read()
        if not text.endswith("\n"):
            text += "\n"
        dates = sorted(set(re.findall(r"\b20[0-9]{2}-[0-9]{2}-[0-9]{2}\b", text)))
        assert len(dates) == 1, f"{name}: one date expected, found {dates}"
        pieces.append((text.split(dates[0]), text.count("\n")))
    target = int(size_mb * 1024 * 1024)
    day = _dt.date(2001, 1, 1)
    written = lines = 0
    with open(out, "w", encoding="utf-8", newline="\n") as fh:
        while written < target:
            for parts, count in pieces:
                chunk = day.isoformat().join(parts)
                fh.write(chunk)
                written += len(chunk.encode("utf-8"))
                lines += count
                day += _dt.timedelta(days=1)
    return lines


GENERATORS = {
    "rails-info": generate_rails_info,
    "rails-debug": generate_rails_debug,
    "sidekiq": lambda out, size_mb, seed=3: generate_sidekiq(out, size_mb, seed, "legacy"),
    "sidekiq7": lambda out, size_mb, seed=4: generate_sidekiq(out, size_mb, seed, "7"),
    "rails-corpus": generate_rails_corpus,
}


def main(argv: Optional[List[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("kind", choices=sorted(GENERATORS))
    ap.add_argument("size_mb", type=float)
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args(argv)
    started = time.perf_counter()
    gen = GENERATORS[args.kind]
    lines = gen(args.out, args.size_mb) if args.seed is None else gen(args.out, args.size_mb, args.seed)
    print(f"{args.out}: {lines} records, {os.path.getsize(args.out) / 1e6:.0f} MB in {time.perf_counter() - started:.1f}s")


if __name__ == "__main__":
    main()
