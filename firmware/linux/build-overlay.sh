#!/bin/sh
# build-overlay.sh: the Linux device image overlay, a tarball to unpack onto a board's root
# file system (or to hand to pi-gen / a Yocto or Buildroot recipe), then run install.sh.
#
#   bash firmware/linux/build-overlay.sh [--wheelhouse DIR] [OUT.tar.gz]
#
# OUT defaults to dist/edgecore-overlay-<version>.tar.gz. The tarball holds regular
# files only (owner root, mode 0644/0755; no directory entries, so unpacking never
# changes an existing directory's mode or replaces a /lib -> usr/lib symlink):
#   usr/lib/edgecore/edgecore-<version>-py3-none-any.whl   built from this source tree
#   usr/lib/edgecore/install.sh                            see its header
#   usr/lib/edgecore/agent.json.template                   -> /etc/edgecore/agent.json
#   usr/lib/edgecore/wheels/*.whl                          only with --wheelhouse: offline deps
#   usr/lib/systemd/system/edgecore.service
#   usr/lib/sysusers.d/edgecore.conf, usr/lib/tmpfiles.d/edgecore.conf
# On the board (or with --root for an image tree):
#   tar -xzf edgecore-overlay-*.tar.gz -C / && /usr/lib/edgecore/install.sh
#
# The wheel is built offline (pip wheel --no-build-isolation) when setuptools and wheel
# are importable by $PYTHON (default: the repo's .venv, else python3); otherwise pip
# builds it in an isolated environment, which needs its package index. The build works
# on a copy of the sources, so it never leaves build/ or stale files in the tree.
# SOURCE_DATE_EPOCH (default: the newest source file's mtime) fixes the archive's mtimes.
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$REPO/.venv/bin/python" ]; then PYTHON=$REPO/.venv/bin/python; else PYTHON=python3; fi
fi
WHEELHOUSE=
OUT=
while [ $# -gt 0 ]; do
    case "$1" in
        --wheelhouse) [ $# -ge 2 ] || { echo "build-overlay.sh: --wheelhouse needs a directory" >&2; exit 2; }
            WHEELHOUSE=$2; shift 2 ;;
        --wheelhouse=*) WHEELHOUSE=${1#*=}; shift ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        -*) echo "build-overlay.sh: unknown option $1" >&2; exit 2 ;;
        *) [ -z "$OUT" ] || { echo "build-overlay.sh: one output file only" >&2; exit 2; }
            OUT=$1; shift ;;
    esac
done
if [ -n "$WHEELHOUSE" ] && [ ! -d "$WHEELHOUSE" ]; then
    echo "build-overlay.sh: --wheelhouse $WHEELHOUSE: not a directory" >&2; exit 2
fi

VERSION=$(sed -n 's/^version *= *//p' "$REPO/setup.cfg")
[ -n "$OUT" ] || OUT=$REPO/dist/edgecore-overlay-$VERSION.tar.gz
mkdir -p "$(dirname "$OUT")"
OUT=$(cd "$(dirname "$OUT")" && pwd)/$(basename "$OUT")

WORK=$(mktemp -d "${TMPDIR:-/tmp}/edgecore-overlay.XXXXXX")
trap 'rm -rf "$WORK"' EXIT INT TERM

# 1. The wheel, from a clean copy of what setup.cfg packages.
mkdir -p "$WORK/src"
(cd "$REPO" && tar -cf - --exclude=__pycache__ --exclude='*.pyc' \
    setup.cfg pyproject.toml README.md edgecore ports edgecore_tools) | tar -xf - -C "$WORK/src"
# The fleet server (edgecore_fleet) never goes onto a device: drop it from the copy's
# setup.cfg (its packages, package data and console script).
sed -i '/edgecore_fleet/d' "$WORK/src/setup.cfg"
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
    SOURCE_DATE_EPOCH=$(find "$WORK/src" -type f -printf '%T@\n' | sort -n | tail -1 | cut -d. -f1)
fi
export SOURCE_DATE_EPOCH
if "$PYTHON" -c 'import setuptools, wheel' >/dev/null 2>&1; then
    set -- --no-build-isolation --no-index
else
    echo "build-overlay.sh: setuptools/wheel not importable by $PYTHON: isolated build" >&2
    set --
fi
"$PYTHON" -m pip wheel --no-deps --quiet --disable-pip-version-check "$@" \
    -w "$WORK/dist" "$WORK/src" >&2
set -- "$WORK"/dist/edgecore-*.whl
if [ $# != 1 ] || [ ! -f "$1" ]; then echo "build-overlay.sh: no wheel was built" >&2; exit 1; fi
WHL=$1

# 2. The tree, laid out as on the device.
S=$WORK/root
L=$S/usr/lib/edgecore
mkdir -p "$L" "$S/usr/lib/systemd/system" "$S/usr/lib/sysusers.d" "$S/usr/lib/tmpfiles.d"
cp "$WHL" "$L/"
cp "$HERE/install.sh" "$L/install.sh"
cp "$HERE/agent.json" "$L/agent.json.template"
cp "$HERE/edgecore.service" "$S/usr/lib/systemd/system/edgecore.service"
cp "$HERE/edgecore.sysusers" "$S/usr/lib/sysusers.d/edgecore.conf"
cp "$HERE/edgecore.tmpfiles" "$S/usr/lib/tmpfiles.d/edgecore.conf"
if [ -n "$WHEELHOUSE" ]; then
    mkdir -p "$L/wheels"
    n=0
    for f in "$WHEELHOUSE"/*.whl; do
        [ -f "$f" ] || continue
        case "$(basename "$f")" in edgecore-*) continue ;; esac
        cp "$f" "$L/wheels/"; n=$((n + 1))
    done
    [ "$n" -gt 0 ] || { echo "build-overlay.sh: no wheels in $WHEELHOUSE" >&2; exit 1; }
fi
find "$S" -type f -exec chmod 0644 {} +
chmod 0755 "$L/install.sh"

# 3. The tarball: files only, sorted, root-owned, fixed mtimes (reproducible).
(cd "$S" && find . -type f | sed 's|^\./||' | LC_ALL=C sort) >"$WORK/files"
tar -C "$S" -cf - --no-recursion --owner=0 --group=0 --numeric-owner \
    --mtime="@$SOURCE_DATE_EPOCH" -T "$WORK/files" | gzip -n -9 >"$OUT.tmp"
mv -f "$OUT.tmp" "$OUT"
echo "$OUT"
echo "build-overlay.sh: $(basename "$OUT"): $(($(wc -c <"$OUT") / 1024)) KiB, $(wc -l <"$WORK/files") files" >&2
