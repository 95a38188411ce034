"""Secrets from files and the environment, durations with units, journald priorities (issue 17 item 5)."""
from __future__ import annotations

import logging
import os

import pytest

from agent.config import ConfigError, parse
from agent.logsetup import LogfmtFormatter, setup_logging, writes_to_journal

KEY = "0123456789abcdef0123456789abcdef"  # a 32-character PagerDuty integration key


def base(**sinks):
    return {"sources": [{"path": "x.log"}], "sinks": sinks}


def test_a_secret_from_a_file_is_read_and_its_trailing_newline_stripped(tmp_path):
    secret = tmp_path / "pd.key"
    secret.write_text(KEY + "\n")
    secret.chmod(0o600)
    cfg = parse(base(pd={"type": "pagerduty", "routing_key_file": str(secret)}))
    assert cfg.sinks[0].settings.routing_key == KEY


def test_a_secret_from_the_environment(monkeypatch):
    monkeypatch.setenv("RW_TEST_PD_KEY", KEY)
    cfg = parse(base(pd={"type": "pagerduty", "routing_key": "env:RW_TEST_PD_KEY"}))
    assert cfg.sinks[0].settings.routing_key == KEY
    monkeypatch.setenv("RW_TEST_PG", "postgresql://rw:pw@db:5432/app")
    cfg = parse({"sources": [{"path": "x.log"}], "collectors": {"postgres": {"dsn": "env:RW_TEST_PG"}}})
    assert cfg.collectors.postgres.dsn == "postgresql://rw:pw@db:5432/app"


def test_secret_problems_are_named_by_dotted_path_and_never_echo_the_value(tmp_path, monkeypatch):
    monkeypatch.delenv("RW_TEST_MISSING", raising=False)
    (tmp_path / "both").write_text(KEY)
    with pytest.raises(ConfigError) as caught:
        parse({"sources": [{"path": "x.log"}],
               "sinks": {"pd": {"type": "pagerduty", "routing_key": "env:RW_TEST_MISSING"},
                         "pd2": {"type": "pagerduty", "routing_key": KEY, "routing_key_file": str(tmp_path / "both")}},
               "collectors": {"sidekiq": {"redis_url_file": str(tmp_path / "nope")}}})
    errors = "\n".join(caught.value.errors)
    assert "sinks.pd.routing_key: environment variable RW_TEST_MISSING is not set" in errors
    assert "sinks.pd2.routing_key_file: give routing_key or routing_key_file, not both" in errors
    assert f"collectors.sidekiq.redis_url_file: cannot read {tmp_path / 'nope'}" in errors
    assert KEY not in errors


def test_a_world_readable_secret_file_is_used_with_a_warning(tmp_path, caplog):
    secret = tmp_path / "token"
    secret.write_text("puma-token\n")
    secret.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="railwatch.config"):
        cfg = parse({"sources": [{"path": "x.log"}], "collectors": {"puma": {"token_file": str(secret)}}})
    assert cfg.collectors.puma.token == "puma-token"
    assert "collectors.puma.token_file" in caplog.text and "world-readable" in caplog.text


def test_a_file_form_is_only_for_secrets():
    with pytest.raises(ConfigError) as caught:
        parse({"sources": [{"path": "x.log"}], "tail": {"start_file": "/etc/hostname"}})
    assert "tail.start_file: unknown option" in caught.value.errors[0]


def test_durations_take_units_everywhere_a_key_ends_in_s():
    cfg = parse({"sources": [{"path": "x.log"}], "limits": {"stall_after_s": "5m", "sink_failing_after_s": "1h"},
                 "collectors": {"psutil": {"interval_s": "30s"}}})
    assert (cfg.limits.stall_after_s, cfg.limits.sink_failing_after_s, cfg.collectors.psutil.interval_s) == (300.0, 3600.0, 30.0)
    assert parse({"sources": [{"path": "x.log"}], "limits": {"stall_after_s": 90}}).limits.stall_after_s == 90
    with pytest.raises(ConfigError) as caught:
        parse({"sources": [{"path": "x.log"}], "limits": {"stall_after_s": "5 minutes"}})
    assert caught.value.errors[0] == ("limits.stall_after_s: expected a number, got '5 minutes' "
                                      "(seconds, or a duration such as 30s, 5m, 1h)")


def _record(level: int) -> logging.LogRecord:
    return logging.LogRecord("railwatch.tail", level, __file__, 1, "lag on %s", ("production.log",), None)


def test_journald_priority_prefix_only_when_stderr_is_the_journal(tmp_path):
    fmt = LogfmtFormatter(priority_prefix=True)
    assert fmt.format(_record(logging.WARNING)).startswith("<4>ts=")
    assert fmt.format(_record(logging.ERROR)).startswith("<3>")
    assert fmt.format(_record(logging.INFO)).startswith("<6>")
    assert fmt.format(_record(logging.DEBUG)).startswith("<7>")
    assert LogfmtFormatter().format(_record(logging.WARNING)).startswith("ts=")
    with open(tmp_path / "stderr", "w") as fh:
        st = os.fstat(fh.fileno())
        assert writes_to_journal(fh, {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
        assert not writes_to_journal(fh, {"JOURNAL_STREAM": "8:12345"})  # inherited, but redirected elsewhere
        assert not writes_to_journal(fh, {})


def test_setup_logging_writes_priorities_to_the_journal_stream(tmp_path):
    loggers = [logging.getLogger(n) for n in ("railwatch", "agent", "detectors")]
    saved = [(lg.handlers[:], lg.level, lg.propagate) for lg in loggers]
    with open(tmp_path / "journal", "w") as fh:
        st = os.fstat(fh.fileno())
        setup_logging("info", stream=fh, environ={"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
        try:
            logging.getLogger("railwatch.tail").warning("source lagging")
        finally:  # as it was, for the tests after this one (caplog)
            for lg, (handlers, level, propagate) in zip(loggers, saved):
                lg.handlers[:], lg.level, lg.propagate = handlers, level, propagate
    line = (tmp_path / "journal").read_text().splitlines()[0]
    assert line.startswith("<4>ts=") and 'msg="source lagging"' in line
