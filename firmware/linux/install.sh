#!/bin/sh
# install.sh: install the edgecore agent on this Linux system, or into an image tree.
#
#   install.sh [--root DIR] [--wheel FILE] [--wheelhouse DIR] [--python PY]
#              [--target-python PATH] [--no-enable]
#
# Lays down (paths under --root DIR, default /):
#   /opt/edgecore/                  a venv with the edgecore wheel and its dependency (requests)
#   /usr/local/bin/edgecore         -> /opt/edgecore/bin/edgecore (unless something else is there)
#   /etc/edgecore/agent.json        from agent.json.template, mode 0600, ONLY if absent
#   /var/lib/edgecore{,/models,/state}  mode 0750, owned by the edgecore user
#   /usr/lib/systemd/system/edgecore.service, /usr/lib/sysusers.d/edgecore.conf,
#   /usr/lib/tmpfiles.d/edgecore.conf (when run from a source tree; the overlay has them)
#   /etc/systemd/system/multi-user.target.wants/edgecore.service (enable; not with --no-enable)
# and creates the system user `edgecore` when run as root (useradd --system; with --root,
# `useradd --root DIR` if DIR has /etc/passwd). Without root, ownership is left to
# systemd-sysusers/systemd-tmpfiles at first boot (the sysusers.d/tmpfiles.d files above).
#
# Idempotent: a second run with the same inputs changes nothing (the venv is only rebuilt
# when the wheel's SHA-256 differs from the one recorded in /opt/edgecore/.edgecore-wheel),
# and an existing /etc/edgecore/agent.json is never touched.
#
# Dependencies come from pip's index (PyPI) unless a wheelhouse is given (--wheelhouse DIR,
# or EDGECORE_WHEELHOUSE, or a wheels/ directory next to this script): then offline.
# --root DIR builds the venv with this host's Python and rewrites its paths for the
# target; the target's interpreter (--target-python, default /usr/bin/python3) must be the
# same Python minor version on the same architecture (pip picks wheels for the host):
# otherwise run this script without --root inside the image's chroot, as pi-gen does.
# pip >= 22.3 on the host (`pip --python`) or ensurepip (python3-venv) is needed.
#
# Nothing of the caller's Python or pip environment reaches the install: PYTHONPATH,
# PYTHONHOME, the user site and every PIP_* variable are dropped and each interpreter
# runs isolated (-I), so an edgecore already importable in the caller's shell (a source
# tree on PYTHONPATH) cannot make pip skip it. Before reporting success the venv must
# import edgecore and the agent's entry point from its own site-packages.
set -eu
umask 022

# The caller's environment must not decide what pip installs (or where).
for v in $(env | sed -n 's/^\(PIP_[A-Za-z0-9_]*\)=.*/\1/p'); do unset "$v"; done
unset PYTHONPATH PYTHONHOME PYTHONUSERBASE PYTHONSTARTUP PYTHONEXECUTABLE VIRTUAL_ENV
export PYTHONNOUSERSITE=1

PREFIX=/opt/edgecore
USER_NAME=edgecore
STATE=/var/lib/edgecore
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=/
PYTHON=${PYTHON:-python3}
TARGET_PYTHON=/usr/bin/python3
WHEEL=
WHEELHOUSE=${EDGECORE_WHEELHOUSE:-}
ENABLE=1

