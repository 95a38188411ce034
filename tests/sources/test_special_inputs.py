"""Only regular files are read (issue 13, item 3): FIFOs, devices and sockets are refused
with a one-line reason by ``scan`` and by the tailer; missing logs are warned about and
picked up when they appear; configs are read with a size cap and a clear UTF-8 error;
many logs degrade gracefully when file descriptors run out.

Threads and subprocesses below carry a generous timeout only as a hang guard: before
this change a FIFO blocked the reader forever.
"""
from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import List

import pytest

from agent.config import ConfigError, read_toml
from agent.sources.checkpoint import MemoryCheckpoints
from agent.sources.files import ReadStats, expand, read_batches
from agent.sources.replay import iter_events
from agent.sources.tail import Tailer, TailSpec
from agent.testing import FakeClock

ROOT = Path(__file__).resolve().parents[2]
RAILS_LOG = ROOT / "tests" / "fixtures" / "logs" / "e2e" / "info" / "production.log"
UNIT = ROOT / "packaging" / "systemd" / "railwatch.service"
HANG_GUARD_S = 120


def real_lines(n: int) -> List[str]:
    return RAILS_LOG.read_text().splitlines(keepends=True)[:n]


@pytest.fixture
def fifo(tmp_path: Path) -> str:
    path = tmp_path / "pipe.log"
    os.mkfifo(path)
    return str(path)


@pytest.fixture
def unix_socket(tmp_path: Path):  # type: ignore[no-untyped-def]
    path = tmp_path / "sock.log"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    yield str(path)
    sock.close()


# ----- scan: expand and read ---------------------------------------------------------------
def test_expand_refuses_fifo_device_and_socket_with_one_line_reasons(fifo: str, unix_socket: str) -> None:
    files, problems = expand([fifo, "/dev/zero", unix_socket, str(RAILS_LOG)])
    assert [f.path for f in files] == [str(RAILS_LOG)]
    assert problems == [
        f"{fifo}: a FIFO (named pipe), not a regular file: not read",
        "/dev/zero: a character device, not a regular file: not read",
        f"{unix_socket}: a socket, not a regular file: not read",
    ]


def test_expand_refuses_a_fifo_found_in_a_directory(tmp_path: Path, fifo: str) -> None:
    (tmp_path / "production.log").write_text("".join(real_lines(20)))
    files, problems = expand([str(tmp_path)])
    assert [os.path.basename(f.path) for f in files] == ["production.log"]
    assert problems == [f"{fifo}: a FIFO (named pipe), not a regular file: not read"]


@pytest.mark.parametrize("special", ["fifo", "/dev/zero"])
def test_reading_a_special_file_is_refused_without_blocking(special: str, fifo: str) -> None:
    path = fifo if special == "fifo" else special
    stats = ReadStats()
    assert list(read_batches(path, stats)) == []
    assert len(stats.problems) == 1 and "not a regular file: not read" in stats.problems[0]


def test_scan_with_a_fifo_and_dev_zero_reads_the_real_log_and_finishes(fifo: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "agent", "scan", fifo, "/dev/zero", str(RAILS_LOG)],
        cwd=ROOT, capture_output=True, text=True, timeout=HANG_GUARD_S, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert "production.log" in done.stdout and "874 lines" in done.stdout
    assert f"{fifo}: a FIFO (named pipe), not a regular file: not read" in done.stderr
    assert "/dev/zero: a character device, not a regular file: not read" in done.stderr


# ----- run: the tailer ---------------------------------------------------------------------
class Seen:
    def __init__(self) -> None:
        self.events: list = []  # type: ignore[type-arg]

    def __call__(self, event) -> None:  # type: ignore[no-untyped-def]
        self.events.append(event)


def start_tailer(specs: List[TailSpec]):  # type: ignore[no-untyped-def]
    """A Tailer built in a thread: before this change a FIFO blocked its construction."""
    seen = Seen()
    box: list = []  # type: ignore[type-arg]
    thread = threading.Thread(target=lambda: box.append(Tailer(specs, MemoryCheckpoints(), FakeClock(), seen, use_watchdog=False)), daemon=True)
    thread.start()
    thread.join(HANG_GUARD_S)
    assert box, "the tailer did not start: blocked on a special file"
    return box[0], seen


def test_tailer_refuses_a_fifo_and_dev_zero_and_follows_the_other_log(tmp_path: Path, fifo: str, caplog) -> None:  # type: ignore[no-untyped-def]
    good = tmp_path / "production.log"
    good.write_text("".join(real_lines(30)))
    caplog.set_level(logging.INFO, logger="railwatch.tail")
    t, seen = start_tailer([TailSpec(fifo, start="beginning"), TailSpec("/dev/zero", start="beginning"), TailSpec(str(good), start="beginning")])
    try:
        for _ in range(5):
            t.poll()
        assert seen.events  # the regular log was read
        assert t.refused_sources() == {fifo: "a FIFO (named pipe)", "/dev/zero": "a character device"}
        messages = [r.getMessage() for r in caplog.records]
        assert sum("not a regular file" in m for m in messages) == 2  # once each, not per poll
        assert not any("truncated" in m for m in messages)
    finally:
        t.close()


