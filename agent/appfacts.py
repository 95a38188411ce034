"""Read what a Rails app's own config says about its connection capacity.

``load_app_facts(root, env)`` reads, from a Rails app root (or a Capistrano deploy
root, where the live release is ``root/current``):

* ``config/database.yml``, production section: ``pool`` (Rails 8.1: ``max_connections``)
  and ``checkout_timeout``. ``default: &default`` anchors with ``<<: *default`` merges,
  ERB such as ``<%= ENV.fetch("RAILS_MAX_THREADS") { 5 } %>`` and multi-database
  ``production: primary: …`` (primary is taken). ``DATABASE_URL``'s ``pool=`` wins, as in Rails.
* ``config/puma.rb``: ``threads min, max`` (through ``threads_count = ENV.fetch(…)``
  assignments) and ``workers N`` / ``WEB_CONCURRENCY``.
* ``config/sidekiq.yml``: ``:concurrency:`` / ``concurrency:``, with the
  ``production:`` override Sidekiq applies.
* ``REVISION``: the deployed revision, its mtime as the deploy time.

No YAML library (not a dependency) and no Ruby: a line-based reader covers the
shapes Rails and Sidekiq generate. ERB and Ruby are evaluated only for the small
expression language those files use (numbers, strings, ``ENV.fetch``, ``ENV[]``,
``||``, ``Integer()``, ``.to_i``, + - * /); anything else leaves the fact unknown.
Environment values come from the ``env`` mapping the caller passes (the CLI passes
the app's environment if it knows it); when an ERB default was used because a
variable is unset, a note says so, since the app's real environment may differ.
Nothing here raises on a bad or missing file: what could not be read becomes a note.
"""
from __future__ import annotations

import os
import re
from typing import Any, Dict, List, Mapping, Optional, Tuple
from urllib.parse import parse_qs, urlsplit

from agent.appfacts_syntax import RubyExpr, Unknown, YamlMap, read_yaml, render_erb, split_args, strip_comment, unwrap_parens
from agent.appfacts_syntax import number as as_number
from detectors.base import AppFacts

__all__ = ["load_app_facts"]

MAX_CONFIG_BYTES = 1_000_000  # a config file bigger than this is not a config file


# --------------------------------------------------------------------------- the three files

