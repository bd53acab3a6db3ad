#!/usr/bin/env bash
# Set up a development environment from a clean clone: a virtualenv in .venv with the
# package built in release mode (Rust core via maturin) and the development tools.
# Idempotent; later runs only rebuild what changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
. .venv/bin/activate
# The versions CI used (a lock): pip and maturin's own pip calls both honour it.
export PIP_CONSTRAINT="$PWD/scripts/constraints.txt"
python -m pip install -q --upgrade pip
python -m pip install -q "maturin>=1.7,<2"
# The extension is built for the stable ABI (_fastsmtp.abi3.so). A version-specific build
# left over from before (_fastsmtp.cpython-311-*.so) would be imported in its place: remove it.
rm -f python/fastsmtp/_fastsmtp.cpython-*.so
# Installs the runtime and dev dependencies from pyproject.toml, then builds the
# extension in release mode into the virtualenv.
maturin develop --release --quiet --extras dev
