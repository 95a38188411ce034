#!/usr/bin/env bash
# Install, from Debian's packages only, everything the e2e reference Rails app needs.
# Idempotent and non-interactive; exits non-zero (loudly) on any failure.
# PostgreSQL and Redis themselves are expected to be running already (127.0.0.1:5432 / :6379);
# pass --with-services to also install the server packages.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

PKGS=(
  ruby
  ruby-rails          # Rails 6.1 (railties, activerecord, actionpack, activejob, ...)
  puma                # web server (5.6)
  ruby-pg             # PostgreSQL adapter
  ruby-sidekiq        # 6.4
  ruby-redis          # 4.8
  ruby-connection-pool
  ruby-bullet         # N+1 detector (needs a shim on AR 6.1, see app/app.rb)
  ruby-lograge
  ruby-marginalia     # query tags on SQL (RW_QUERY_TAGS=1; Rails 6.1 has no QueryLogs)
  postgresql-client   # psql / createdb used by driver.py
)
if [[ "${1:-}" == "--with-services" ]]; then
  PKGS+=(postgresql redis-server)
fi

fail() { echo "install-deps.sh: ERROR: $*" >&2; exit 1; }
trap 'fail "command failed (line $LINENO): $BASH_COMMAND"' ERR

if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else fail "must run as root (or have sudo)"; fi
else
  SUDO=
fi

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  echo "install-deps.sh: installing: ${missing[*]}"
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  echo "install-deps.sh: all packages already installed"
fi

# Sanity check: the libraries load.
# (bullet is required first: Debian's 6.1.0 refuses to load once ActiveRecord 6.1 is loaded;
# app/app.rb shims that.)
ruby -e 'require "bullet"; require "bullet/version"; require "rails"; require "active_record"; require "pg"; require "sidekiq";
         require "redis"; require "connection_pool"; require "lograge"; require "lograge/version"; require "puma/const";
         puts "install-deps.sh: ok: rails #{Rails.version}, sidekiq #{Sidekiq::VERSION}, redis #{Redis::VERSION}, " \
              "pg #{PG::VERSION}, puma #{Puma::Const::PUMA_VERSION}, bullet #{Bullet::VERSION}, lograge #{Lograge::VERSION}"' \
  || fail "ruby libraries did not load"
command -v puma >/dev/null || fail "puma executable not found"
command -v sidekiq >/dev/null || fail "sidekiq executable not found"
