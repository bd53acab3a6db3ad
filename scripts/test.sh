#!/usr/bin/env bash
# The whole test suite: Rust tests and lints, Python lints and type checks, and pytest
# against real peers (aiosmtpd in-process; Postfix, smtp-sink, unbound, stunnel4...,
# installed here when any is missing: install-peers.sh does nothing when all are there).
# .ci/run calls exactly this script.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ]; then
    bash .ci/install-peers.sh
fi
bash scripts/setup.sh
. .venv/bin/activate
export PATH="$PATH:/usr/sbin"

echo "== rust: fmt, clippy, tests"
cargo fmt --all -- --check
cargo clippy --all-targets --quiet -- -D warnings
cargo test --quiet

echo "== python: ruff, mypy, stubtest"
ruff check .
ruff format --check python tests benches scripts
mypy
python -m mypy.stubtest fastsmtp._fastsmtp --allowlist scripts/stubtest-allowlist.txt

echo "== pytest"
python -m pytest -q "$@"

bash scripts/test-django-matrix.sh
