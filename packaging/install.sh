#!/usr/bin/env bash
# Install railwatch on a Debian/Ubuntu or RHEL-family server, in one command:
#
#   sudo packaging/install.sh --app /srv/app                          # from this source tree
#   sudo ./install.sh --app /srv/app --wheel railwatch-0.1.0-py3-none-any.whl --wheel-dir wheels/   # offline
#   sudo packaging/install.sh --uninstall [--purge]
#   sudo /usr/share/railwatch/install.sh --app /srv/app               # after installing the .deb
#
# What it creates (each recorded in PREFIX/install-manifest, which --uninstall follows):
#   user railwatch        system user, no login, no home; added to the group owning the app's log dir
#   /opt/railwatch/venv   a virtualenv with railwatch and its dependencies (re-running upgrades it)
#   /etc/railwatch/railwatch.toml   from `railwatch init-config --app DIR`; 0640 root:railwatch; a file
#                         you edited is never overwritten (the new one is written beside it as .new)
#   /var/lib/railwatch    state (incident store, tail positions, bundles); 0700 railwatch
#   /etc/systemd/system/railwatch.service (+ .d/10-install.conf when the logs are under /home or /tmp)
#   /usr/local/bin/railwatch -> the venv's command
# The service is enabled and (re)started when systemd runs and the config names a log.
#
# --root DIR installs everything under DIR instead of / (tests, trying it without root): no
# user, no chown, no systemctl; the files written name the DIR paths, so DIR's venv runs as is.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
NAME=railwatch
APP="" RAILS_ENV_NAME=production WHEEL="" WHEEL_DIR="" SOURCE="" EXTRAS="" PYTHON="${PYTHON:-python3}"
ROOT="" PREFIX="" CONFIG_DIR="" STATE_DIR="" UNIT_DIR=/etc/systemd/system BIN_DIR=/usr/local/bin SVC_USER=""
UNINSTALL=0 PURGE=0 NO_START=0

say() { printf 'install.sh: %s\n' "$*"; }
warn() { printf 'install.sh: warning: %s\n' "$*" >&2; }
die() { printf 'install.sh: error: %s\n' "$*" >&2; exit 1; }

usage() {
    sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    cat <<'EOF'
Options:
  --app DIR          Rails root (or Capistrano deploy root) to watch: logs and Puma control app discovered
  --env NAME         RAILS_ENV (default production): follows log/NAME.log
  --wheel FILE       install this railwatch wheel instead of the source tree
  --wheel-dir DIR    install dependencies only from the wheels in DIR (no index, works offline)
  --source DIR       the railwatch source tree (default: the one holding this script)
  --extras LIST      optional collectors' packages, e.g. redis,postgres
  --python PATH      the Python (>= 3.9, with venv) for the virtualenv (default python3)
  --name NAME        one name for the user, unit, and default dirs (default railwatch)
  --user NAME        the service user (default: --name)
  --prefix DIR       default /opt/NAME (the venv is PREFIX/venv)
  --config-dir DIR   default /etc/NAME
  --state-dir DIR    default /var/lib/NAME
  --unit-dir DIR     default /etc/systemd/system
  --bin-dir DIR      where the `NAME` command link goes (default /usr/local/bin)
  --root DIR         install under DIR (no user, chown or systemctl)
  --no-start         install and enable, but do not (re)start the service
  --uninstall        remove what an install created; config and state stay unless --purge
  --purge            with --uninstall: remove the config and the state directory too
EOF
}

while [ $# -gt 0 ]; do
    case "$1" in
        --app) APP="$2"; shift ;;
        --env) RAILS_ENV_NAME="$2"; shift ;;
        --wheel) WHEEL="$2"; shift ;;
        --wheel-dir) WHEEL_DIR="$2"; shift ;;
        --source) SOURCE="$2"; shift ;;
        --extras) EXTRAS="$2"; shift ;;
        --python) PYTHON="$2"; shift ;;
        --name) NAME="$2"; shift ;;
        --user) SVC_USER="$2"; shift ;;
        --prefix) PREFIX="$2"; shift ;;
        --config-dir) CONFIG_DIR="$2"; shift ;;
        --state-dir) STATE_DIR="$2"; shift ;;
        --unit-dir) UNIT_DIR="$2"; shift ;;
        --bin-dir) BIN_DIR="$2"; shift ;;
        --root) ROOT="$2"; shift ;;
        --no-start) NO_START=1 ;;
        --uninstall) UNINSTALL=1 ;;
        --purge) PURGE=1 ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
    shift
