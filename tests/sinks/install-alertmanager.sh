#!/usr/bin/env bash
# Prometheus Alertmanager from Debian's packages for tests/sinks/test_alertmanager_live.py and the
# fleet e2e tests (the binary only: each test runs its own instance).
set -euo pipefail
exec bash "$(dirname "$0")/../install-service-package.sh" prometheus-alertmanager prometheus-alertmanager