def test_missing_log_and_missing_directory_are_warned_listed_and_picked_up(tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    later = tmp_path / "production.log"
    in_missing_dir = tmp_path / "not-yet" / "sidekiq.log"
    glob_in_missing_dir = str(tmp_path / "also-not-yet" / "*.log")
    caplog.set_level(logging.INFO, logger="railwatch.tail")
    t, seen = start_tailer([TailSpec(str(later)), TailSpec(str(in_missing_dir)), TailSpec(glob_in_missing_dir)])
    try:
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert f"{later}: missing (no such file); it will be read when it appears" in warnings
        assert f"{in_missing_dir}: missing (its directory {in_missing_dir.parent} does not exist); it will be read when it appears" in warnings
        assert any(m.startswith(f"{glob_in_missing_dir}: missing (its directory") for m in warnings)
        assert t.missing_sources() == sorted([str(later), str(in_missing_dir), glob_in_missing_dir])
        t.poll()
        assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 3  # no repeat per poll

        lines = real_lines(30)
        later.write_text("".join(lines))
        in_missing_dir.parent.mkdir()
        in_missing_dir.write_text("".join(lines))
        for _ in range(5):
            t.poll()
        assert t.missing_sources() == [glob_in_missing_dir]
        read_from = {e.source for e in seen.events}
        assert read_from == {str(later), str(in_missing_dir)}
        first = min(e.line for e in iter_events(str(later)))
        assert min(e.line for e in seen.events if e.source == str(later)) == first  # read from its start
    finally:
        t.close()


MANY_LOGS_CHILD = r"""
import logging, os, resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (160, 160))
from agent.sources.checkpoint import MemoryCheckpoints
from agent.sources.tail import Tailer, TailSpec
from agent.testing import FakeClock
records = []
class Keep(logging.Handler):
    def emit(self, record):
        records.append(record)
logging.getLogger("railwatch.tail").addHandler(Keep(level=logging.WARNING))
directory = sys.argv[1]
events = []
clock = FakeClock()
t = Tailer([TailSpec(os.path.join(directory, "*.log"), start="beginning")], MemoryCheckpoints(), clock, events.append, use_watchdog=False)
for _ in range(3):
    t.poll()
    clock.advance(1.0)
fd = os.open(os.path.join(directory, "000.log"), os.O_RDONLY)  # the rest of the agent still has descriptors
os.close(fd)
print(len(t.logs), len({e.source for e in events}), len(records), t.descriptors_short())
print(records[0].getMessage() if records else "")
"""


def test_many_logs_with_few_descriptors_follow_what_is_open_and_warn_once(tmp_path: Path) -> None:
    text = "".join(real_lines(30))
    for i in range(300):
        (tmp_path / f"{i:03d}.log").write_text(text)
    done = subprocess.run(
        [sys.executable, "-c", MANY_LOGS_CHILD, str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=HANG_GUARD_S, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr
    counts, first_warning = done.stdout.splitlines()
    followed, read_from, warnings, short = counts.split()
    assert followed == "300" and short == "True"
    assert 0 < int(read_from) < 300  # what could be opened is read
    assert warnings == "1"
    assert "raise LimitNOFILE" in first_warning


def test_the_packaged_unit_raises_the_descriptor_limit() -> None:
    settings = dict(l.split("=", 1) for l in UNIT.read_text().splitlines() if "=" in l and not l.startswith("#"))
    assert int(settings["LimitNOFILE"]) >= 65536


# ----- configs -----------------------------------------------------------------------------
def test_config_from_a_device_or_fifo_is_refused_without_reading_it(fifo: str) -> None:
    for path in ("/dev/zero", fifo):
        with pytest.raises(ConfigError, match="not a regular file"):
            read_toml(path)


def test_config_larger_than_the_cap_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "railwatch.toml"
    big.write_text("# padding\n" * 120_000 + "[tail]\n")  # valid TOML, 1.2 MB
    with pytest.raises(ConfigError, match="larger than 1048576 bytes"):
        read_toml(str(big))


def test_config_with_invalid_utf8_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "railwatch.toml"
    bad.write_bytes(b'[app]\nenv = "caf\xe9"\n')
    with pytest.raises(ConfigError, match=r"not UTF-8 \(invalid byte at offset 16\)"):
        read_toml(str(bad))
