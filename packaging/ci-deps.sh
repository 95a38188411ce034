#!/usr/bin/env bash
# What tests/packaging needs on a Debian CI machine, beyond Python: systemd-analyze (Debian's
# systemd package; it does not have to run as init for `verify` and `security --offline`),
# dpkg-deb, useradd/groupadd (passwd), and a system python3 able to make virtualenvs.
# Called by .ci/run before the tests; idempotent, installs only what is missing.
set -euo pipefail
need=()
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
command -v dpkg-deb >/dev/null 2>&1 || need+=(dpkg)
command -v useradd >/dev/null 2>&1 || need+=(passwd)
if [ ! -x /usr/bin/python3 ] || ! /usr/bin/python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    need+=(python3 python3-venv)
fi
if [ ${#need[@]} -gt 0 ]; then
    echo "packaging/ci-deps.sh: installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
systemd-analyze --version | head -n 1
