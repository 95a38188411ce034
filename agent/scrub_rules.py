"""The scrubber's table: one named rule per secret shape, each with samples that prove it.

A rule has a *name* (unique), a *kind* (what redaction counts are reported under; several
rules may share one), cheap *hints* (substrings of the lower-cased text; a rule whose
hints are all absent is skipped), a compiled *pattern*, a *replace* function (returns
the replacement, or None to leave a match alone), and *positives* ((text, secret) pairs:
the secret must be gone after scrubbing) and *negatives* (texts that must come through
unchanged). ``tests/test_scrub_rules.py`` runs every sample of every rule.

Order matters: earlier rules win, and a redacted value is never matched again. Every
pattern is linear on a 64 KiB line: no nested unbounded quantifiers that can overlap,
starts anchored by a literal or a look-behind.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from typing import Callable, List, Optional, Pattern, Sequence, Tuple

__all__ = ["REDACTED", "Rule", "RULES", "EMAIL", "CARD", "CARD_HINT", "NOT_SECRET_KEYS", "is_inert",
           "luhn_ok", "card_like", "high_entropy"]

REDACTED = "[REDACTED]"
_ALREADY = ("[REDACTED", "[FILTERED", "***", "<%")  # values left as they are (ERB is a reference, not a secret)

Replace = Callable[["re.Match[str]"], Optional[str]]


class Rule:
    __slots__ = ("name", "kind", "hints", "regex", "replace", "positives", "negatives")

    def __init__(self, name: str, kind: str, hints: Tuple[str, ...], regex: Pattern[str], replace: Replace,
                 positives: Sequence[Tuple[str, str]], negatives: Sequence[str]) -> None:
        self.name, self.kind, self.hints, self.regex, self.replace = name, kind, hints, regex, replace
        self.positives, self.negatives = list(positives), list(negatives)

    def __repr__(self) -> str:
        return f"Rule({self.name!r})"


# ---------------------------------------------------------------------- value tests


_PLACEHOLDER = re.compile(r"^(?:\$\d+|:\w+|%s|\?)$")  # SQL bind placeholders are not values


def is_inert(value: str) -> bool:
    v = value.strip().strip("\"'")
    return (not v or v.startswith(_ALREADY) or v in ("nil", "null", "None", "none", "~", "true", "false", "?")
            or _PLACEHOLDER.match(v) is not None)


def high_entropy(value: str) -> bool:
    """Looks generated: ≥16 characters, mixed case (or ≥32 with digits), ≥3 bits per character.

    Keeps ``key=id``, ``token=true``, ``sig=none`` and plain words or dates from being taken for secrets.
    """
    v = value.strip("\"'")
    if len(v) < 16:
        return False
    lower, upper, digit = any(c.islower() for c in v), any(c.isupper() for c in v), any(c.isdigit() for c in v)
    # mixed case, or long enough for a lower-case hex/base36 key (ActiveStorage's 28-char blob keys stay)
    if not ((lower and upper) or (len(v) >= 32 and digit and (lower or upper))):
        return False
    n = len(v)
    return -sum(k / n * math.log2(k / n) for k in Counter(v).values()) >= 3.0


def _aws_secret_like(value: str) -> bool:
    # random base64: mixed case and a digit, many distinct characters (a git SHA is hex, a path repeats)
    return (any(c.islower() for c in value) and any(c.isupper() for c in value) and any(c.isdigit() for c in value)
            and len(set(value)) >= 20)


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def card_like(digits: str) -> bool:
    """A known card network's prefix and length, and a valid Luhn check digit.

    The prefix table keeps release directories (20180608121953), epoch milliseconds
    and most numeric ids from being taken for cards.
    """
    n = len(digits)
    if not 13 <= n <= 19 or not luhn_ok(digits):
        return False
    two, four = int(digits[:2]), int(digits[:4])
    if digits[0] == "4":
        return n in (13, 16, 19)  # Visa
    if 51 <= two <= 55 or 2221 <= four <= 2720:
        return n == 16  # Mastercard
    if two in (34, 37):
        return n == 15  # Amex
    if digits.startswith(("6011", "65", "62")) or 644 <= int(digits[:3]) <= 649 or 3528 <= four <= 3589:
        return 16 <= n <= 19  # Discover, UnionPay, JCB
    if 300 <= int(digits[:3]) <= 305 or two in (36, 38, 39):
        return 14 <= n <= 16  # Diners
    return False


# ---------------------------------------------------------------------- replacements


def _keep_group(n: int) -> Replace:
    """Keep groups 1..n (the key, separator…), redact the value group n+1 (keeping its quotes)."""

    def replace(m: "re.Match[str]") -> Optional[str]:
        value = m.group(n + 1)
        if is_inert(value):
            return None
        quote = value[0] if value[:1] in ("'", '"') and value[-1:] == value[:1] and len(value) > 1 else ""
        return "".join(m.group(i) or "" for i in range(1, n + 1)) + quote + REDACTED + quote

    return replace


def _whole(m: "re.Match[str]") -> Optional[str]:
    return REDACTED


def _card(m: "re.Match[str]") -> Optional[str]:
    return REDACTED if card_like(re.sub(r"[ -]", "", m.group(0))) else None


def _aws_secret(m: "re.Match[str]") -> Optional[str]:
    return REDACTED if _aws_secret_like(m.group(0)) else None


def _yaml_or_pair(m: "re.Match[str]") -> Optional[str]:
    # YAML at the start of a line takes the rest of the line (unquoted YAML values may hold spaces)
    if m.group("yaml") is not None:
        if is_inert(m.group("yaml")):
            return None
        return m.group("ykey") + REDACTED
    value = m.group(5)  # groups 1-2 are the named YAML ones; 3 key, 4 separator, 5 value
    if is_inert(value):
        return None
    quote = value[0] if value[:1] in ("'", '"') and value[-1:] == value[:1] and len(value) > 1 else ""
    return m.group(3) + m.group(4) + quote + REDACTED + quote


NOT_SECRET_KEYS = re.compile(
    r"(?i)^[\"':]*(?:primary|foreign|cache|partition|sort|idempotency|query|group|lock|unique|public|publishable)_key")


def _secret_pair(m: "re.Match[str]") -> Optional[str]:
    key = m.group("ykey") if m.group("yaml") is not None else m.group(3)
    if NOT_SECRET_KEYS.match(key.strip().lstrip("- ")):
        return None
    return _yaml_or_pair(m)


def _entropy_pair(m: "re.Match[str]") -> Optional[str]:
    if NOT_SECRET_KEYS.match(m.group(1)) or not high_entropy(m.group(4)):
        return None
    return m.group(1) + m.group(2) + m.group(3) + REDACTED


# ---------------------------------------------------------------------- shared pattern pieces

# Rails 7's generated filter_parameter_logging.rb (partial, case-insensitive matches), plus card fields
_FILTERED_PARAM = r"[^\"']*(?:passw|secret|token|_key|crypt|salt|certificate|otp|ssn|cvv|cvc|card|cc_?num|pan\b|pin\b)[^\"']*"
_KEY_SEP = r"\s*(?:=>|\|\|=|:|=)\s*"
_QUOTED_OR_BARE = r"(\"(?:[^\"\\\n]|\\.)*\"|'(?:[^'\\\n]|\\.)*'|[^\s,;&\"'}\]\)>][^\s,;&\"'}\]\)]*)"
_SECRET_NAME = (r"(?:[A-Za-z0-9]+[_.-])*(?:[A-Za-z0-9]*(?:secret|token|api[_-]?key|apikey|access[_-]?key(?:[_-]id)?|"
                r"private[_-]?key|master[_-]?key|signing[_-]?key|encryption[_-]?key|credentials?|auth[_-]?key)|"
                r"[A-Za-z0-9]+_key(?:_base)?)")
_PASSWORD_NAME = r"(?:[A-Za-z0-9]+[_.-])*(?:password|passwd|passphrase|pwd|pass)(?:[_.-][A-Za-z0-9]+)*"
# command-line flags whose value is a secret: --control-token, --redis-password, --requirepass, --api-key …
SECRET_FLAG = (r"--?(?:[a-z0-9]+[-_])*(?:token|secret|password|passwd|pass|pwd|requirepass|masterauth|auth|"
               r"api[-_]?key|access[-_]key|secret[-_]key|private[-_]key|credentials?)")


def _named(name: str) -> str:
    """``name: v`` / ``NAME=v`` / ``"name": "v"`` / ``:name => "v"``, or a YAML line ``  name: rest``."""
    key = r"[\"':]?" + name + r"[\"']?\]?"  # ENV["DB_PASSWORD"] = "…" too
    return (
        r"(?im)(?:^(?P<ykey>[ \t]*(?:-[ \t]+)?" + key + r"[ \t]*:[ \t]+)(?P<yaml>[^\n#]*[^\s#][^\n]*?)[ \t]*$"
        r"|(?<![\w.-])(" + key + r")(" + _KEY_SEP + r")" + _QUOTED_OR_BARE + r")"
    )


def _rule(name: str, kind: str, hints: Tuple[str, ...], pattern: str, replace: Replace,
          positives: Sequence[Tuple[str, str]], negatives: Sequence[str], flags: int = 0) -> Rule:
    return Rule(name, kind, hints, re.compile(pattern, flags), replace, positives, negatives)


# Fake but format-valid samples. AWS's documented example secret is used for the bare AWS shape.
_AWS_EXAMPLE_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
_GIT_SHA = "0f3c9a1e5b7d2c4f6a8b0d1e3f5a7c9b2d4e6f8a"

RULES: List[Rule] = [
    _rule("pem_private_key", "private_key", ("-----begin",),
          r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----(?:.*?-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|.*\Z)", _whole,
          [("-----BEGIN RSA PRIVATE KEY-----\nMIIEFAKEbody\n-----END RSA PRIVATE KEY-----", "MIIEFAKEbody"),
           ('"private_key": "-----BEGIN PRIVATE KEY-----\\nMIIEvFAKEsa\\n-----END PRIVATE KEY-----\\n"', "MIIEvFAKEsa")],
          ["-----BEGIN CERTIFICATE-----", "ssh-keygen wrote the private key to ~/.ssh/id_ed25519"], re.S),
    _rule("url_credentials", "url_credentials", ("://",),
          r"(?i)\b([a-z][a-z0-9+.-]{1,20}://)([^:/@\s\"'<>]*):([^\s/?#\"'<>]+)@(?=[^\s@/\"'<>]*(?:[/?#\s\"'<>]|$))",
          lambda m: None if is_inert(m.group(3)) else f"{m.group(1)}{m.group(2)}:{REDACTED}@",
          [("postgres://app:FAKEpw@db:5432/app", "FAKEpw"), ("redis://:FAKEpw@cache:6379/0", "FAKEpw")],
          ["postgres://app@db:5432/app", "http://example.com:8080/path?q=a@b", "redis://:<%= ENV['X'] %>@h"]),
    _rule("slack_webhook", "slack_webhook", ("hooks.slack.com",),
          r"(hooks\.slack\.com/(?:services|workflows|triggers)/)[A-Za-z0-9_/-]+", lambda m: m.group(1) + REDACTED,
          [("https://hooks.slack.com/services/TFAKE/BFAKE/FAKEhook01", "FAKEhook01")],
          ["https://hooks.slack.com/", "see api.slack.com/messaging/webhooks"]),
    _rule("aws_access_key_id", "aws_key", ("akia", "asia", "abia", "acca"),
          r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b", _whole,
          [("id AKIAFAKEPLANTED00001 used", "AKIAFAKEPLANTED00001")], ["AKIAFAKE is too short", "the ASIAN market"]),
    _rule("aws_signature", "aws_signature", ("x-amz-",),
          r"(?i)(X-Amz-(?:Signature|Security-Token)=)([^&\s\"'<>]+)", _keep_group(1),
          [("GET /k?X-Amz-Date=20251126T100000Z&X-Amz-Signature=fa4e0000000000000000000000000000000000000000000000000000000000b2&x=1",
            "fa4e0000000000000000000000000000000000000000000000000000000000b2"),
           ("X-Amz-Security-Token=FQoGZXIvYXdzEFAKEsession", "FQoGZXIvYXdzEFAKEsession")],
          ["X-Amz-Date=20251126T100000Z&X-Amz-Expires=300", "X-Amz-Signature=&x=1"]),
    _rule("stripe_key", "stripe_key", ("sk_", "rk_", "whsec_"),
          r"\b(?:(?:sk|rk)_(?:live|test)_[0-9A-Za-z]{10,247}|whsec_[0-9A-Za-z]{20,})\b", _whole,
          [("key rk_live_FAKEFAKEFAKE0001", "rk_live_FAKEFAKEFAKE0001")], ["sk_live_", "task_list_items"]),
    _rule("openai_key", "openai_key", ("sk-",),
          r"\bsk-(?:(?:proj|svcacct|admin)-[A-Za-z0-9_-]{20,}|[A-Za-z0-9]{32,}\b)", _whole,
          [("OpenAI 401 for sk-proj-FAKEplantedOpenAI_proj-00000000000001 (project)", "sk-proj-FAKEplantedOpenAI_proj-00000000000001"),
           ("OPENAI key sk-FAKEplantedOpenAIlegacy0000000000000001", "sk-FAKEplantedOpenAIlegacy0000000000000001")],
          ["pip install scikit-learn sk-learn-contrib-imbalanced-things", "disk-usage-alert-threshold-exceeded-now", "sk-proj-short"]),
    _rule("google_api_key", "google_api_key", ("aiza",), r"\bAIza[0-9A-Za-z_-]{35}(?![0-9A-Za-z_-])", _whole,
          [("maps?address=x&key=AIzaFAKEplantedGoogleKey000000000000002", "AIzaFAKEplantedGoogleKey000000000000002"),
           ("GOOGLE AIzaFAKEplantedGoogleKey000000000000001 rejected", "AIzaFAKEplantedGoogleKey000000000000001")],
          ["AIzaShort", "AIRPLANE mode"]),
    _rule("gcp_private_key_id", "private_key", ("private_key_id",),
          r"(?i)([\"']?private_key_id[\"']?\s*(?:=>|:|=)\s*[\"']?)([0-9a-f]{16,64})\b", _keep_group(1),
          [('{"type": "service_account", "private_key_id": "0fa4e00000000000000000000000000000000a1b"}',
            "0fa4e00000000000000000000000000000000a1b")],
          ['{"private_key_id": null}', '{"client_id": "100000000000000000001"}']),
    _rule("azure_account_key", "azure_key", ("accountkey=", "sharedaccesskey="),
          r"(?i)((?:Account|SharedAccess)Key=)([A-Za-z0-9+/]{16,}={0,2})", _keep_group(1),
          [("DefaultEndpointsProtocol=https;AccountName=fake;AccountKey=FAKEplantedAzureKey000000000000001==;EndpointSuffix=x",
            "FAKEplantedAzureKey000000000000001==")],
          ["AccountName=fake;EndpointSuffix=core.windows.net", "AccountKey=;"]),
    _rule("azure_sas_signature", "azure_sas", ("sig=",), r"(?i)([?&;]sig=)([A-Za-z0-9%+/=]{16,})", _keep_group(1),
          [("https://fake.blob.core.windows.net/c/b?sv=2022-11-02&sp=r&sig=FAKEplantedSAS0000000001%3D", "FAKEplantedSAS0000000001%3D")],
          ["?sig=1&config=abcdefghijklmnopqrstuvwxyz", "GET /?rsig=x"]),
    _rule("sendgrid_key", "sendgrid_key", ("sg.",), r"\bSG\.[A-Za-z0-9_-]{16,32}\.[A-Za-z0-9_-]{16,64}\b", _whole,
          [("mail via SG.FAKEplantedSendGrid001.FAKEplantedSendGridSecretPart00000000000001 failed",
            "FAKEplantedSendGridSecretPart00000000000001")],
          ["SG.1.2", "region SG.mail.example.com", "AWS SG.sg-0123 attached"]),
    _rule("npm_token", "npm_token", ("npm_",), r"\bnpm_[A-Za-z0-9]{36}\b", _whole,
          [("//registry.npmjs.org/:_authToken npm_FAKEplantedNpmToken00000000000000001", "npm_FAKEplantedNpmToken00000000000000001")],
          ["npm_config_cache=/tmp/npm", "npm_package_version=1.2.3"]),
    _rule("gitlab_token", "gitlab_token", ("glpat-", "gldt-", "glrt-", "glptt-", "glsoat-"),
          r"\bgl(?:pat|dt|rt|ptt|soat)-[A-Za-z0-9_-]{20,}", _whole,
          [("clone with glpat-FAKEplantedGitLab000001", "glpat-FAKEplantedGitLab000001")],
          ["glpat-short", "see docs.gitlab.com glpat- tokens"]),
    _rule("github_token", "github_token", ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
          r"\b(?:gh[pousr]_[A-Za-z0-9]{30,255}|github_pat_[A-Za-z0-9_]{22,255})\b", _whole,
          [("github_pat_FAKE0000000000000000000001_abc", "github_pat_FAKE0000000000000000000001_abc")],
          ["ghp_short", "github_pat_"]),
    _rule("slack_token", "slack_token", ("xox", "xapp-"), r"\b(?:xox[abposre]|xapp)-[A-Za-z0-9-]{10,}", _whole,
          [("token xoxp-FAKE-0000-planted", "xoxp-FAKE-0000-planted")], ["xoxo-gossip", "xoxb-short"]),
    _rule("jwt", "jwt", ("eyj",), r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}", _whole,
          [("jwt=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJGQUtFIn0.FAKEjwtSIGNATURE0001", "FAKEjwtSIGNATURE0001")],
          ["eyJhbGciOiJIUzI1NiJ9 alone", "hey Jude"]),
    _rule("auth_header", "auth_header", ("authorization", "x-", "x_"),
          r"(?im)(?<![\w-])([\"']?(?:HTTP_)?(?:proxy[-_])?(?:authorization|x[-_][\w-]{0,40}?(?:api[-_]?key|token|auth|secret))[\"']?)(" + _KEY_SEP + r")"
          r"(\"(?:[^\"\\\n]|\\.)*\"|'(?:[^'\\\n]|\\.)*'|[^\n]+)", _keep_group(2),
          [("Authorization: Basic RkFLRTpGQUtF", "RkFLRTpGQUtF"),
           ('Authorization: Token token="FAKEtokenTOKENheader-1", email="a"', "FAKEtokenTOKENheader-1"),
           ('"HTTP_X_API_KEY"=>"FAKExapikey"', "FAKExapikey")],
          ["authorization failed for user 42", '"HTTP_AUTHORIZATION"=>"[FILTERED]"', "X-Request-Id: 5d1f1e9a"]),
    _rule("cookie_header", "cookie", ("cookie",),
          r"(?im)([\"']?(?:HTTP_)?(?:set[-_])?cookie[\"']?)(" + _KEY_SEP + r")(\"(?:[^\"\\\n]|\\.)*\"|'(?:[^'\\\n]|\\.)*'|[^\n\"']+)",
          _keep_group(2),
          [("Cookie: _s=FAKEcookie; other=1", "FAKEcookie"), ("Set-Cookie: _app=FAKEset; path=/", "FAKEset")],
          ["cookie store is full", "Cookie: [FILTERED]"]),
    _rule("bearer_token", "bearer_token", ("bearer", "token token="),
          r"(?i)\b(bearer\s+|token\s+token=\"?)([A-Za-z0-9._~+/=-]{8,})", _keep_group(1),
          [("curl -H 'Bearer FAKEbearerTOK01'", "FAKEbearerTOK01"), ('Token token="FAKEtokentoken02"', "FAKEtokentoken02")],
          ["bearer of bad news", "Bearer short"]),
    _rule("pagerduty_key", "pagerduty_key", ("routing_key", "integration_key", "service_key", "routing-key",
                                             "events.pagerduty.com/integration/"),
          r"(?i)((?:routing|integration|service)[_-]key[\"']?)(" + _KEY_SEP + r")" + _QUOTED_OR_BARE
          + r"|(events\.pagerduty\.com/integration/)([A-Za-z0-9]{20,})",
          lambda m: (m.group(4) + REDACTED) if m.group(4) else _keep_group(2)(m),
          [("routing_key: FAKEroutingKEY", "FAKEroutingKEY"),
           ("https://events.pagerduty.com/integration/FAKEpdINTEGRATIONkey000000000001/enqueue", "FAKEpdINTEGRATIONkey000000000001")],
          ["routing_key: nil", "events.pagerduty.com/integration/"]),
    _rule("rails_parameter_hash", "rails_parameter", ("=>",),
          r"(?i)(\"" + _FILTERED_PARAM + r"\"|:\w*(?:passw|secret|token|_key|crypt|salt|otp|ssn|cvv|cvc|card)\w*)(\s*=>\s*)"
          r"(\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|\[[^\[\]]*\]|-?\d[\d.]*)", _keep_group(2),
          [('{"password" => "FAKEruby34"}', "FAKEruby34"), ('{"password"=>"FAKEruby33"}', "FAKEruby33")],
          ['{"authenticity_token"=>"[FILTERED]"}', '{"output_format"=>"csv"}']),
    _rule("rails_parameter_bind", "rails_parameter", ("[[",),  # ActiveRecord binds: [["remember_token", "abc"], ["LIMIT", 1]]
          r"(?i)(\[\s*\"" + _FILTERED_PARAM + r"\"\s*,\s*)(\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|-?\d[\d.]*)(?=\s*\])", _keep_group(1),
          [('[["reset_password_token", "FAKEbind"], ["LIMIT", 1]]', "FAKEbind")], ['[["id", 42], ["LIMIT", 1]]']),
    _rule("cli_secret_flag", "cli_secret_flag", ("--",),
          r"(?i)(?<![\w-])(" + SECRET_FLAG + r")(=|[ \t]+)([^\s\"'-][^\s\"']*)", _keep_group(2),
          [("puma --control-token FAKEpumaCTL01 -b tcp://0.0.0.0", "FAKEpumaCTL01"),
           ("redis-cli --redis-password FAKEredisCLI01", "FAKEredisCLI01"), ("--password=FAKEflagPW01", "FAKEflagPW01")],
          ["--password-file /etc/pw --token-ttl 3600", "--no-auth --verbose", "--auth none"]),
    _rule("password_pair", "password", ("pass", "pwd"), _named(_PASSWORD_NAME), _yaml_or_pair,
          [("  password: FAKE pw with spaces", "FAKE pw with spaces"), ("DB_PASSWORD=FAKEenvPW", "FAKEenvPW"),
           ('{"password":"FAKElograge"}', "FAKElograge")],
          ['  password: <%= ENV["DATABASE_PASSWORD"] %>', "password: nil", "passenger started"]),
    _rule("secret_pair", "secret", ("secret", "token", "key", "credential"), _named(_SECRET_NAME), _secret_pair,
          [("RAILS_MASTER_KEY=FAKEmaster0001", "FAKEmaster0001"), ("APP_SECRET: FAKEsecretvalue", "FAKEsecretvalue"),
           ('"api_key": "FAKEapikey1"', "FAKEapikey1"), ("token=FAKEtok", "FAKEtok")],
          ["  primary_key: id", "token=true", "cache_key: views/posts", 'unique constraint "index_users_on_token"']),
    _rule("named_high_entropy", "high_entropy", ("token", "secret", "key", "sig"),
          r"(?i)(?<![\w.-])([\"']?(?:[a-z0-9]+[_-])*(?:token|secret|key|sig|signature)[\"']?)(\s*(?:=>|:|=)\s*)([\"']?)"
          r"([A-Za-z0-9_+/=.~%-]{16,})", _entropy_pair,
          [("key=FAKEplantedBareKey000000001&x=1", "FAKEplantedBareKey000000001"),
           ("sig: FAKEplantedSig0000000001abc", "FAKEplantedSig0000000001abc"),
           ('"signature": "FAKEplantedSignature00000001"', "FAKEplantedSignature00000001"),
           ("token=9f86d081884c7d659a2feaa0c55ad015a3bf4f1b", "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b")],
          ["key=id", "key=user_sessions_index", "sig: none", "signature=valid", "key=2025-11-26", "primary_key=Xy12ab34CD56ef78GH",
           "Uploaded file to key: 2ltgm4razby533wdwuobypom21id (checksum: DUq54mfmvHiW6boXhcwRQg==)"]),
    _rule("aws_secret_key", "aws_secret", ("",), r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])", _aws_secret,
          [(f"aws s3 cp failed with {_AWS_EXAMPLE_SECRET} set", _AWS_EXAMPLE_SECRET)],
          [f"deployed revision {_GIT_SHA}", f"REVISION {_GIT_SHA.upper()}", "/home/deploy/apps/MyApp/releases/current",
           "ActiveRecordConnectionTimeoutErrorRaised"]),
]

EMAIL = _rule("email", "email", ("@",), r"(?<![\w.%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}\b", _whole,
              [("mail to bob.planted@example.com failed", "bob.planted@example.com")], ["git@github", "@mention in a note"])
CARD = _rule("card_number", "card_number", ("",), r"(?<![\w.+-])[2-6]\d{3}(?:[ -]?\d){9,15}(?![\w.]\d|\w)", _card,
             [("card 3782 822463 10005 declined", "3782 822463 10005"), ("card 5555-5555-5555-4444", "5555-5555-5555-4444")],
             ["release 20180320121441", "Completed 200 OK in 1764151200123ms"])
CARD_HINT = re.compile(r"\d(?:[ -]?\d){12}")
