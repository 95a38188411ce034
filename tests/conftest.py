"""Shared fixtures: real loopback HTTP targets (tests/sinks/targets.py) for the sink and incident tests."""
from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path

import pytest

_NAME = "railwatch_sink_targets"


def load_targets():  # type: ignore[no-untyped-def]
    if _NAME not in sys.modules:
        spec = importlib.util.spec_from_file_location(_NAME, Path(__file__).resolve().parent / "sinks" / "targets.py")
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        sys.modules[_NAME] = module
        spec.loader.exec_module(module)  # type: ignore[union-attr]
    return sys.modules[_NAME]


@pytest.fixture
def targets():  # type: ignore[no-untyped-def]
    return load_targets()


@pytest.fixture
def target(targets):  # type: ignore[no-untyped-def]
    """start(kind, secret=None) -> a running Target; all are stopped after the test."""
    started = []

    def start(kind, secret=None):  # type: ignore[no-untyped-def]
        t = targets.start_target(kind, secret)
        started.append(t)
        return t

    yield start
    for t in started:
        t.stop()


_OWN_LOGGERS = ("railwatch", "agent", "detectors")


@pytest.fixture(autouse=True)
def _railwatch_logging_as_it_was():  # type: ignore[no-untyped-def]
    """A command run in-process (``run`` through click's CliRunner) sets up railwatch's own
    logging (handlers on a stream that closes, propagate off); put it back after each test so
    the next test's caplog still sees the railwatch loggers."""
    loggers = [logging.getLogger(n) for n in _OWN_LOGGERS]
    saved = [(lg.handlers[:], lg.level, lg.propagate) for lg in loggers]
    yield
    for lg, (handlers, level, propagate) in zip(loggers, saved):
        lg.handlers[:], lg.level, lg.propagate = handlers, level, propagate
