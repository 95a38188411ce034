"""The scrubber: every planted secret goes, real log lines without secrets stay as they were."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.events import Evidence, Finding, Triage
from agent.scrub import REDACTED, Scrubber, card_like, luhn_ok, scrub, scrub_finding, scrub_obj

FIXTURES = Path(__file__).resolve().parent / "fixtures"
SECRETS = FIXTURES / "secrets"
RAILS = FIXTURES / "logs" / "rails"
PLANTED = [p for p in (SECRETS / "PLANTED.txt").read_text().splitlines() if p]
CORPUS = ["planted.log", "app/config/database.yml", "app/config/puma.rb", "app/config/sidekiq.yml", "agent.toml"]


@pytest.mark.parametrize("name", CORPUS)
def test_no_planted_secret_survives_scrubbing_a_whole_file(name):
    text = (SECRETS / name).read_text()
    assert any(p in text for p in PLANTED)  # the corpus really plants something here
    out, counts = scrub(text)
    assert [p for p in PLANTED if p in out] == []
    assert sum(counts.values()) > 0


def test_no_planted_secret_survives_scrubbing_the_log_line_by_line():
    out = "\n".join(scrub(line)[0] for line in (SECRETS / "planted.log").read_text().splitlines())
    assert [p for p in PLANTED if p in out] == []


@pytest.mark.parametrize("text, kind, kept", [
    ("postgres://app:FAKEpw@db:5432/app", "url_credentials", "postgres://app:[REDACTED]@db:5432/app"),
    ("redis://:FAKEpw@cache:6379/0", "url_credentials", "redis://:[REDACTED]@cache:6379/0"),
    ("  password: FAKE pw with spaces", "password", "  password: [REDACTED]"),
    ("Authorization: Basic RkFLRTpGQUtF", "auth_header", "Authorization: [REDACTED]"),
    ("Cookie: _s=FAKE; other=1", "cookie", "Cookie: [REDACTED]"),
    ("id AKIAFAKEPLANTED00001 used", "aws_key", "id [REDACTED] used"),
    ("key rk_live_FAKEFAKEFAKE0001", "stripe_key", "key [REDACTED]"),
    ("github_pat_FAKE0000000000000000000001_abc", "github_token", "[REDACTED]"),
    ("token xoxp-FAKE-0000-planted", "slack_token", "token [REDACTED]"),
    ("routing_key: FAKEroutingKEY", "pagerduty_key", "routing_key: [REDACTED]"),
    ("RAILS_MASTER_KEY=FAKEmaster0001", "secret", "RAILS_MASTER_KEY=[REDACTED]"),
    ("APP_SECRET: FAKEsecretvalue", "secret", "APP_SECRET: [REDACTED]"),
    ('{"password" => "FAKEruby34"}', "rails_parameter", '{"password" => "[REDACTED]"}'),
    ('{"password"=>"FAKEruby33"}', "rails_parameter", '{"password"=>"[REDACTED]"}'),
    ('[["reset_password_token", "FAKEbind"], ["LIMIT", 1]]', "rails_parameter", '[["reset_password_token", "[REDACTED]"], ["LIMIT", 1]]'),
    ("mail to bob.planted@example.com failed", "email", "mail to [REDACTED] failed"),
    ("card 3782 822463 10005 declined", "card_number", "card [REDACTED] declined"),
])
def test_each_kind_is_redacted_and_counted(text, kind, kept):
    out, counts = scrub(text)
    assert out == kept
    assert counts.get(kind, 0) >= 1, counts


@pytest.mark.parametrize("line", [
    '  Parameters: {"authenticity_token"=>"[FILTERED]", "session"=>{"password"=>"[FILTERED]"}}',
    '  password: <%= ENV["DATABASE_PASSWORD"] %>',
    'SELECT "users".* FROM "users" WHERE "users"."remember_token" = $1 LIMIT $2',
    "  primary_key: id",
    "ActiveRecord::ConnectionTimeoutError: could not obtain a connection from the pool within 5.000 seconds",
    'ERROR:  duplicate key value violates unique constraint "index_users_on_token"',
    "Completed 200 OK in 1764151200123ms (Views: 1.2ms | ActiveRecord: 0.4ms)",
])
def test_already_filtered_values_references_and_non_secrets_are_left_alone(line):
    assert scrub(line) == (line, {})


def test_real_rails_log_lines_without_secrets_come_through_unchanged():
    changed = []
    for path in sorted(RAILS.glob("*.log")):
        for line in path.read_text(errors="replace").splitlines():
            out, counts = scrub(line)
            # a cut authenticity token ("qwPv...) escapes the Parameters rule but not the entropy one
            allowed = {"email", "rails_parameter"} | ({"high_entropy"} if "authenticity_token" in line else set())
            if out != line and not set(counts) <= allowed:
                changed.append((path.name, counts, line[:120]))
    assert changed == []


def test_a_capistrano_release_directory_is_not_a_card_number():
    # a real line (shared/corpus/sidekiq_log_analyzer/sidekiq.log): YYYYMMDDHHMMSS passes Luhn by chance
    line = "/home/deployer/sga/releases/20180320121441/config/application.rb:71: warning: already initialized constant OpenSSL::SSL::VERIFY_PEER"
    assert luhn_ok("20180320121441") and not card_like("20180320121441")
    assert scrub(line) == (line, {})


def test_rails_authenticity_token_from_a_real_log_is_redacted():
    line = next(l for l in (RAILS / "rails30_failure.log").read_text().splitlines() if "authenticity_token" in l)
    out, counts = scrub(line)
    assert "pz9WcxkcrlG" not in out and counts == {"rails_parameter": 1}
    assert '"output_format"=>"csv"' in out


def test_email_scrubbing_can_be_turned_off():
    text = "Sent mail to planted.user@example.com (30.4ms)"
    assert Scrubber(emails=False).scrub(text) == (text, {})
    assert scrub(text)[0] == f"Sent mail to {REDACTED} (30.4ms)"


def test_scrub_obj_drops_values_under_secret_keys_and_scrubs_nested_strings():
    obj = {"sinks": {"pd": {"routing_key": "FAKEkey", "url": "https://x"}, "hook": {"secret": "FAKEs", "timeout": 5}},
           "notes": ["postgres://u:FAKEpw@h/db"], "api_token": None, "cache_key": "views/posts"}
    out, counts = scrub_obj(obj)
    text = json.dumps(out)
    assert "FAKEkey" not in text and "FAKEs" not in text and "FAKEpw" not in text
    assert out["sinks"]["hook"]["timeout"] == 5 and out["cache_key"] == "views/posts" and out["api_token"] is None
    assert counts == {"secret": 2, "url_credentials": 1}


def test_scrub_finding_returns_a_clean_copy_and_leaves_the_original():
    f = Finding(detector="sidekiq_failures", severity="warning", title="Jobs failing for bob@example.com",
                subject={"job_class": "ChargeJob"}, first_seen=1.0, last_seen=2.0, count=1,
                evidence=[Evidence("s.log", 3, "redis://:FAKEpw@r:6379")],
                triage=Triage(summary="s", containment=["rotate DB_PASSWORD=FAKEold"]), details={"token": "FAKEtok"})
    clean, counts = scrub_finding(f)
    assert "FAKE" not in json.dumps(clean.to_dict()) and "example.com" not in clean.title
    assert f.evidence[0].text == "redis://:FAKEpw@r:6379" and clean.fingerprint == f.fingerprint
    assert counts == {"email": 1, "url_credentials": 1, "password": 1, "secret": 1}


def test_a_clean_line_is_returned_as_the_same_object():
    line = "Completed 200 OK in 12ms (Views: 3.1ms | ActiveRecord: 1.2ms | Allocations: 5012)"
    out, counts = scrub(line)
    assert out is line and counts == {}  # no rule fired, nothing was copied
