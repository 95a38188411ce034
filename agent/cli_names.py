"""Names the command line needs before it imports the engine.

``railwatch scan --help`` must start in well under 0.1 s (issue 18), so the option
definitions cannot import every parser (for ``--log-format``'s choices) or the config
module (for the state directory's default). tests/test_cli.py checks that these agree
with ``agent.parsers.BY_NAME`` and ``agent.config``.
"""
from __future__ import annotations

LOG_FORMAT_NAMES = ("bullet", "lograge", "pgbouncer", "postgres", "puma", "rails", "semantic", "sidekiq")
DEFAULT_STATE_DIR = "/var/lib/railwatch"
