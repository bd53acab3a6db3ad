#!/usr/bin/env bash
# The main job on the embedded default: start the built-in capture server on 127.0.0.1,
# send a personalized batch through the engine with a progress bar, print a summary.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/fastsmtp demo "$@"
