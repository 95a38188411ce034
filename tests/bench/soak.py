"""Soak the daemon's tailing: rotations, copytruncates and SIGKILLs under a steady write rate.

    PYTHONPATH=$PWD python tests/bench/soak.py [--rate 2000] [--seconds 40]

An "app" appends numbered Rails request lines at ``--rate`` lines/s for ``--seconds``; meanwhile
the log is rotated by rename 6 times and by copytruncate 2 times (with the app paused across
the copy and the truncate, as logrotate's ``copytruncate`` race is the app's, not the agent's),
and the daemon is SIGKILLed 6 times and restarted each time. At the end the daemon's counters
must hold every line exactly once (requests counted == lines written). Not a test: a figure for
the README and the hardening notes.
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent.parent), str(HERE.parent)]

import importlib.util  # noqa: E402

_spec = importlib.util.spec_from_file_location("railwatch_test_daemon", HERE.parent / "test_daemon.py")
td = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(td)  # type: ignore[union-attr]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rate", type=float, default=2000.0)
    p.add_argument("--seconds", type=float, default=40.0)
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="rw-soak-"))
    try:
        log = tmp / "production.log"
        log.write_text("")
        counters = tmp / "counters.json"
        cfg = td.config_file(tmp, [log])
        app = td.Writer(log)
        lock = threading.Lock()
        total = int(args.rate * args.seconds)
        written = [0]

        def write() -> None:
            started = time.monotonic()
            for n in range(1, total + 1):
                with lock:
                    app.fh.write(td.line(n))
                    app.fh.flush()
                written[0] = n
                ahead = n / args.rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)

        def copytruncate() -> None:
            with lock:
                shutil.copyfile(log, tmp / f"production.log.ct{int(time.time() * 1000)}")
                with open(log, "r+") as fh:
                    fh.truncate(0)

        events = ["rename"] * 6 + ["copytruncate"] * 2 + ["kill"] * 6
        random.Random(7).shuffle(events)
        d = td.Proc(tmp, "--config", str(cfg), "--debug-counters", str(counters))
        writer = threading.Thread(target=write)
        t0 = time.monotonic()
        writer.start()
        for i, what in enumerate(events):
            time.sleep(max(0.0, t0 + (i + 1) * args.seconds / (len(events) + 1) - time.monotonic()))
            if what == "rename":
                with lock:
                    app.rotate()
            elif what == "copytruncate":
                copytruncate()
            else:
                d.proc.send_signal(signal.SIGKILL)
                d.stop()
                d = td.Proc(tmp, "--config", str(cfg), "--debug-counters", str(counters))
        writer.join()
        deadline = time.monotonic() + 120
        while td.requests_counted(counters) < total and time.monotonic() < deadline:
            time.sleep(0.2)
        d.stop()
        app.close()
        final = td.counters_file_value(str(counters))
        got, lines = final["events"].get("request", 0), final["lines"]
        print(f"written {total} lines at {args.rate:.0f}/s over {args.seconds:.0f} s with "
              f"{events.count('rename')} renames, {events.count('copytruncate')} copytruncates, "
              f"{events.count('kill')} SIGKILLs: counted {got} requests from {lines} lines "
              f"({'none lost, none double-counted' if got == total == lines else 'MISMATCH'})")
        return 0 if got == total == lines else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
