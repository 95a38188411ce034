"""Remove secrets and personal data from text before it is stored, bundled or sent.

Everything railwatch writes outside the process (the incident store, bundles, reports,
sink payloads) passes through ``scrub``. Each rule has cheap *hints* (substrings, checked
on the lower-cased text) so a clean evidence line costs a few ``in`` tests, not a dozen
regex scans (the shape of Datadog's hinted replacers).

Shapes matched, in order (earlier rules win; a redacted value is never matched again):

    -----BEGIN RSA PRIVATE KEY----- … -----END …      private_key
    postgres://user:pass@db  redis://:pass@cache      url_credentials
    https://hooks.slack.com/services/T…/B…/…          slack_webhook
    AKIA…(16)  sk_live_…  ghp_…  github_pat_…  xoxb-…  aws_key stripe_key github_token slack_token
    eyJ….eyJ….sig                                     jwt
    Authorization: Bearer …   Cookie: …   Set-Cookie  auth_header / cookie
    "HTTP_AUTHORIZATION"=>"…"  X-Api-Key: …
    routing_key=…  integration_key: …                 pagerduty_key
    {"password"=>"…"}  {"card_number" => "…"}         rails_parameter (Ruby ≤3.3 and 3.4 inspect)
    password: …  DB_PASSWORD=…  "secret":"…"          password
    STRIPE_API_KEY=…  *_TOKEN=…  *_SECRET: …          secret
    bob@example.com                                   email (optional)
    4111 1111 1111 1111 (network prefix+length, Luhn) card_number

Rails' own ``[FILTERED]`` and values already redacted are left alone.
"""
from __future__ import annotations

import re
from collections import Counter
from typing import Any, Callable, Dict, List, Optional, Pattern, Tuple

__all__ = ["REDACTED", "Scrubber", "scrub", "scrub_obj", "scrub_finding", "luhn_ok", "card_like"]

REDACTED = "[REDACTED]"
_ALREADY = ("[REDACTED", "[FILTERED", "***", "<%")  # values left as they are (ERB is a reference, not a secret)

# Rails 7's generated filter_parameter_logging.rb (partial, case-insensitive matches), plus card fields
_FILTERED_PARAM = r"[^\"']*(?:passw|secret|token|_key|crypt|salt|certificate|otp|ssn|cvv|cvc|card|cc_?num|pan\b|pin\b)[^\"']*"

_KEY_SEP = r"\s*(?:=>|\|\|=|:|=)\s*"
_QUOTED_OR_BARE = r"(\"(?:[^\"\\\n]|\\.)*\"|'(?:[^'\\\n]|\\.)*'|[^\s,;&\"'}\]\)>][^\s,;&\"'}\]\)]*)"


class _Rule:
    __slots__ = ("kind", "hints", "regex", "replace")

    def __init__(self, kind: str, hints: Tuple[str, ...], regex: Pattern[str], replace: Callable[["re.Match[str]"], Optional[str]]) -> None:
        self.kind, self.hints, self.regex, self.replace = kind, hints, regex, replace


def _keep_group(n: int) -> Callable[["re.Match[str]"], Optional[str]]:
    """Keep groups 1..n (the key, separator…), redact the value group n+1."""

    def replace(m: "re.Match[str]") -> Optional[str]:
        value = m.group(n + 1)
        if _is_inert(value):
            return None
        quote = value[0] if value[:1] in ("'", '"') and value[-1:] == value[:1] and len(value) > 1 else ""
        return "".join(m.group(i) or "" for i in range(1, n + 1)) + quote + REDACTED + quote

    return replace


def _whole(m: "re.Match[str]") -> Optional[str]:
    return REDACTED


def _is_inert(value: str) -> bool:
    v = value.strip().strip("\"'")
    return not v or v.startswith(_ALREADY) or v in ("nil", "null", "None", "~", "true", "false", "?") or _PLACEHOLDER.match(v) is not None


