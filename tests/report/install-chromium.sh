#!/usr/bin/env bash
# Debian's chromium, for the test that opens the HTML report in a real browser.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
command -v chromium >/dev/null 2>&1 && exit 0
SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO=sudo
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq chromium
