#!/usr/bin/env bash
# The README's main command: start a local Edge Manager endpoint and an S3 stand-in (both
# checking SigV4 signatures), deploy a small generated model, run the agent until the model
# is active and the heartbeat reports SUCCESS, and print what happened. No AWS account needed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m edgecore_tools.demo "$@"
