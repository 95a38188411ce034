"""The stored e2e log fixtures (tests/fixtures/logs/e2e/) show every failure they are meant to.
Fast: reads files only, no Rails stack needed."""

import importlib.util
import os

import pytest

_spec = importlib.util.spec_from_file_location(
    "railwatch_e2e__load", os.path.join(os.path.dirname(os.path.abspath(__file__)), "_load.py"))
_load = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_load)
capture = _load.load("capture_fixtures")


@pytest.mark.parametrize("setup", capture.SETUPS)
def test_fixture_has_every_signal(setup):
    d = os.path.join(capture.FIXTURES, setup)
    assert os.path.isdir(d), "missing fixture directory %s" % d
    assert capture.check_fixture(setup, d) == []


def test_provenance_written():
    with open(os.path.join(capture.FIXTURES, "PROVENANCE.md"), encoding="utf-8") as f:
        text = f.read()
    for setup in capture.SETUPS:
        assert "### `%s/`" % setup in text
    assert "ruby-sidekiq" in text and "6.4.1" in text
