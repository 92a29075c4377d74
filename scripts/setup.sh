#!/usr/bin/env bash
# Idempotent set-up: a virtualenv in .venv with edgecore and its test tools. Needs python3.
#   bash scripts/setup.sh                 what the demo needs (no Node)
#   bash scripts/setup.sh --micropython   also the MicroPython WebAssembly runtime that the
#                                         core's MicroPython tests run on (needs npm)
set -euo pipefail
cd "$(dirname "$0")/.."
micropython=0
for arg in "$@"; do
  case "$arg" in
    --micropython) micropython=1 ;;
    *) echo "setup.sh: unknown argument $arg (see the header)" >&2; exit 2 ;;
  esac
done
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
stamp=.venv/.edgecore-installed
if [ ! -f "$stamp" ] || [ setup.cfg -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
  touch "$stamp"
fi
if [ "$micropython" = 1 ] && [ ! -d tests/micropython/node_modules/@micropython ]; then
  command -v npm >/dev/null || { echo "setup.sh: --micropython needs npm (Node.js)" >&2; exit 1; }
  npm ci --silent --no-audit --no-fund --prefix tests/micropython
fi