done

[[ "$NAME" =~ ^[a-z][a-z0-9-]{0,30}$ ]] || die "--name must be lowercase letters, digits and dashes"
SVC_USER="${SVC_USER:-$NAME}"
PREFIX="${PREFIX:-/opt/$NAME}" CONFIG_DIR="${CONFIG_DIR:-/etc/$NAME}" STATE_DIR="${STATE_DIR:-/var/lib/$NAME}"
if [ -n "$ROOT" ]; then
    mkdir -p "$ROOT"
    ROOT="$(cd "$ROOT" && pwd)"
fi
# every path as it is on this machine (under --root when given)
P="$ROOT$PREFIX" VENV="$ROOT$PREFIX/venv" CONF_DIR="$ROOT$CONFIG_DIR" STATE="$ROOT$STATE_DIR"
CONFIG="$CONF_DIR/railwatch.toml" UNIT="$ROOT$UNIT_DIR/$NAME.service" DROPIN="$ROOT$UNIT_DIR/$NAME.service.d"
LINK="$ROOT$BIN_DIR/$NAME" MANIFEST="$ROOT$PREFIX/install-manifest"
for path in "$ROOT" "$PREFIX" "$CONFIG_DIR" "$STATE_DIR" "$UNIT_DIR" "$BIN_DIR"; do
    [[ "$path" =~ ^[A-Za-z0-9_./+-]*$ ]] || die "paths may only hold letters, digits and _./+- ($path)"
done
for path in "$PREFIX" "$CONFIG_DIR" "$STATE_DIR" "$UNIT_DIR" "$BIN_DIR"; do
    [[ "$path" == /?* ]] || die "$path: expected an absolute path"
done

if [ -z "$ROOT" ] && [ "$(id -u)" != 0 ]; then
    die "run as root (sudo), or pass --root DIR to install under a directory"
fi
systemd_running() { [ -z "$ROOT" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; }
sha() { sha256sum "$1" 2>/dev/null | cut -d' ' -f1; }

# ------------------------------------------------------------------ manifest (what this script created)
declare -A M=()
read_manifest() {
    [ -f "$MANIFEST" ] || return 0
    local k v
    while IFS='=' read -r k v; do
        [[ "$k" =~ ^[A-Z_]+$ ]] && M[$k]="$v"
    done < "$MANIFEST"
}
write_manifest() {
    local k
    { for k in "${!M[@]}"; do printf '%s=%s\n' "$k" "${M[$k]}"; done; } | sort > "$MANIFEST.tmp"
    chmod 0644 "$MANIFEST.tmp" && mv "$MANIFEST.tmp" "$MANIFEST"
}
read_manifest
# directories this script had to create (parents included), removed again on uninstall if empty
mkdir_tracked() {
    local d="$1"
    while [ ! -d "$d" ]; do M[CREATED_DIRS]="${M[CREATED_DIRS]:-} $d"; d="$(dirname "$d")"; done
    mkdir -p "$1"
    [ ! -d "$P" ] || write_manifest  # kept current, so a failed install can still be uninstalled
}

# ------------------------------------------------------------------ uninstall
if [ "$UNINSTALL" = 1 ]; then
    [ -f "$MANIFEST" ] || warn "no $MANIFEST: removing the default paths; a user is only removed when the manifest says this script created it"
    if systemd_running; then
        systemctl disable --now "$NAME.service" >/dev/null 2>&1 || true
    fi
    rm -f "$UNIT"
    rm -rf "$DROPIN"
    if systemd_running; then
        systemctl daemon-reload || true
        systemctl reset-failed "$NAME.service" >/dev/null 2>&1 || true
    fi
    if [ -L "$LINK" ] && [ "$(readlink "$LINK")" = "$VENV/bin/railwatch" ]; then rm -f "$LINK"; fi
    rm -rf "$P"
    if [ "$PURGE" = 1 ]; then
        rm -rf "$STATE"
        rm -f "$CONFIG" "$CONFIG.new" "$CONF_DIR/railwatch.example.toml"
        rmdir "$CONF_DIR" 2>/dev/null || warn "$CONF_DIR kept: it holds files this script did not write"
    else
        say "kept $CONF_DIR and $STATE (pass --purge to remove them too)"
    fi
    if [ -z "$ROOT" ]; then
        if [ "${M[USER_CREATED]:-0}" = 1 ] && getent passwd "$SVC_USER" >/dev/null; then
            userdel "$SVC_USER" 2>/dev/null || warn "could not remove user $SVC_USER"
            if getent group "$SVC_USER" >/dev/null && [ "${M[GROUP_CREATED]:-0}" = 1 ]; then groupdel "$SVC_USER" 2>/dev/null || true; fi
        else
            for g in ${M[GROUPS_ADDED]:-}; do gpasswd -d "$SVC_USER" "$g" >/dev/null 2>&1 || true; done
        fi
    fi
    for d in $(printf '%s\n' ${M[CREATED_DIRS]:-} | awk '{ print length, $0 }' | sort -rn | cut -d' ' -f2-); do
        [ "$d" != "$P" ] || continue
        if [ "$PURGE" = 0 ]; then case "$d" in "$STATE"|"$CONF_DIR") continue ;; esac; fi
        rmdir "$d" 2>/dev/null || true  # deepest first; a directory still holding something stays
    done
    say "uninstalled $NAME"
    exit 0
