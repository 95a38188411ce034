"""Regression-test skeletons for a bundle's ``tests/``: a test that fails while the bug is there.

Written for what the incident saw, in the app's framework: Minitest by default, RSpec when
the app root has ``spec/``. Every value comes from the incident (endpoint, request path,
SQL shape, association, job class, scrubbed job arguments, pool size, Puma threads); what
the logs cannot know (fixtures, factories, sign-in) is marked ``FILL IN``.

    n_plus_one        an integration test requesting the endpoint, counting SQL queries with
                      an ActiveSupport::Notifications "sql.active_record" subscriber (Rails 6.1+)
    sidekiq_failures  performs the job class with the arguments from the evidence, expecting
                      no error of the incident's class
    pool_exhaustion   fires more simultaneous requests at the connection-holding endpoint than
                      the pool allows and expects none to time out

The Minitest files ``require "test_helper"`` like any Rails test; ``tests/e2e`` proves each
one fails against the reference app's bug and passes on its fix.
"""
from __future__ import annotations

import json
import os
import re
from typing import Any, List, Mapping, Optional, Sequence, Tuple

from agent.incidents.model import Incident
from detectors.base import AppFacts

STARTED = re.compile(r'Started (GET|POST|PUT|PATCH|DELETE|HEAD) "([^"]+)"')
LOGRAGE = re.compile(r"\bmethod=(GET|POST|PUT|PATCH|DELETE|HEAD) path=(\S+)")
BULLET_REQUEST = re.compile(r"^(GET|POST|PUT|PATCH|DELETE|HEAD) (/\S*)$")  # Bullet's own line: "GET /posts"
ARGS = re.compile(r'"args":(\[.*?\])(?:,"class"|,"jid"|,"queue"|,"created_at")')


def regression_tests(inc: Incident, facts: AppFacts) -> List[Tuple[str, str]]:
    """``[(path inside the bundle, text)]``; empty when the incident has nothing to reproduce."""
    rspec = bool(facts.root) and os.path.isdir(os.path.join(facts.root, "spec"))
    subject = inc.subject
    if inc.detector == "n_plus_one" and subject.get("endpoint") and "problem" not in subject:
        return [_file(rspec, "integration", _slug(subject["endpoint"]) + "_n_plus_one", n_plus_one_test(inc, rspec))]
    if inc.detector == "sidekiq_failures" and subject.get("job_class") and set(subject) <= {"job_class", "error_class", "queue"}:
        return [_file(rspec, "jobs", _slug(subject["job_class"]) + "_regression", job_test(inc, rspec))]
    if inc.detector == "pool_exhaustion" and subject.get("pool") == "database":
        return [_file(rspec, "integration", "connection_pool_exhaustion", pool_test(inc, facts, rspec))]
    return []


def _file(rspec: bool, kind: str, name: str, text: str) -> Tuple[str, str]:
    if rspec:
        return (f"tests/spec/{'requests' if kind == 'integration' else kind}/{name}_spec.rb", text)
    return (f"tests/test/{kind}/{name}_test.rb", text)


# ---------------------------------------------------------------------------- N+1

def request_path(inc: Incident) -> Tuple[str, str]:
    """(method, path) of a request the incident's evidence shows, else ("GET", "")."""
    for e in inc.finding.get("evidence", []) or []:
        for line in str(e.get("text", "")).splitlines():
            m = STARTED.search(line) or LOGRAGE.search(line) or BULLET_REQUEST.match(line.strip())
            if m:
                return m.group(1), m.group(2)
    for item in (inc.finding.get("details") or {}).get("evidence_items", []) or []:
        m = BULLET_REQUEST.match(str(item.get("request", "")) if isinstance(item, dict) else "")
        if m:
            return m.group(1), m.group(2)
    return "GET", ""