say() { printf 'install.sh: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }

while [ $# -gt 0 ]; do
    case "$1" in
        --root) [ $# -ge 2 ] || die "--root needs a directory"; ROOT=$2; shift 2 ;;
        --root=*) ROOT=${1#*=}; shift ;;
        --wheel) [ $# -ge 2 ] || die "--wheel needs a file"; WHEEL=$2; shift 2 ;;
        --wheel=*) WHEEL=${1#*=}; shift ;;
        --wheelhouse) [ $# -ge 2 ] || die "--wheelhouse needs a directory"; WHEELHOUSE=$2; shift 2 ;;
        --wheelhouse=*) WHEELHOUSE=${1#*=}; shift ;;
        --python) [ $# -ge 2 ] || die "--python needs an interpreter"; PYTHON=$2; shift 2 ;;
        --python=*) PYTHON=${1#*=}; shift ;;
        --target-python) [ $# -ge 2 ] || die "--target-python needs a path"; TARGET_PYTHON=$2; shift 2 ;;
        --target-python=*) TARGET_PYTHON=${1#*=}; shift ;;
        --notify) say "--notify: the unit is Type=notify with WatchdogSec= by default now"; shift ;;
        --no-enable) ENABLE=0; shift ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
done

[ -d "$ROOT" ] || die "--root $ROOT: not a directory"
ROOT=$(cd "$ROOT" && pwd)
if [ "$ROOT" = / ]; then R=; else R=$ROOT; fi
case "$TARGET_PYTHON" in /*) ;; *) die "--target-python must be an absolute path" ;; esac

if [ -z "$WHEEL" ]; then
    for f in "$HERE"/edgecore-*.whl; do
        [ -f "$f" ] || continue
        [ -z "$WHEEL" ] || die "several edgecore wheels in $HERE: pass --wheel FILE"
        WHEEL=$f
    done
    [ -n "$WHEEL" ] || die "no edgecore-*.whl next to $0: pass --wheel FILE (build-overlay.sh makes one)"
fi
[ -f "$WHEEL" ] || die "--wheel $WHEEL: no such file"
if [ -z "$WHEELHOUSE" ] && [ -d "$HERE/wheels" ]; then WHEELHOUSE=$HERE/wheels; fi
[ -z "$WHEELHOUSE" ] || [ -d "$WHEELHOUSE" ] || die "wheelhouse $WHEELHOUSE: not a directory"

is_root() { [ "$(id -u)" = 0 ]; }

# --- the system user --------------------------------------------------------------------
passwd_field() { # passwd_field FILE NAME FIELD
    [ -f "$1" ] && awk -F: -v n="$2" -v f="$3" '$1 == n { print $f; exit }' "$1"
}
if [ -z "$(passwd_field "$R/etc/passwd" "$USER_NAME" 1)" ]; then
    if ! is_root; then
        say "not root: user $USER_NAME not created (systemd-sysusers creates it at boot)"
    elif ! command -v useradd >/dev/null 2>&1; then
        say "no useradd: user $USER_NAME left to systemd-sysusers at boot"
    elif [ -z "$R" ]; then
        useradd --system --user-group --home-dir "$STATE" --no-create-home \
            --shell /usr/sbin/nologin --comment "edgecore device agent" "$USER_NAME"
    elif [ -f "$R/etc/passwd" ] && [ -f "$R/etc/group" ]; then
        useradd --root "$R" --system --user-group --home-dir "$STATE" --no-create-home \
            --shell /usr/sbin/nologin --comment "edgecore device agent" "$USER_NAME" ||
            say "useradd --root $R failed: user $USER_NAME left to systemd-sysusers at boot"
    else
        say "$R/etc/passwd missing: user $USER_NAME left to systemd-sysusers at boot"
    fi
fi
UID_=$(passwd_field "$R/etc/passwd" "$USER_NAME" 3 || true)
GID_=$(passwd_field "$R/etc/passwd" "$USER_NAME" 4 || true)

# chown only as root and only with the target tree's numeric ids (never the host's names).
own() { # own UID GID PATH
    if is_root && [ -n "$1" ] && [ -n "$2" ]; then chown -h "$1:$2" "$3"; fi
}
make_dir() { # make_dir PATH MODE UID GID
    mkdir -p "$1"
    chmod "$2" "$1"
    own "$3" "$4" "$1"
}
put_file() { # put_file SRC DST MODE: copy only when the content differs
    if [ "$(cd "$(dirname "$1")" && pwd)/$(basename "$1")" = "$2" ]; then :
    elif ! cmp -s "$1" "$2" 2>/dev/null; then
        mkdir -p "$(dirname "$2")"
        cp "$1" "$2.tmp.$$"
        chmod "$3" "$2.tmp.$$"
        mv -f "$2.tmp.$$" "$2"
    fi
    chmod "$3" "$2"
}
put_link() { # put_link TARGET LINK
    mkdir -p "$(dirname "$2")"
    if [ "$(readlink "$2" 2>/dev/null || true)" != "$1" ]; then ln -sfn "$1" "$2"; fi
}

# --- systemd files (already in place when unpacked from the overlay) -----------------
unit_src=$HERE/edgecore.service
[ -f "$unit_src" ] || unit_src=$R/usr/lib/systemd/system/edgecore.service
[ -f "$unit_src" ] || die "edgecore.service not found next to $0 nor in $R/usr/lib/systemd/system"
put_file "$unit_src" "$R/usr/lib/systemd/system/edgecore.service" 0644
for pair in edgecore.sysusers:sysusers.d edgecore.tmpfiles:tmpfiles.d; do
    if [ -f "$HERE/${pair%%:*}" ]; then
        put_file "$HERE/${pair%%:*}" "$R/usr/lib/${pair#*:}/edgecore.conf" 0644
    fi
done
if [ "$ENABLE" = 1 ]; then
    put_link /usr/lib/systemd/system/edgecore.service \
        "$R/etc/systemd/system/multi-user.target.wants/edgecore.service"
fi

# --- config and data directories -------------------------------------------------------
make_dir "$R/etc/edgecore" 0750 0 "$GID_"
config=$R/etc/edgecore/agent.json
if [ -e "$config" ] || [ -L "$config" ]; then
    say "$config exists: left as it is"
else
    template=$HERE/agent.json.template
    [ -f "$template" ] || template=$HERE/agent.json
    [ -f "$template" ] || die "agent.json template not found next to $0"
    (umask 077 && cp "$template" "$config.tmp.$$")
    chmod 0600 "$config.tmp.$$"
    own "$UID_" "$GID_" "$config.tmp.$$"
    mv -f "$config.tmp.$$" "$config"
    say "wrote $config from the template: fill in the <...> values"
fi
make_dir "$R$STATE" 0750 "$UID_" "$GID_"
make_dir "$R$STATE/models" 0750 "$UID_" "$GID_"
make_dir "$R$STATE/state" 0750 "$UID_" "$GID_"

# --- the venv ---------------------------------------------------------------------------
VENV=$R$PREFIX
STAMP=$VENV/.edgecore-wheel
want=$(sha256sum "$WHEEL" | cut -d' ' -f1)

pip_run() {
    if "$PYTHON" -I -m pip --python "$VENV/bin/python" --version >/dev/null 2>&1; then
        "$PYTHON" -I -m pip --isolated --python "$VENV/bin/python" "$@"
    else
        "$VENV/bin/python" -I -m pip --version >/dev/null 2>&1 ||
            "$VENV/bin/python" -I -m ensurepip --default-pip >/dev/null ||
            die "no pip: install python3-pip (>= 22.3) or python3-venv"
        "$VENV/bin/python" -I -m pip --isolated "$@"
    fi
}

# The venv imports edgecore and the agent's entry point, from its own site-packages.
check_venv() {
    [ -f "$VENV/bin/edgecore" ] || die "$VENV/bin/edgecore missing after pip install"
    where=$(cd / && "$VENV/bin/python" -I -c 'import edgecore, edgecore_ports.runner, sys
from edgecore_tools.cli import main
print(edgecore.__file__)') || die "the venv $VENV cannot import edgecore's agent (see above)"
    case "$where" in
        "$VENV"/*) ;;
        *) die "the venv $VENV imports edgecore from $where, not from itself" ;;
    esac
}

installed_files() {
    for f in "$VENV"/lib/python*/site-packages/edgecore/__init__.py \
        "$VENV"/lib/python*/site-packages/edgecore_tools/cli.py; do
        [ -f "$f" ] || return 1
    done
}