fi

# ------------------------------------------------------------------ checks
command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found: install Python 3.9 or newer (apt-get install python3 / dnf install python3)"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 9))' || die "$PYTHON is $("$PYTHON" -V 2>&1): railwatch needs Python 3.9 or newer (--python PATH)"
if ! "$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1; then hint="apt-get install python3-venv"; else hint="dnf install python3 (or python3-libs)"; fi
    die "$PYTHON cannot create virtualenvs (no venv/ensurepip): $hint"
fi
[ -z "$APP" ] || [ -d "$APP" ] || die "--app $APP: no such directory"
[ -z "$APP" ] || APP="$(cd "$APP" && pwd)"
if [ -n "$WHEEL" ]; then
    [ -f "$WHEEL" ] || die "--wheel $WHEEL: no such file"
    WHEEL="$(cd "$(dirname "$WHEEL")" && pwd)/$(basename "$WHEEL")"
elif [ -z "$SOURCE" ] && [ ! -f "$HERE/../pyproject.toml" ] && compgen -G "$HERE/wheels/railwatch-*.whl" >/dev/null; then
    # the Debian package's copy: /usr/share/railwatch/{install.sh,wheels/}
    WHEEL="$(ls "$HERE"/wheels/railwatch-*.whl | sort -V | tail -n 1)"
    WHEEL_DIR="${WHEEL_DIR:-$HERE/wheels}"
else
    SOURCE="${SOURCE:-$(dirname "$HERE")}"
    [ -f "$SOURCE/pyproject.toml" ] || die "no source tree at $SOURCE: pass --wheel FILE (and --wheel-dir DIR offline)"
fi
PIP_FLAGS=(--disable-pip-version-check --no-cache-dir -q)
if [ -n "$WHEEL_DIR" ]; then
    [ -d "$WHEEL_DIR" ] || die "--wheel-dir $WHEEL_DIR: no such directory"
    PIP_FLAGS+=(--no-index --find-links "$(cd "$WHEEL_DIR" && pwd)")
fi

# ------------------------------------------------------------------ user
mkdir_tracked "$P"
if [ -z "$ROOT" ]; then
    if ! getent passwd "$SVC_USER" >/dev/null; then
        nologin=/usr/sbin/nologin; [ -x "$nologin" ] || nologin=/sbin/nologin; [ -x "$nologin" ] || nologin=/bin/false
        group_existed=0; getent group "$SVC_USER" >/dev/null && group_existed=1
        if [ "$group_existed" = 1 ]; then gopt=(--gid "$SVC_USER"); else gopt=(--user-group); fi
        useradd --system "${gopt[@]}" --no-create-home --home-dir "$STATE_DIR" --shell "$nologin" \
            --comment "railwatch Rails monitor" "$SVC_USER"
        M[USER_CREATED]=1
        [ "$group_existed" = 1 ] || M[GROUP_CREATED]=1
        write_manifest
        say "created system user $SVC_USER"
    fi
    SVC_GROUP="$(id -gn "$SVC_USER")"
fi

# ------------------------------------------------------------------ virtualenv
py_id='import sys; print(sys.version_info[:2], sys.base_prefix)'
if [ -x "$VENV/bin/python" ] && [ "$("$VENV/bin/python" -c "$py_id" 2>/dev/null)" = "$("$PYTHON" -c "$py_id")" ]; then
    say "upgrading the virtualenv in $VENV"