def n_plus_one_test(inc: Incident, rspec: bool) -> str:
    d = inc.finding.get("details") or {}
    endpoint = inc.subject["endpoint"]
    method, path = request_path(inc)
    seen = d.get("queries_per_affected_request")
    repeats = d.get("repeats_per_request_max") or 0
    association = str(d.get("association") or "")
    fix = str(d.get("fix") or "")
    shapes = [str(s) for s in d.get("sql_shapes") or []][:3]
    bound = 10  # a page that eager-loads needs a handful of queries; the N+1 needed one per row
    header = _header(inc, [
        f"N+1 on {endpoint}: {_n(seen)} SQL queries per request seen"
        + (f", one shape repeated up to {repeats} times" if repeats else "") + ".",
        *(f"Repeated SQL: {s[:200]}" for s in shapes),
        f"Association to preload: {association or 'FILL IN (see the repeated SQL above)'}"
        + (f"  (fix: {fix})" if fix else ""),
        "",
        "FILL IN: fixtures/factories creating at least 10 parent rows, each with its associated row,",
        "so the N+1 shows; sign-in if the endpoint needs it"
        + ("; the request path (railwatch saw none)" if not path else f"; the path if {path} needs other params") + ".",
        f"MAX_QUERIES: the fixed endpoint's query count with a little room ({bound} by default).",
    ])
    verb = method.lower()
    p = path or "/FILL_IN_PATH"
    what = f"{method} {p} runs at most MAX_QUERIES SQL queries" + (f" (preloads {association})" if association else "")
    counter = """    queries = []
    callback = lambda do |_name, _start, _finish, _id, payload|
      next if payload[:cached] || %w[SCHEMA TRANSACTION].include?(payload[:name])

      queries << payload[:sql]
    end
    ActiveSupport::Notifications.subscribed(callback, "sql.active_record") { yield }
    queries"""
    if rspec:
        return header + f"""require "rails_helper"

RSpec.describe "{endpoint} N+1 regression", type: :request do
  MAX_QUERIES = {bound}

  def sql_queries_during
{_indent(counter, -2)}
  end

  it "{_q(what)}" do
    queries = sql_queries_during {{ {verb} "{_q(p)}" }}
    expect(response).to have_http_status(:success)
    expect(queries.size).to be <= MAX_QUERIES, "{_q(endpoint)} ran #{{queries.size}} queries:\\n#{{queries.join("\\n")}}"
  end
end
"""
    return header + f"""require "test_helper"

class {_const(endpoint)}NPlusOneTest < ActionDispatch::IntegrationTest
  MAX_QUERIES = {bound}

  test "{_q(what)}" do
    queries = sql_queries_during {{ {verb} "{_q(p)}" }}
    assert_response :success
    assert_operator queries.size, :<=, MAX_QUERIES,
                    "{_q(endpoint)} ran #{{queries.size}} queries (N+1?):\\n#{{queries.first(40).join("\\n")}}"
  end

  private

  def sql_queries_during
{counter}
  end
end
"""


# ---------------------------------------------------------------------------- Sidekiq

def job_arguments(inc: Incident) -> Optional[List[Any]]:
    """The (scrubbed) arguments of a failed run in the evidence; ActiveJob's wrapper unwrapped."""
    for e in inc.finding.get("evidence", []) or []:
        m = ARGS.search(str(e.get("text", "")))
        if not m:
            continue
        try:
            args = json.loads(m.group(1))
        except ValueError:
            continue
        if isinstance(args, list) and len(args) == 1 and isinstance(args[0], dict) and "arguments" in args[0]:
            args = args[0]["arguments"]  # ActiveJob::QueueAdapters::SidekiqAdapter::JobWrapper
        return args if isinstance(args, list) else None
    return None


def job_test(inc: Incident, rspec: bool) -> str:
    job = inc.subject["job_class"]
    error = inc.subject.get("error_class") or "StandardError"
    args = job_arguments(inc)
    d = inc.finding.get("details") or {}
    header = _header(inc, [
        f"{job} failed with {error} ({d.get('occurrences_total') or inc.count} failure(s) seen).",
        "Arguments: " + ("from a failed run in the logs (scrubbed: [FILTERED] values need real ones)." if args is not None
                         else "FILL IN: railwatch saw none in the logs."),
        "FILL IN: the records those arguments refer to (fixtures/factories), and stubs for external",
        "services the job calls (the failure may come from one: stub it to answer as it did).",
    ])
    ruby_args = _ruby(args) if args is not None else "[] # FILL IN"
    perform = f"""job = {job}
    args = {ruby_args}
    if defined?(ActiveJob::Base) && job < ActiveJob::Base
      job.perform_now(*args)
    else
      job.new.perform(*args) # Sidekiq::Worker: runs the job inline, no Redis
    end"""
    if rspec:
        return header + f"""require "rails_helper"

RSpec.describe {job} do
  it "runs without {_q(error)}" do
    expect do
      {_indent(perform, 2).lstrip()}
    end.not_to raise_error({error})
  end
end
"""
    return header + f"""require "test_helper"

class {_const(job)}RegressionTest < ActiveSupport::TestCase
  test "{_q(job)} runs without {_q(error)}" do
    {perform}
  rescue {error} => e
    flunk "{_q(job)} still raises {_q(error)}: #{{e.message}}"
  end
end
"""


# ---------------------------------------------------------------------------- pool

