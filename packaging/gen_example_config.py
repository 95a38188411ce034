#!/usr/bin/env python3
"""Generate packaging/railwatch.example.toml from agent/config.py, so the two cannot drift.

    python3 packaging/gen_example_config.py            # rewrite the file
    python3 packaging/gen_example_config.py --check    # exit 1 if it is out of date

Every key of every section is written with its default, commented out, with the comment
that follows the field in its dataclass (agent/config.py, the incident lifecycle and each
detector's Settings). Convention: ``# text`` is prose, ``#key = value`` / ``#[table]`` is a
line to uncomment; uncommenting all of them gives a configuration agent.config accepts
(tests/packaging/test_example_config.py checks both).
"""
from __future__ import annotations

import inspect
import os
import re
import sys
from dataclasses import MISSING, fields
from typing import Any, Dict, List, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLE = os.path.join(HERE, "railwatch.example.toml")
sys.path.insert(0, os.path.dirname(HERE))

from agent import config as C  # noqa: E402
from agent import tomlwrite  # noqa: E402
from agent.incidents.lifecycle import LifecycleSettings  # noqa: E402
from agent.settings import bounds_of  # noqa: E402
from detectors import REGISTRY  # noqa: E402

HEADER = """\
# railwatch: every configuration key, with its default. Generated from agent/config.py by
# packaging/gen_example_config.py: do not edit by hand, regenerate.
#
# Lines "#key = value" and "#[table]" are settings to uncomment; "# text" explains them.
# A file needs only what differs from the defaults: usually [app] root, and [sinks.*].
# Check a file with `railwatch config check FILE` and `railwatch doctor --config FILE`;
# see the effective configuration with `railwatch config show FILE`. Reload: SIGHUP.
#
# Secrets (tokens, DSNs, webhook URLs, routing keys) need not sit in this file: write
# `<key>_file = "/etc/railwatch/pd.key"` (the file's text, trailing newline stripped; keep
# it 0600/0640) or `<key> = "env:NAME"` (an environment variable, e.g. from the unit's
# EnvironmentFile=). Durations (keys ending in _s) take seconds or "30s", "5m", "1h".
#
# Logrotate: nothing to configure. railwatch follows a log across rename-and-create
# rotation (it finishes the renamed file, then reads the new one from its start) and
# copytruncate (it sees the file got shorter, takes the lines it had not read yet from the
# copy, then reads the file again from 0). Compressed rotated files are never needed.
"""

SECTIONS: List[Tuple[str, Any, str]] = [
    ("app", C.AppConfig, "The Rails app. With root set and no [[sources]], log/<env>.log and log/sidekiq.log are\n"
                         "discovered (Capistrano's shared/log too), and Puma's control app from config/puma.rb."),
    ("tail", C.TailConfig, "How logs are followed."),
    ("metrics", C.MetricsConfig, "railwatch's own /metrics (Prometheus) and /healthz."),
    ("collectors.psutil", C.PsutilConfig, "Puma and Sidekiq processes on this host (memory, CPU, threads, restarts, DB connections)."),
    ("collectors.puma", C.PumaConfig, "Puma's control app /stats (activate_control_app): backlog, pool_capacity per worker."),
    ("collectors.sidekiq", C.SidekiqConfig, "Sidekiq's state in its Redis: queue sizes and latency, retry/dead sets (needs railwatch[redis])."),
    ("collectors.postgres", C.PostgresConfig, "pg_stat_activity and pg_stat_statements (needs railwatch[postgres]; a role with pg_monitor)."),
    ("incidents", LifecycleSettings, "The incident lifecycle: when an incident resolves, reopens, and storm control."),
    ("delivery", C.DeliverySettings, "Outbox delivery: retries with capped backoff; a down sink is probed every few seconds and,\n"
                                     "once back, gets its whole queue at recovery_rate per second (not each row's own backoff)."),
    ("bundle_store", C.BundleStoreSettings, "Upload each bundle to S3-compatible storage (needs railwatch[s3]) and put a pre-signed\n"
                                             "link in every sink's payload. Credentials: these keys, else AWS_* in the environment,\n"
                                             "~/.aws/credentials or the instance role."),
    ("retention", C.RetentionSettings, "Disk bounds: incident directories and bundles (never an open incident's) pruned by age\n"
                                       "and total size, hourly; the store compacted. By hand: railwatch incidents prune --dry-run."),
    ("limits", C.LimitsConfig, "Resource bounds of the daemon."),
    ("state", C.StateConfig, "The incident store, tail positions and bundles. Relative paths are from this file's directory."),
]

DETECTOR_ABOUT = {
    "n_plus_one": "N+1 queries: one SQL shape repeated per row in a request, Bullet's reports, query-count spikes per endpoint.",
    "pool_exhaustion": "Exhausted connection pools (ActiveRecord, Redis, Puma threads) from error lines, job failures and metrics.",
    "sidekiq_failures": "Sidekiq failure patterns: classes failing, retry storms, dead jobs, stuck or slow jobs, crashing processes.",
}