if [ -f "$VENV/pyvenv.cfg" ] && [ "$(cat "$STAMP" 2>/dev/null || true)" = "$want" ] &&
    installed_files; then
    say "$PREFIX is up to date (wheel $want)"
else
    if [ -n "$R" ] && [ -d "$VENV/bin" ]; then
        # A relocated venv points at the target's interpreter: point it back at ours.
        find "$VENV/bin" -maxdepth 1 -type l -name 'python*' -exec rm -f {} +
    fi
    "$PYTHON" -I -m venv --without-pip "$VENV"
    set -- --no-input --disable-pip-version-check --no-cache-dir --quiet
    if [ -n "$WHEELHOUSE" ]; then set -- "$@" --no-index --find-links "$WHEELHOUSE"; fi
    if [ -f "$STAMP" ]; then
        # Another build of edgecore: replace it even if the version is the same.
        pip_run install "$@" --force-reinstall --no-deps "$WHEEL"
    fi
    pip_run install "$@" "$WHEEL"
    check_venv
    printf '%s\n' "$want" >"$STAMP"
    say "installed $(basename "$WHEEL") into $PREFIX"
fi

if [ -n "$R" ]; then
    # Relocate: the venv was made at $VENV with this host's Python; on the device it is
    # $PREFIX with $TARGET_PYTHON. Scripts' shebangs and activate files carry the path.
    for f in "$VENV"/bin/*; do
        if [ -f "$f" ] && [ ! -L "$f" ] && grep -q "$VENV" "$f"; then
            sed -i "s|$VENV|$PREFIX|g" "$f"
        fi
    done
    # pip records where the wheel came from: that is $R/usr/lib/edgecore, /usr/lib/edgecore
    # on the device.
    for f in "$VENV"/lib/python*/site-packages/*.dist-info/direct_url.json; do
        if [ -f "$f" ] && grep -q "file://$R/" "$f"; then sed -i "s|file://$R/|file:///|g" "$f"; fi
    done
    for f in "$VENV"/bin/python*; do
        case "$(readlink "$f" 2>/dev/null || true)" in
            /*) put_link "$TARGET_PYTHON" "$f" ;;
        esac
    done
    version=$(sed -n 's/^version *= *//p' "$VENV/pyvenv.cfg")
    printf 'home = %s\ninclude-system-site-packages = false\nversion = %s\n' \
        "$(dirname "$TARGET_PYTHON")" "$version" >"$VENV/pyvenv.cfg.tmp.$$"
    if cmp -s "$VENV/pyvenv.cfg.tmp.$$" "$VENV/pyvenv.cfg"; then
        rm -f "$VENV/pyvenv.cfg.tmp.$$"
    else
        mv -f "$VENV/pyvenv.cfg.tmp.$$" "$VENV/pyvenv.cfg"
    fi
    say "venv relocated to $PREFIX for $TARGET_PYTHON (must be Python ${version%.*})"
fi

link=$R/usr/local/bin/edgecore
if [ ! -e "$link" ] && [ ! -L "$link" ] || [ "$(readlink "$link" 2>/dev/null || true)" = "$PREFIX/bin/edgecore" ]; then
    put_link "$PREFIX/bin/edgecore" "$link"
else
    say "$link exists and is not ours: left as it is"
fi

# --- a live systemd picks up the new unit ---------------------------------------------
if [ -z "$R" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    systemctl daemon-reload || true
    if command -v systemd-sysusers >/dev/null 2>&1; then systemd-sysusers edgecore.conf || true; fi
    say "done: edit $config, then: systemctl restart edgecore"
else
    say "done (root $ROOT)"
fi
