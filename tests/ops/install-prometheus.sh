#!/usr/bin/env bash
# Prometheus server and promtool from Debian's packages for tests/ops/ (promtool check metrics|rules,
# a real Prometheus scraping the agent; the binaries only: each test runs its own instance).
set -euo pipefail
exec bash "$(dirname "$0")/../install-service-package.sh" prometheus prometheus promtool