else
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
    say "created the virtualenv $VENV ($("$VENV/bin/python" -V 2>&1))"
fi
extras=""; [ -z "$EXTRAS" ] || extras="[$EXTRAS]"
if [ -n "$WHEEL" ]; then
    spec="$WHEEL"
else  # build from a copy: setuptools writes build/ and *.egg-info next to the sources
    tmp_src="$(mktemp -d)"
    trap 'rm -rf "$tmp_src"' EXIT
    for f in pyproject.toml README.md agent detectors; do cp -r "$SOURCE/$f" "$tmp_src/"; done
    find "$tmp_src" -name __pycache__ -prune -exec rm -rf {} +
    spec="$tmp_src"
fi
"$VENV/bin/python" -m pip install "${PIP_FLAGS[@]}" --upgrade "$spec$extras"
# the same version again (a rebuilt tree) must still replace the code
"$VENV/bin/python" -m pip install "${PIP_FLAGS[@]}" --force-reinstall --no-deps "$spec"
VERSION="$("$VENV/bin/railwatch" --version | awk '{print $NF}')"
say "installed railwatch $VERSION"
M[VERSION]="$VERSION"
mkdir_tracked "$(dirname "$LINK")"
ln -sfn "$VENV/bin/railwatch" "$LINK"

# ------------------------------------------------------------------ state and config
mkdir_tracked "$STATE"
chmod 0700 "$STATE"
[ -n "$ROOT" ] || chown -R "$SVC_USER:$SVC_GROUP" "$STATE"
mkdir_tracked "$CONF_DIR"
chmod 0755 "$CONF_DIR"
if [ -f "$HERE/railwatch.example.toml" ]; then install -m 0644 "$HERE/railwatch.example.toml" "$CONF_DIR/railwatch.example.toml"; fi

new_config="$(mktemp)"
if [ -n "$APP" ]; then
    "$VENV/bin/railwatch" init-config --app "$APP" --env "$RAILS_ENV_NAME" --state-dir "$STATE" -o "$new_config"
else
    { printf '# railwatch configuration: set [app] root (or [[sources]]), then `railwatch doctor`\n'
      printf '# and `systemctl restart %s`. Every key is in railwatch.example.toml beside this file.\n\n' "$NAME"
      printf '[app]\n# root = "/srv/app"\n\n[state]\ndir = "%s"\n' "$STATE"; } > "$new_config"
fi
if [ ! -f "$CONFIG" ]; then
    install -m 0640 "$new_config" "$CONFIG"; M[CONFIG_SHA]="$(sha "$CONFIG")"
    say "wrote $CONFIG"
elif [ "$(sha "$CONFIG")" = "${M[CONFIG_SHA]:-none}" ] && [ -n "$APP" ]; then
    install -m 0640 "$new_config" "$CONFIG"; M[CONFIG_SHA]="$(sha "$CONFIG")"
    say "regenerated $CONFIG (it was as this script last wrote it)"
elif [ -n "$APP" ] && ! cmp -s "$new_config" "$CONFIG"; then
    install -m 0640 "$new_config" "$CONFIG.new"
    say "kept your edited $CONFIG; the discovered configuration is in $CONFIG.new for comparison"
else
    say "kept $CONFIG"
fi
rm -f "$new_config"
if [ -z "$ROOT" ]; then
    chown root:"$SVC_GROUP" "$CONFIG"; chmod 0640 "$CONFIG"
    [ ! -f "$CONFIG.new" ] || { chown root:"$SVC_GROUP" "$CONFIG.new"; chmod 0640 "$CONFIG.new"; }
fi

# ------------------------------------------------------------------ log access
log_dirs=()
if [ -n "$APP" ]; then mapfile -t log_dirs < <("$VENV/bin/railwatch" init-config --app "$APP" --env "$RAILS_ENV_NAME" --print-log-dirs); fi
if [ -z "$ROOT" ]; then
    added="${M[GROUPS_ADDED]:-}"
    for d in "${log_dirs[@]}"; do
        while [ ! -e "$d" ] && [ "$d" != / ]; do d="$(dirname "$d")"; done
        g="$(stat -L -c %G "$d")"
        if [ "$g" = root ] || [ "$g" = "$SVC_GROUP" ]; then
            warn "$d belongs to group $g: give $SVC_USER read access with an ACL: setfacl -m u:$SVC_USER:rX $d; setfacl -d -m u:$SVC_USER:r $d"
        elif ! id -nG "$SVC_USER" | tr ' ' '\n' | grep -qx "$g"; then
            usermod -a -G "$g" "$SVC_USER"
            added="$added $g"
            say "added $SVC_USER to group $g (owner of $d) so it can read the logs"
        fi
    done
    M[GROUPS_ADDED]="$(echo $added)"