class _Reader:
    """Collects notes while reading one app; one instance per ``load_app_facts`` call."""

    def __init__(self, root: str, env: Mapping[str, str]) -> None:
        self.root, self.env = root, env
        self.notes: List[str] = []

    def text(self, rel: str) -> Optional[str]:
        path = os.path.join(self.root, rel)
        try:
            if os.path.getsize(path) > MAX_CONFIG_BYTES:
                self.notes.append(f"{rel}: larger than {MAX_CONFIG_BYTES} bytes, not read")
                return None
            with open(path, encoding="utf-8", errors="replace") as fh:
                return fh.read()
        except FileNotFoundError:
            self.notes.append(f"{rel}: not found")
        except OSError as exc:
            self.notes.append(f"{rel}: cannot read ({exc.strerror or exc})")
        return None

    def scalar(self, rel: str, what: str, raw: Any, want: type) -> Optional[float]:
        """Evaluate a YAML scalar (maybe ERB) to a number, noting what was assumed."""
        if raw is None or isinstance(raw, YamlMap):
            return None
        unset: List[str] = []
        try:
            rendered = render_erb(str(raw), RubyExpr(self.env, {}, unset))
        except Unknown:
            self.notes.append(f"{rel}: {what} is {raw!r}, which this reader cannot evaluate")
            return None
        number = as_number(rendered)
        if number is None:
            self.notes.append(f"{rel}: {what} is {raw!r}, not a number")
            return None
        for name in unset:
            self.notes.append(f"{rel}: {what} depends on ENV {name}, unset here: took the default {number}")
        return want(number)

    def database(self) -> Tuple[Optional[int], Optional[float]]:
        rel = "config/database.yml"
        text = self.text(rel)
        pool: Optional[int] = None
        timeout: Optional[float] = None
        if text is not None:
            prod = read_yaml(text).get("production")
            if not isinstance(prod, YamlMap):
                self.notes.append(f"{rel}: no production section")
            else:
                prod = self._primary(prod, rel)
                key = "max_connections" if prod.get("max_connections") is not None else "pool"
                pool = self.scalar(rel, f"production {key}", prod.get(key), int)  # type: ignore[assignment]
                timeout = self.scalar(rel, "production checkout_timeout", prod.get("checkout_timeout"), float)
                if prod.get(key) is None:
                    self.notes.append(f"{rel}: production has no pool/max_connections: Rails' default is 5")
        url_pool = _url_pool(self.env.get("DATABASE_URL", ""))
        if url_pool is not None:
            self.notes.append(f"DATABASE_URL sets pool={url_pool}, which Rails merges over database.yml")
            pool = url_pool
        return pool, timeout

    def _primary(self, prod: YamlMap, rel: str) -> YamlMap:
        own = ("adapter", "database", "url", "pool", "max_connections", "host")
        if any(prod.get(k) is not None for k in own):
            return prod
        primary = prod.get("primary")
        if isinstance(primary, YamlMap):
            return primary
        for name, child in prod.items.items():
            if isinstance(child, YamlMap):
                self.notes.append(f"{rel}: production has no primary database; read {name!r}")
                return child
        return prod

    def puma(self) -> Tuple[Optional[int], Optional[int]]:
        rel = "config/puma.rb"
        text = self.text(rel)
        if text is None:
            return None, None
        scope: Dict[str, Any] = {}
        max_threads: Optional[int] = None
        workers: Optional[int] = 0  # no `workers` line: Puma runs in single mode
        workers_raw = ""
        found_threads = False
        for raw in text.splitlines():
            line = strip_comment(raw.strip())
            if not line:
                continue
            assign = re.match(r"^([a-z_]\w*)\s*=(?!=)\s*(.+)$", line)
            if assign:
                value = self._ruby(assign.group(2), scope)
                if value is not None:
                    scope[assign.group(1)] = value
                continue
            call = re.match(r"^(threads|workers)\b\s*(.+?)(?:\s+(if|unless)\s+(.+))?$", line)
            if not call:
                continue
            if call.group(3) and not self._condition(call.group(3), call.group(4), scope):
                continue
            args = [self._ruby(a, scope) for a in split_args(unwrap_parens(call.group(2)))]
            numbers = [as_number(a) for a in args]
            if call.group(1) == "threads":
                found_threads = True
                max_threads = int(numbers[-1]) if numbers and numbers[-1] is not None else None
                if max_threads is None:
                    self.notes.append(f"{rel}: cannot evaluate `{line}`")
            else:
                workers = int(numbers[0]) if numbers and numbers[0] is not None else None
                workers_raw = line
        if not found_threads:
            self.notes.append(f"{rel}: no threads setting found")
        if workers is None:
            workers = self._workers_fallback(rel, text, workers_raw)
        return max_threads, workers

    def _workers_fallback(self, rel: str, text: str, line: str) -> Optional[int]:
        # The Rails 7.1+ template computes the count over several lines (`if … == "auto"`):
        # take WEB_CONCURRENCY, else the template's default for it.
        env_value = as_number(self.env.get("WEB_CONCURRENCY", ""))
        if env_value is not None:
            return int(env_value)
        m = re.search(r"""ENV\.fetch\(\s*["']WEB_CONCURRENCY["']\s*(?:,\s*(\d+)\s*\)|\)\s*\{\s*(\d+)\s*\})""", text)
        if m:
            n = int(m.group(1) or m.group(2))
            self.notes.append(f"{rel}: workers depends on ENV WEB_CONCURRENCY, unset here: took the default {n}")
            return n
        why = "the number of CPUs" if "processor_count" in text else "not a plain number"
        self.notes.append(f"{rel}: cannot evaluate `{line}` ({why} when WEB_CONCURRENCY is unset)")
        return None

    def _ruby(self, expr: str, scope: Dict[str, Any]) -> Any:
        unset: List[str] = []
        try:
            return RubyExpr(self.env, scope, unset).evaluate(expr)
        except (Unknown, ValueError, TypeError):
            return None

    def _condition(self, word: str, expr: str, scope: Dict[str, Any]) -> bool:
        try:
            value = RubyExpr(self.env, scope, []).evaluate(expr)
        except (Unknown, ValueError, TypeError):
            return True  # cannot tell: assume the setting applies
        truthy = value is not None and value is not False
        return truthy if word == "if" else not truthy

    def sidekiq(self) -> Optional[int]:
        rel = "config/sidekiq.yml"
        if not os.path.exists(os.path.join(self.root, rel)):
            self.notes.append(f"{rel}: not found (Sidekiq's default concurrency is 10 up to 6.x, 5 from 7.0)")
            return None
        text = self.text(rel)
        if text is None:
            return None
        config = read_yaml(text)
        prod = config.get("production")
        raw = prod.get("concurrency") if isinstance(prod, YamlMap) else None
        raw = raw if raw is not None else config.get("concurrency")
        if raw is None:
            self.notes.append(f"{rel}: no concurrency setting (Sidekiq's default is 10 up to 6.x, 5 from 7.0)")
            return None
        return self.scalar(rel, "concurrency", raw, int)  # type: ignore[return-value]

    def revision(self) -> Tuple[str, Optional[float]]:
        path = os.path.join(self.root, "REVISION")
        try:
            with open(path, encoding="utf-8", errors="replace") as fh:
                first = fh.read(200).strip().splitlines()
            return (first[0].strip() if first else ""), os.stat(path).st_mtime
        except FileNotFoundError:
            self.notes.append("REVISION: not found (deploy time unknown)")
        except OSError as exc:
            self.notes.append(f"REVISION: cannot read ({exc.strerror or exc})")
        return "", None


def _url_pool(url: str) -> Optional[int]:
    if "pool=" not in url:
        return None
    try:
        values = parse_qs(urlsplit(url).query).get("pool", [])
    except ValueError:
        return None
    n = as_number(values[0]) if values else None
    return int(n) if n is not None else None


def load_app_facts(root: str, env: Optional[Mapping[str, str]] = None) -> AppFacts:
    """Read an app's pool, thread and concurrency settings; never raises on bad files."""
    env = env if env is not None else {}
    if os.path.isdir(os.path.join(root, "current", "config")):
        root = os.path.join(root, "current")  # Capistrano: releases/…, current -> live release
    reader = _Reader(root, env)
    if not os.path.isdir(root):
        return AppFacts(root=root, notes=(f"{root}: not a directory",))
    pool, timeout = reader.database()
    max_threads, workers = reader.puma()
    concurrency = reader.sidekiq()
    revision, revision_time = reader.revision()
    return AppFacts(
        root=root,
        db_pool=pool,
        db_checkout_timeout=timeout,
        puma_max_threads=max_threads,
        puma_workers=workers,
        sidekiq_concurrency=concurrency,
        revision=revision,
        revision_time=revision_time,
        notes=tuple(reader.notes),
    )