_PLACEHOLDER = re.compile(r"^(?:\$\d+|:\w+|%s|\?)$")  # SQL bind placeholders are not values


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


def _card(m: "re.Match[str]") -> Optional[str]:
    return REDACTED if card_like(re.sub(r"[ -]", "", m.group(0))) else None


def _yaml_or_pair(m: "re.Match[str]") -> Optional[str]:
    # YAML at the start of a line takes the rest of the line (unquoted YAML values may hold spaces)
    if m.group("yaml") is not None:
        value = m.group("yaml")
        if _is_inert(value):
            return None
        return m.group("ykey") + REDACTED
    value = m.group(5)  # groups 1-2 are the named YAML ones; 3 key, 4 separator, 5 value
    if _is_inert(value):
        return None
    quote = value[0] if value[:1] in ("'", '"') and value[-1:] == value[:1] and len(value) > 1 else ""
    return m.group(3) + m.group(4) + quote + REDACTED + quote


_SECRET_NAME = r"(?:[A-Za-z0-9]+[_.-])*(?:[A-Za-z0-9]*(?:secret|token|api[_-]?key|apikey|access[_-]?key(?:[_-]id)?|private[_-]?key|master[_-]?key|signing[_-]?key|encryption[_-]?key|credentials?|auth[_-]?key)|[A-Za-z0-9]+_key(?:_base)?)"
_PASSWORD_NAME = r"(?:[A-Za-z0-9]+[_.-])*(?:password|passwd|passphrase|pwd|pass)(?:[_.-][A-Za-z0-9]+)*"
_NOT_SECRET_KEYS = re.compile(r"(?i)^[\"':]*(?:primary|foreign|cache|partition|sort|idempotency|query|group|lock|unique|public|publishable)_key")


def _named(name: str) -> str:
    """``name: v`` / ``NAME=v`` / ``"name": "v"`` / ``:name => "v"``, or a YAML line ``  name: rest``."""
    key = r"[\"':]?" + name + r"[\"']?\]?"  # ENV["DB_PASSWORD"] = "…" too
    return (
        r"(?im)(?:^(?P<ykey>[ \t]*(?:-[ \t]+)?" + key + r"[ \t]*:[ \t]+)(?P<yaml>[^\n#]*[^\s#][^\n]*?)[ \t]*$"
        r"|(?<![\w.])(" + key + r")(" + _KEY_SEP + r")" + _QUOTED_OR_BARE + r")"
    )


def _secret_pair(m: "re.Match[str]") -> Optional[str]:
    key = m.group("ykey") if m.group("yaml") is not None else m.group(3)
    if _NOT_SECRET_KEYS.match(key.strip().lstrip("- ")):
        return None
    return _yaml_or_pair(m)