fi

# ------------------------------------------------------------------ systemd unit
mkdir_tracked "$(dirname "$UNIT")"
state_directory=""
case "$STATE_DIR" in /var/lib/*) [ -n "$ROOT" ] || state_directory="${STATE_DIR#/var/lib/}" ;; esac
sed -e "s#/opt/railwatch/venv/bin/railwatch#$VENV/bin/railwatch#" \
    -e "s#/etc/railwatch/railwatch.toml#$CONFIG#" \
    -e "s#^ReadWritePaths=/var/lib/railwatch#ReadWritePaths=$STATE#" \
    -e "s#^User=railwatch#User=$SVC_USER#" -e "s#^Group=railwatch#Group=${SVC_GROUP:-$SVC_USER}#" \
    "$HERE/systemd/railwatch.service" > "$UNIT.tmp"
# Documentation=: the .deb ships the README under /usr/share/doc; a tree install points at the tree's
if [ -n "$SOURCE" ] && [ -f "$SOURCE/README.md" ]; then
    sed -i -e "s#^Documentation=file:/usr/share/doc/railwatch/README.md#Documentation=file:$(cd "$SOURCE" && pwd)/README.md#" "$UNIT.tmp"
fi
if [ -n "$state_directory" ]; then
    sed -i -e "s#^StateDirectory=railwatch#StateDirectory=$state_directory#" "$UNIT.tmp"
else  # StateDirectory= only names directories under /var/lib
    sed -i -e '/^StateDirectory=/d' -e '/^StateDirectoryMode=/d' "$UNIT.tmp"
fi
chmod 0644 "$UNIT.tmp" && mv "$UNIT.tmp" "$UNIT"
rm -rf "$DROPIN"
dropin=()
for d in "$APP" "${log_dirs[@]}"; do
    case "$d" in
        /home/*|/root/*|/run/user/*) dropin+=("ProtectHome=read-only") ;;
        /tmp/*|/var/tmp/*) dropin+=("PrivateTmp=no") ;;
    esac
done
if [ ${#dropin[@]} -gt 0 ]; then
    mkdir_tracked "$DROPIN"
    { echo "# written by install.sh: the app's logs live where the default hardening would hide them"
      echo "[Service]"; printf '%s\n' "${dropin[@]}" | sort -u; } > "$DROPIN/10-install.conf"
    say "unit drop-in $DROPIN/10-install.conf: $(printf '%s ' "${dropin[@]}" | tr ' ' '\n' | sort -u | tr '\n' ' ')"
fi
write_manifest

ready=0
"$VENV/bin/railwatch" config check "$CONFIG" >/dev/null 2>&1 && ready=1
if systemd_running; then
    systemctl daemon-reload
    systemctl enable "$NAME.service" >/dev/null 2>&1
    if [ "$ready" = 1 ] && [ "$NO_START" = 0 ]; then
        systemctl restart "$NAME.service"
        systemctl is-active --quiet "$NAME.service" && say "$NAME.service is running" || warn "$NAME.service did not start: journalctl -u $NAME"
    elif [ "$ready" = 0 ]; then
        say "enabled $NAME.service; start it once $CONFIG names the app: systemctl start $NAME"
    fi
elif [ -z "$ROOT" ]; then
    say "systemd is not running here (a container?): the unit is in $UNIT for when it is. Run the agent with:"
    say "  runuser -u $SVC_USER -- $VENV/bin/railwatch run --config $CONFIG"
else
    say "installed under $ROOT: run it with $VENV/bin/railwatch run --config $CONFIG"
fi
if [ "$ready" = 0 ]; then
    warn "$CONFIG names no log yet: set [app] root (or pass --app DIR and re-run)"
elif [ -z "$ROOT" ]; then
    say "checking (railwatch doctor):"
    "$VENV/bin/railwatch" doctor --config "$CONFIG" --user "$SVC_USER" || true
fi
