#!/usr/bin/env bash
# Build railwatch_<version>_<arch>.deb from this tree with dpkg-deb (Debian's own tool).
#
#   packaging/deb/build.sh [--out dist] [--python python3] [--extras redis,postgres]
#
# The package vendors wheels, not a virtualenv: /usr/share/railwatch/wheels/ holds
# railwatch's wheel and every dependency's (packaging/wheelhouse.py, taken from the
# building Python's site-packages, so no network is needed when they are installed there).
# Its postinst runs the same installer as a source install, offline:
#   /usr/share/railwatch/install.sh --no-start   (user, /opt/railwatch/venv from the wheels,
#                                                 /etc/railwatch, /var/lib/railwatch, the unit)
# and the operator then points it at the app (which also starts the service):
#   sudo /usr/share/railwatch/install.sh --app /srv/app
# A venv made on the target by its own python3 avoids shipping interpreter paths; the binary
# wheels (psutil, charset-normalizer) fit the building Python's minor version, so build with
# the Python the servers run (Debian 12: 3.11); the Depends line pins that version.
# `apt remove railwatch` uninstalls (config and state stay); `apt purge` removes those too.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TREE="$(cd "$HERE/../.." && pwd)"
OUT="$TREE/dist" PYTHON=python3 EXTRAS=""
while [ $# -gt 0 ]; do
    case "$1" in
        --out) OUT="$2"; shift ;;
        --python) PYTHON="$2"; shift ;;
        --extras) EXTRAS="$2"; shift ;;
        -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "build.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
command -v dpkg-deb >/dev/null || { echo "build.sh: dpkg-deb not found (apt-get install dpkg)" >&2; exit 1; }

VERSION="$("$PYTHON" -c 'import re,sys; print(re.search(r"^version\s*=\s*\"([^\"]+)\"", open(sys.argv[1]).read(), re.M).group(1))' "$TREE/pyproject.toml")"
PYVER="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
PYNEXT="$("$PYTHON" -c 'import sys; print("%d.%d" % (sys.version_info[0], sys.version_info[1] + 1))')"
ARCH="$(dpkg --print-architecture)"
STAGE="$(mktemp -d)"
trap 'rm -rf "$STAGE"' EXIT
chmod 0755 "$STAGE"
SHARE="$STAGE/usr/share/railwatch"

mkdir -p "$SHARE/systemd" "$SHARE/wheels" "$STAGE/DEBIAN" "$STAGE/usr/share/doc/railwatch"
"$PYTHON" "$TREE/packaging/wheelhouse.py" --out "$SHARE/wheels" ${EXTRAS:+--extras "$EXTRAS"} >/dev/null
install -m 0755 "$TREE/packaging/install.sh" "$SHARE/install.sh"
install -m 0644 "$TREE/packaging/systemd/railwatch.service" "$SHARE/systemd/railwatch.service"
install -m 0644 "$TREE/packaging/railwatch.example.toml" "$SHARE/railwatch.example.toml"
install -m 0644 "$TREE/README.md" "$STAGE/usr/share/doc/railwatch/README.md"
# the man page, generated from the CLI's own help (packaging/gen_manpage.py), gzipped as Debian wants
mkdir -p "$STAGE/usr/share/man/man1"
"$PYTHON" "$TREE/packaging/gen_manpage.py" "$STAGE/usr/share/man/man1/railwatch.1" >/dev/null
gzip -9n "$STAGE/usr/share/man/man1/railwatch.1"
chmod 0644 "$STAGE/usr/share/man/man1/railwatch.1.gz"
[ ! -f "$TREE/packaging/README.md" ] || install -m 0644 "$TREE/packaging/README.md" "$STAGE/usr/share/doc/railwatch/OPERATIONS.md"
printf 'railwatch %s\nLicense: MIT\nThe vendored wheels in /usr/share/railwatch/wheels keep their own licences (see each wheel).\n' \
    "$VERSION" > "$STAGE/usr/share/doc/railwatch/copyright"

SIZE="$(du -sk "$STAGE/usr" | cut -f1)"
cat > "$STAGE/DEBIAN/control" <<EOF
Package: railwatch
Version: $VERSION
Architecture: $ARCH
Maintainer: railwatch maintainers <railwatch@localhost>
Installed-Size: $SIZE
Depends: python3 (>= $PYVER), python3 (<< $PYNEXT), python3-venv, passwd
Section: admin
Priority: optional
Description: Rails production monitor: pool exhaustion, N+1 spikes, Sidekiq failure storms
 railwatch reads the logs a Rails app already writes (Rails, lograge, Sidekiq, Puma,
 Postgres, PgBouncer) and opens incidents, with a diagnostic bundle, when a connection
 pool is exhausted, an N+1 query spike starts, or Sidekiq jobs fail in a storm.
 Runs as a hardened systemd service. Configure with:
 sudo /usr/share/railwatch/install.sh --app /srv/app
EOF
cat > "$STAGE/DEBIAN/postinst" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
    # user, venv from the vendored wheels (offline), config, state, unit; re-running upgrades
    /usr/share/railwatch/install.sh --no-start --python /usr/bin/python3
    if [ -d /run/systemd/system ]; then
        systemctl try-restart railwatch.service || true  # an upgrade: restart it if it was running
    fi
fi
exit 0
EOF
cat > "$STAGE/DEBIAN/prerm" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = remove ]; then
    /usr/share/railwatch/install.sh --uninstall || true  # keeps /etc/railwatch and /var/lib/railwatch
fi
exit 0
EOF
cat > "$STAGE/DEBIAN/postrm" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = purge ]; then
    rm -rf /var/lib/railwatch
    rm -f /etc/railwatch/railwatch.toml /etc/railwatch/railwatch.toml.new /etc/railwatch/railwatch.example.toml
    rmdir /etc/railwatch 2>/dev/null || true
fi
exit 0
EOF
chmod 0755 "$STAGE/DEBIAN/postinst" "$STAGE/DEBIAN/prerm" "$STAGE/DEBIAN/postrm"

mkdir -p "$OUT"
DEB="$OUT/railwatch_${VERSION}_${ARCH}.deb"
dpkg-deb --root-owner-group -Zxz --build "$STAGE" "$DEB" >/dev/null
echo "$DEB"
