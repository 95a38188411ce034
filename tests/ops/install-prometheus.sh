#!/usr/bin/env bash
# Install Prometheus server and promtool from Debian's packages for tests/ops/ (promtool check metrics|rules, a real Prometheus scraping the agent).
# Idempotent and non-interactive. Only the binary is used: the test starts its own instance on a
# free loopback port with a temporary config and data dir, so the packaged service is stopped and
# disabled if the package's postinst started it (it would hold :9090 for nothing).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

fail() { echo "install-prometheus.sh: ERROR: $*" >&2; exit 1; }
trap 'fail "command failed (line $LINENO): $BASH_COMMAND"' ERR

if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else fail "must run as root (or have sudo)"; fi
else
  SUDO=
fi

if ! dpkg-query -W -f='${Status}' prometheus 2>/dev/null | grep -q "install ok installed"; then
  echo "install-prometheus.sh: installing prometheus"
  $SUDO apt-get update -q
  # policy-rc.d 101: do not start the packaged service during install (no init on CI machines either)
  had_policy=0
  if [[ -e /usr/sbin/policy-rc.d ]]; then had_policy=1; fi
  if [[ $had_policy -eq 0 ]]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod 0755 /usr/sbin/policy-rc.d
  fi
  $SUDO apt-get install -y -q --no-install-recommends prometheus || { [[ $had_policy -eq 1 ]] || $SUDO rm -f /usr/sbin/policy-rc.d; fail "apt-get install failed"; }
  if [[ $had_policy -eq 0 ]]; then $SUDO rm -f /usr/sbin/policy-rc.d; fi
else
  echo "install-prometheus.sh: prometheus already installed"
fi

command -v prometheus >/dev/null || fail "prometheus executable not found"
command -v promtool >/dev/null || fail "promtool executable not found"
echo "install-prometheus.sh: ok: $(prometheus --version 2>&1 | head -1)"
