#!/usr/bin/env bash
# Idempotent set-up: a virtualenv in .venv with edgecore and its test tools, and the
# MicroPython WebAssembly runtime for the core's MicroPython tests. Needs python3 and npm.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
stamp=.venv/.edgecore-installed
if [ ! -f "$stamp" ] || [ setup.cfg -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
  touch "$stamp"
fi
if [ ! -d tests/micropython/node_modules/@micropython ]; then
  npm ci --silent --no-audit --no-fund --prefix tests/micropython
fi