def pool_test(inc: Incident, facts: AppFacts, rspec: bool) -> str:
    d = inc.finding.get("details") or {}
    pool = _first_int(d.get("pool_size_in_message")) or facts_int(facts, "db_pool")
    threads = facts_int(facts, "puma_max_threads")
    holder = _holding_path(d)
    concurrency = threads if threads and (not pool or threads > pool) else (pool + 2 if pool else 8)
    header = _header(inc, [
        f"The database connection pool ran out: {d.get('errors') or inc.count} checkout timeout(s)"
        + (f", pool of {pool}" if pool else "") + (f", {threads} Puma threads" if threads else "") + ".",
        f"Connection-holding endpoint: {holder or 'FILL IN (railwatch saw no holder request)'}.",
        f"CONCURRENCY: the requests one process serves at once (Puma's threads{f': {threads}' if threads else ''}); "
        "the test fails while the pool is smaller.",
        "FILL IN: data the endpoint needs; the test runs outside transactions (threads need their own connections).",
    ])
    p = holder or "/FILL_IN_PATH"
    fire = f"""ActiveRecord::Base.connection_pool.release_connection # this thread's own must not count against the pool
    app = Rails.application
    statuses = Array.new(CONCURRENCY)
    timeouts = Queue.new
    threads = Array.new(CONCURRENCY) do |i|
      Thread.new do
        statuses[i] = Rack::MockRequest.new(app).get(PATH).status
      rescue ActiveRecord::ConnectionTimeoutError => e
        timeouts << e
      end
    end
    threads.each(&:join)
    failed = statuses.count {{ |s| s.nil? || s >= 500 }}"""
    if rspec:
        return header + f"""require "rails_helper"

RSpec.describe "database connection pool under {concurrency} simultaneous requests", type: :request do
  CONCURRENCY = {concurrency}
  PATH = "{_q(p)}"
  self.use_transactional_tests = false

  it "serves every request without a checkout timeout" do
    {_indent(fire, 2).lstrip()}
    expect(timeouts.size + failed).to eq(0), "#{{timeouts.size + failed}} of #{{CONCURRENCY}} requests failed " \\
      "(pool #{{ActiveRecord::Base.connection_pool.size}}): ActiveRecord::ConnectionTimeoutError?"
  end
end
"""
    return header + f"""require "test_helper"

class ConnectionPoolExhaustionTest < ActionDispatch::IntegrationTest
  CONCURRENCY = {concurrency}
  PATH = "{_q(p)}"
  self.use_transactional_tests = false # each thread must check out its own connection

  test "{concurrency} simultaneous requests to {_q(p)} get a connection each" do
    {fire}
    assert_equal 0, timeouts.size + failed,
                 "#{{timeouts.size + failed}} of #{{CONCURRENCY}} requests failed (pool " \\
                 "#{{ActiveRecord::Base.connection_pool.size}}): ActiveRecord::ConnectionTimeoutError?"
  end
end
"""


def _holding_path(details: Mapping[str, Any]) -> str:
    for h in details.get("holders") or []:
        if isinstance(h, dict):
            path = h.get("path") or ""
            if path:
                return str(path)
    return ""


def facts_int(facts: AppFacts, name: str) -> Optional[int]:
    value = getattr(facts, name, None)
    try:
        return int(value) if value else None
    except (TypeError, ValueError):
        return None


# ---------------------------------------------------------------------------- helpers

def _header(inc: Incident, lines: Sequence[str]) -> str:
    out = [f"# Regression test written by railwatch for incident {inc.id}", f"# {inc.title}", "#"]
    out += [("# " + line).rstrip() for line in lines]
    out += ["#", "# It must FAIL on the code that caused the incident and PASS once it is fixed.", ""]
    return "\n".join(out) + "\n"


def _first_int(value: Any) -> Optional[int]:
    if isinstance(value, list) and value:
        value = value[0]
    try:
        return int(value) if value else None
    except (TypeError, ValueError):
        return None


def _slug(name: str) -> str:
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name.replace("::", "_").replace("#", "_"))
    return re.sub(r"[^a-z0-9_]+", "_", s.lower()).strip("_") or "incident"


def _const(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", name) if part) or "Incident"


def _q(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("#{", "\\#{")


def _ruby(value: Any) -> str:
    """A JSON value as a Ruby literal (strings double-quoted, no interpolation)."""
    if isinstance(value, list):
        return "[" + ", ".join(_ruby(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_ruby(str(k))} => {_ruby(v)}" for k, v in value.items()) + " }" if value else "{}"
    if isinstance(value, str):
        return '"' + _q(value) + '"'
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


def _n(value: Any) -> str:
    return "?" if value is None else f"{float(value):g}"


def _indent(text: str, by: int) -> str:
    if by >= 0:
        return "\n".join((" " * by + line) if line else line for line in text.splitlines())
    return "\n".join(line[-by:] if line.startswith(" " * -by) else line for line in text.splitlines())