_RULES: List[_Rule] = [
    _Rule("private_key", ("-----begin",), re.compile(
        r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----(?:.*?-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|.*\Z)", re.S), _whole),
    _Rule("url_credentials", ("://",), re.compile(
        r"(?i)\b([a-z][a-z0-9+.-]{1,20}://)([^:/@\s\"'<>]*):([^\s/?#\"'<>]+)@(?=[^\s@/\"'<>]*(?:[/?#\s\"'<>]|$))"),
        lambda m: None if _is_inert(m.group(3)) else f"{m.group(1)}{m.group(2)}:{REDACTED}@"),
    _Rule("slack_webhook", ("hooks.slack.com",), re.compile(r"(hooks\.slack\.com/(?:services|workflows|triggers)/)[A-Za-z0-9_/-]+"),
          lambda m: m.group(1) + REDACTED),
    _Rule("aws_key", ("akia", "asia", "abia", "acca"), re.compile(r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b"), _whole),
    _Rule("stripe_key", ("sk_", "rk_", "whsec_"), re.compile(r"\b(?:(?:sk|rk)_(?:live|test)_[0-9A-Za-z]{10,247}|whsec_[0-9A-Za-z]{20,})\b"), _whole),
    _Rule("github_token", ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"), re.compile(
        r"\b(?:gh[pousr]_[A-Za-z0-9]{30,255}|github_pat_[A-Za-z0-9_]{22,255})\b"), _whole),
    _Rule("slack_token", ("xox", "xapp-"), re.compile(r"\b(?:xox[abposre]|xapp)-[A-Za-z0-9-]{10,}"), _whole),
    _Rule("jwt", ("eyj",), re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"), _whole),
    _Rule("auth_header", ("authorization", "x-", "x_"), re.compile(
        r"(?im)([\"']?(?:HTTP_)?(?:proxy[-_])?(?:authorization|x[-_][\w-]*(?:api[-_]?key|token|auth|secret))[\"']?)(" + _KEY_SEP + r")"
        r"(\"(?:[^\"\\\n]|\\.)*\"|'(?:[^'\\\n]|\\.)*'|[^\n\"']+)"), _keep_group(2)),
    _Rule("cookie", ("cookie",), re.compile(
        r"(?im)([\"']?(?:HTTP_)?(?:set[-_])?cookie[\"']?)(" + _KEY_SEP + r")(\"(?:[^\"\\\n]|\\.)*\"|'(?:[^'\\\n]|\\.)*'|[^\n\"']+)"),
        _keep_group(2)),
    _Rule("bearer_token", ("bearer", "token token="), re.compile(r"(?i)\b(bearer\s+|token\s+token=)([A-Za-z0-9._~+/=-]{8,})"), _keep_group(1)),
    _Rule("pagerduty_key", ("routing_key", "integration_key", "service_key", "routing-key", "events.pagerduty.com/integration/"),
          re.compile(r"(?i)((?:routing|integration|service)[_-]key[\"']?)(" + _KEY_SEP + r")" + _QUOTED_OR_BARE
                     + r"|(events\.pagerduty\.com/integration/)([A-Za-z0-9]{20,})"),
          lambda m: (m.group(4) + REDACTED) if m.group(4) else _keep_group(2)(m)),
    _Rule("rails_parameter", ("=>",), re.compile(
        r"(?i)(\"" + _FILTERED_PARAM + r"\"|:\w*(?:passw|secret|token|_key|crypt|salt|otp|ssn|cvv|cvc|card)\w*)(\s*=>\s*)"
        r"(\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|\[[^\[\]]*\]|-?\d[\d.]*)"), _keep_group(2)),
    _Rule("rails_parameter", ("[[",), re.compile(  # ActiveRecord binds: [["remember_token", "abc"], ["LIMIT", 1]]
        r"(?i)(\[\s*\"" + _FILTERED_PARAM + r"\"\s*,\s*)(\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|-?\d[\d.]*)(?=\s*\])"), _keep_group(1)),
    _Rule("password", ("pass", "pwd"), re.compile(_named(_PASSWORD_NAME)), _yaml_or_pair),
    _Rule("secret", ("secret", "token", "key", "credential"), re.compile(_named(_SECRET_NAME)), _secret_pair),
]
_EMAIL = _Rule("email", ("@",), re.compile(r"(?<![\w.%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}\b"), _whole)
_CARD = _Rule("card_number", ("",), re.compile(r"(?<![\w.+-])[2-6]\d{3}(?:[ -]?\d){9,15}(?![\w.]\d|\w)"), _card)
_CARD_HINT = re.compile(r"\d(?:[ -]?\d){12}")


class Scrubber:
    """A configured scrubber; ``emails=False`` keeps e-mail addresses (some teams need them)."""

    def __init__(self, emails: bool = True, cards: bool = True) -> None:
        self.rules: List[_Rule] = list(_RULES)
        if emails:
            self.rules.append(_EMAIL)
        self.cards = cards

    def scrub(self, text: str) -> Tuple[str, Dict[str, int]]:
        """Return the text with secrets replaced by ``[REDACTED]``, and counts per kind."""
        counts: Dict[str, int] = {}
        if not text:
            return text, counts
        lower = text.lower()
        for rule in self.rules:
            if not any(h in lower for h in rule.hints):
                continue
            text, n = _apply(rule, text)
            if n:
                counts[rule.kind] = counts.get(rule.kind, 0) + n
                lower = text.lower()
        if self.cards and _CARD_HINT.search(text):
            text, n = _apply(_CARD, text)
            if n:
                counts["card_number"] = n
        return text, counts

    def scrub_obj(self, obj: Any) -> Tuple[Any, Dict[str, int]]:
        """Scrub every string in nested dicts/lists/tuples; values under secret-named keys are dropped whole."""
        counts: Counter = Counter()
        return self._walk(obj, counts), dict(counts)

    def _walk(self, obj: Any, counts: Counter) -> Any:
        if isinstance(obj, str):
            text, c = self.scrub(obj)
            counts.update(c)
            return text
        if isinstance(obj, dict):
            out = {}
            for k, v in obj.items():
                key = self._walk(k, counts) if isinstance(k, str) else k
                if isinstance(k, str) and _SENSITIVE_KEY.search(k) and not _NOT_SECRET_KEYS.match(k) and v not in (None, "", {}, []):
                    if not (isinstance(v, str) and _is_inert(v)):
                        counts["secret"] += 1
                        v = REDACTED
                out[key] = self._walk(v, counts)
            return out
        if isinstance(obj, (list, tuple)):
            items = [self._walk(v, counts) for v in obj]
            return items if isinstance(obj, list) else tuple(items)
        return obj


_SENSITIVE_KEY = re.compile(r"(?i)(?:passw|passphrase|secret|token|api_?key|private_key|access_key|routing_key|integration_key|authorization|^cookie$|^set-cookie$|credential)")


def _apply(rule: _Rule, text: str) -> Tuple[str, int]:
    n = 0

    def sub(m: "re.Match[str]") -> str:
        nonlocal n
        replaced = rule.replace(m)
        if replaced is None:
            return m.group(0)
        n += 1
        return replaced

    return rule.regex.sub(sub, text), n


DEFAULT = Scrubber()


def scrub(text: str) -> Tuple[str, Dict[str, int]]:
    """Scrub with the default settings (e-mails and card numbers redacted)."""
    return DEFAULT.scrub(text)


def scrub_obj(obj: Any) -> Tuple[Any, Dict[str, int]]:
    """Scrub a JSON-like object with the default settings; returns (copy, counts)."""
    return DEFAULT.scrub_obj(obj)


def scrub_finding(finding: Any, scrubber: Optional[Scrubber] = None) -> Tuple[Any, Dict[str, int]]:
    """A scrubbed copy of a ``Finding`` (title, subject values, evidence, triage, details).

    The fingerprint is taken from the original subject first and kept in ``details``
    (``fingerprint``) so a redaction in a subject value never splits an incident.
    """
    from agent.events import Evidence, Finding, Triage

    s = scrubber or DEFAULT
    counts: Counter = Counter()

    def t(value: Any) -> Any:
        return s._walk(value, counts)

    copy = Finding(
        detector=finding.detector, severity=finding.severity, title=t(finding.title), subject=t(dict(finding.subject)),
        first_seen=finding.first_seen, last_seen=finding.last_seen, count=finding.count,
        evidence=[Evidence(path=e.path, line=e.line, text=t(e.text)) for e in finding.evidence],
        triage=Triage(summary=t(finding.triage.summary), likely_cause=t(finding.triage.likely_cause),
                      containment=t(list(finding.triage.containment)), prevention=t(list(finding.triage.prevention))),
        details=t(dict(finding.details)),
    )
    return copy, dict(counts)
