"""Reading inputs: rotation order, compression, and damaged input that must not stop a scan."""
from __future__ import annotations

import bz2
import gzip
import os
from pathlib import Path

from agent.sources.files import MAX_LINE, ReadStats, expand, group_files, read_lines, rotation_key

RAILS = Path(__file__).resolve().parents[1] / "fixtures" / "logs" / "rails" / "rails52_production.log"


def test_rotated_files_of_one_log_are_read_oldest_first(tmp_path):
    names = ["production.log", "production.log.1", "production.log.2.gz", "production.log.10.gz", "sidekiq.log"]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    files, problems = expand([str(tmp_path / n) for n in names])
    assert problems == []
    groups = group_files(files)
    assert [os.path.basename(f.path) for f in groups[str(tmp_path / "production.log")]] == [
        "production.log.10.gz", "production.log.2.gz", "production.log.1", "production.log",
    ]
    assert list(groups)[1].endswith("sidekiq.log")


def test_dated_rotations_sort_by_date_before_the_live_file():
    assert rotation_key("log/production.log-20241101.gz")[0] == "log/production.log"
    assert rotation_key("log/production.log-20241101.gz")[1] < rotation_key("log/production.log-20241102")[1] < rotation_key("log/production.log")[1]


def test_directories_and_globs_expand_to_log_files_only(tmp_path):
    (tmp_path / "production.log").write_text("x\n")
    (tmp_path / "production.log.1.gz").write_bytes(gzip.compress(b"x\n"))
    (tmp_path / "notes.md").write_text("not a log\n")
    (tmp_path / ".hidden.log").write_text("x\n")
    files, problems = expand([str(tmp_path)])
    assert sorted(os.path.basename(f.path) for f in files) == ["production.log", "production.log.1.gz"]
    files, _ = expand([str(tmp_path / "production.log*")])
    assert len(files) == 2


def test_missing_paths_empty_directories_and_empty_globs_are_one_line_problems(tmp_path):
    (tmp_path / "empty").mkdir()
    files, problems = expand([str(tmp_path / "nope.log"), str(tmp_path / "empty"), str(tmp_path / "*.nothing")])
    assert files == []
    assert problems == [
        f"{tmp_path / 'nope.log'}: no such file or directory",
        f"{tmp_path / 'empty'}: directory holds no log files (*.log, *.log.N, *.gz, *.bz2)",
        f"{tmp_path / '*.nothing'}: no file matches this pattern",
    ]
    assert all("\n" not in p for p in problems)


def test_gzip_and_bzip2_are_read_by_their_magic_not_their_name(tmp_path):
    data = RAILS.read_bytes()
    (tmp_path / "a.log").write_bytes(gzip.compress(data))  # a lying name
    (tmp_path / "b.log.bz2").write_bytes(bz2.compress(data))
    expected = data.decode().splitlines()
    for name in ("a.log", "b.log.bz2"):
        stats = ReadStats()
        assert list(read_lines(str(tmp_path / name), stats)) == expected
        assert stats.problems == []


def test_a_truncated_gzip_yields_the_lines_before_the_damage(tmp_path):
    data = b"".join(b"line %d\n" % i for i in range(200_000))
    packed = gzip.compress(data)
    broken = tmp_path / "production.log.2.gz"
    broken.write_bytes(packed[: len(packed) // 2])
    stats = ReadStats()
    lines = list(read_lines(str(broken), stats))
    assert 1000 < len(lines) < 200_000
    assert lines[0] == "line 0" and lines[1000] == "line 1000"
    (problem,) = stats.problems
    assert "damaged or truncated" in problem and "\n" not in problem


def test_an_overlong_line_is_cut_and_reading_goes_on(tmp_path):
    log = tmp_path / "big.log"
    with open(log, "wb") as fh:
        fh.write(b"first\n")
        fh.write(b"x" * (50 * 1024 * 1024) + b"\n")  # a 50 MB line
        fh.write(b"last\n")
    stats = ReadStats()
    lines = list(read_lines(str(log), stats))
    assert [len(l) for l in lines] == [5, MAX_LINE, 4]
    assert stats.cut_lines == 1 and stats.lines == 3


def test_invalid_utf8_and_binary_garbage_are_replaced_not_raised(tmp_path):
    log = tmp_path / "bad.log"
    log.write_bytes(b"ok \xff\xfe line\n\x00\x01\x02\x03\xc3\x28\nlast")
    stats = ReadStats()
    lines = list(read_lines(str(log), stats))
    assert lines[0] == "ok \ufffd\ufffd line" and lines[2] == "last"
    assert stats.problems == []


def test_crlf_line_endings_are_removed(tmp_path):
    log = tmp_path / "win.log"
    log.write_bytes(b"a\r\nb\r\n")
    assert list(read_lines(str(log), ReadStats())) == ["a", "b"]
