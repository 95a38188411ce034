"""One scrub pass over adversarial 64 KiB lines, per shape (not a test: run it by hand).

    PYTHONPATH=$PWD python tests/bench/scrub.py

Each shape repeats a fragment that starts (or nearly completes) some rule's match, so a
pattern with overlapping quantifiers would go quadratic or worse here.
"""
from __future__ import annotations

import time

from agent.scrub import scrub

SIZE = 64 * 1024
FRAGMENTS = {
    "dash-words": "a-", "underscore-words": "a_", "dot-words": "a.", "equals": "=", "letters": "a", "base64": "aB3/",
    "key-seps": "key=", "token-colon": "token: ", "password-eq": "password=", "secret-names": "x_secret_",
    "flags": "--token ", "flag-words": "--a-", "url-colons": "http://a:", "url-at": ":@", "emails": "a@b.", "at-dots": "a.a@",
    "digits": "4", "digits-spaced": "4 ", "pem-begin": "-----BEGIN RSA PRIVATE KEY-----", "jwt-ish": "eyJaaaaaaaaa.",
    "auth-headers": "Authorization: ", "x-headers": "X-a-", "cookie": "Cookie: ", "rails-hash": '"password"=>', "binds": '[["token", ',
    "quotes": '"\\', "sas": "&sig=", "amz": "X-Amz-Signature=", "sk": "sk-proj-", "yaml": "\n password: a",
}


def main() -> None:
    worst = 0.0
    for name, frag in FRAGMENTS.items():
        line = (frag * (SIZE // len(frag) + 1))[:SIZE]
        t0 = time.perf_counter()
        scrub(line)
        took = time.perf_counter() - t0
        worst = max(worst, took)
        print(f"{name:18} {took * 1000:8.1f} ms")
    print(f"worst {worst * 1000:.1f} ms for one pass over a 64 KiB line")


if __name__ == "__main__":
    main()
