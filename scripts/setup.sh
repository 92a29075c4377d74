#!/usr/bin/env bash
# Idempotent set-up: a virtualenv in .venv with edgecore and its test tools. Needs python3
# only (the MicroPython builds the tests run on are firmware/micropython/build.sh's).
#   bash scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 0 ] || { echo "setup.sh: unknown argument $1 (it takes none)" >&2; exit 2; }
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
stamp=.venv/.edgecore-installed
if [ ! -f "$stamp" ] || [ setup.cfg -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
  touch "$stamp"
fi
