#!/usr/bin/env bash
# Install a Debian package that ships a server the tests run themselves (Prometheus,
# Alertmanager): idempotent, non-interactive, and without letting the package's postinst start
# its service (the tests start their own instance on a free loopback port; the packaged one
# would only hold its ports). Then check each named command exists and print the first's version.
#
#     tests/install-service-package.sh PACKAGE COMMAND [COMMAND...]
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

[[ $# -ge 2 ]] || { echo "usage: $0 PACKAGE COMMAND [COMMAND...]" >&2; exit 2; }
package=$1; shift
me="install $package"
fail() { echo "$me: ERROR: $*" >&2; exit 1; }
trap 'fail "command failed (line $LINENO): $BASH_COMMAND"' ERR

if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else fail "must run as root (or have sudo)"; fi
else
  SUDO=
fi

if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
  echo "$me: installing"
  $SUDO apt-get update -q
  # policy-rc.d 101: do not start the packaged service during install (no init on CI machines either)
  had_policy=0
  if [[ -e /usr/sbin/policy-rc.d ]]; then had_policy=1; fi
  if [[ $had_policy -eq 0 ]]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod 0755 /usr/sbin/policy-rc.d
  fi
  $SUDO apt-get install -y -q --no-install-recommends "$package" || { [[ $had_policy -eq 1 ]] || $SUDO rm -f /usr/sbin/policy-rc.d; fail "apt-get install failed"; }
  if [[ $had_policy -eq 0 ]]; then $SUDO rm -f /usr/sbin/policy-rc.d; fi
else
  echo "$me: already installed"
fi

for command in "$@"; do
  command -v "$command" >/dev/null || fail "$command executable not found"
done
echo "$me: ok: $("$1" --version 2>&1 | head -1)"