SINK_EXAMPLES = [
    ("local", "Write each incident as JSON (and its bundle) under a directory. This is the default when no sink is set.",
     [("type", "directory"), ("path", "/var/lib/railwatch/incidents")]),
    ("hook", "POST a JSON document to any URL, signed with HMAC-SHA256 (X-Railwatch-Signature) when secret is set.",
     [("type", "webhook"), ("url", "https://example.com/railwatch"), ("secret", "change-me"), ("attach_bundle", False),
      ("headers", {}), ("timeout", 10.0)]),
    ("pager", "PagerDuty Events API v2: trigger on open, resolve on resolve (dedup key = the incident fingerprint).",
     [("type", "pagerduty"), ("routing_key", "0123456789abcdef0123456789abcdef"), ("source", ""), ("component", ""),
      ("group", ""), ("bundle_url", "")]),
    ("alerts", "Prometheus Alertmanager: one alert per open incident, re-sent every refresh_interval_s.",
     [("type", "alertmanager"), ("url", "http://127.0.0.1:9093"), ("runbook_url", ""), ("labels", {}),
      ("expire_after_s", 900.0), ("refresh_interval_s", 60.0)]),
    ("chat", "A Slack incoming webhook (the URL is the secret).",
     [("type", "slack"), ("url", "https://hooks.slack.com/services/T000/B000/XXXX"), ("mention", ""), ("bundle_url", "")]),
]


def field_comments(cls: Any) -> Dict[str, str]:
    """The ``# comment`` after each field in the class's source."""
    out: Dict[str, str] = {}
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return out
    for m in re.finditer(r"^\s+(\w+)\s*:[^\n=]*=[^\n#]*#\s*(.+)$", source, re.M):
        out[m.group(1)] = m.group(2).strip()
    return out


def toml_value(value: Any) -> str:
    """One value on one line (the lines are commented out), quoted by tomli-w."""
    return tomlwrite.value(value)


def default_of(f: Any) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return ""


def allowed(f: Any) -> str:
    """The field's declared bounds in words ("" if none): "[>= 1]", "[0..1]", "[> 0]"."""
    b = bounds_of(f)
    num = lambda x: str(int(x)) if float(x).is_integer() else repr(x)  # noqa: E731
    if b.min is not None and b.max is not None:
        return f"[{num(b.min)}..{num(b.max)}]"
    if b.min is not None:
        return f"[>= {num(b.min)}]"
    if b.max is not None:
        return f"[<= {num(b.max)}]"
    return f"[> {num(b.above)}]" if b.above is not None else ""


def table(name: str, cls: Any, about: str, skip: Tuple[str, ...] = ()) -> List[str]:
    lines = [""] + [f"# {line}" for line in about.splitlines()] + [f"#[{name}]"]
    notes = field_comments(cls)
    for f in fields(cls):
        if f.name in skip:
            continue
        value = toml_value(default_of(f))
        note = " ".join(x for x in (allowed(f), notes.get(f.name, "")) if x)
        lines.append(f"#{f.name} = {value}" + (f"  # {note}" if note else ""))
    return lines


def render() -> str:
    out = HEADER.rstrip("\n").splitlines()
    out += table("app", C.AppConfig, SECTIONS[0][2])
    out += ["", "# Logs to follow (repeat the table for each). Without any, they are discovered from app.root.",
            "# path: a file or a glob; format: force a parser (\"\" sniffs it: " + ", ".join(sorted(C.BY_NAME)) + ");",
            "# start: where a file seen for the first time starts (\"\" takes [tail] start).",
            "#[[sources]]"]
    for f in fields(C.SourceConfig):
        out.append(f"#{f.name} = {toml_value(default_of(f) if f.name != 'path' else '/srv/app/shared/log/production.log')}")
    for name, cls, about in SECTIONS[1:]:
        out += table(name, cls, about)
    out += ["", "# Detectors: each can be switched off (enabled = false) and tuned; the defaults are the tested ones."]
    for name, det in REGISTRY.items():
        doc = DETECTOR_ABOUT.get(name) or (inspect.getdoc(det) or name).splitlines()[0]
        lines = table(f"detectors.{name}", det.settings_type, doc)
        lines.insert(lines.index(f"#[detectors.{name}]") + 1, "#enabled = true")
        out += lines
    out += ["", "# Sinks: where incidents go, any number, each [sinks.<name>] with a type. HTTP sinks also take",
            "# timeout (seconds) and ca_file (a CA bundle path); TLS is always verified. bundle_url: a",
            "# template ({id}, {fingerprint}, {host}) for where you publish bundles."]
    for name, about, options in SINK_EXAMPLES:
        out += ["", f"# {about}", f"#[sinks.{name}]"] + [f"#{k} = {toml_value(v)}" for k, v in options]
    return "\n".join(out) + "\n"


def uncomment(text: str) -> str:
    """The example with every setting switched on (what the test parses)."""
    return "\n".join(line[1:] if re.match(r"^#(\[|\w+ = )", line) else line for line in text.splitlines()) + "\n"


def main(argv: List[str]) -> int:
    text = render()
    if "--check" in argv:
        with open(EXAMPLE, encoding="utf-8") as fh:
            if fh.read() != text:
                print(f"{EXAMPLE} is out of date: run python3 packaging/gen_example_config.py", file=sys.stderr)
                return 1
        return 0
    with open(EXAMPLE, "w", encoding="utf-8") as fh:
        fh.write(text)
    print(f"wrote {EXAMPLE}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
