#!/usr/bin/env bash
# The Django backend under every supported Django: tests/test_django_backend.py, against its
# real peers (aiosmtpd, Postfix, Django's own SMTP backend), once per Django version in a
# small virtualenv of its own:
#
#   4.2 LTS and 5.2 on this project's Python (3.11), reusing the extension that
#   scripts/setup.sh built into python/fastsmtp;
#   6.0 and the newest 6.x (MAILERS) on Python >= 3.12, which Django 6 requires, with a
#   wheel built here for that interpreter (cargo target dir of its own, no LTO: a
#   functional build, not a benchmark one).
#
# The venvs and the wheel build are kept under target/django-matrix/ and reused; a venv is
# made again when its requirements change (rm -rf target/django-matrix to refresh "newest").
# Python >= 3.12 is found as $DJANGO6_PYTHON, python3.13/python3.12 on PATH, or a pyenv
# version; without one the script fails (Django 6 cannot be tested), it never skips.
# Extra arguments go to pytest. Run scripts/setup.sh first (scripts/test.sh does).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD/target/django-matrix
export PATH="$PATH:/usr/sbin"
mkdir -p "$ROOT"

# What the tests import besides Django and fastsmtp (and fastsmtp's own dependencies), at
# the versions CI pins; Django itself comes from the matrix.
TEST_DEPS=(pytest pytest-asyncio pytest-timeout pytest-benchmark hypothesis cryptography
    dkimpy pynacl msgspec uvloop aiosmtpd rich)
grep -iv '^django' scripts/constraints.txt >"$ROOT/constraints.txt"
export PIP_CONSTRAINT="$ROOT/constraints.txt" PIP_DISABLE_PIP_VERSION_CHECK=1

python_312_or_newer() {
    local candidates=("${DJANGO6_PYTHON:-}" python3.14 python3.13 python3.12)
    local pyenv_root=${PYENV_ROOT:-$HOME/.pyenv}
    if [[ -d $pyenv_root/versions ]]; then
        while IFS= read -r dir; do
            candidates+=("$dir/bin/python3")
        done < <(find "$pyenv_root/versions" -maxdepth 1 -name '3.1[2-9]*' | sort -rV)
    fi
    local py
    for py in "${candidates[@]}"; do
        [[ -n $py ]] && command -v "$py" >/dev/null 2>&1 || continue
        if "$py" -c 'import sys, venv; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
            command -v "$py"
            return 0
        fi
    done
    echo "test-django-matrix: Django 6 needs Python >= 3.12; none found (set DJANGO6_PYTHON)" >&2
    return 1
}

# make_venv NAME PYTHON REQUIREMENT...: a venv with the test dependencies and REQUIREMENTs,
# made again only when they change.
make_venv() {
    local name=$1 python=$2
    shift 2
    local dir=$ROOT/$name stamp
    stamp="$("$python" --version) ${TEST_DEPS[*]} $*"
    if [[ ! -x $dir/bin/python || $(cat "$dir/.stamp" 2>/dev/null) != "$stamp" ]]; then
        rm -rf "$dir"
        "$python" -m venv "$dir"
        "$dir/bin/python" -m pip install -q "${TEST_DEPS[@]}" "$@"
        echo "$stamp" >"$dir/.stamp"
    fi
}

run() {
    local name=$1
    shift
    echo "== django matrix: $name ($("$ROOT/$name/bin/python" -c \
        'import django, sys; print("Django", django.get_version(), "on Python", sys.version.split()[0])'))"
    "$ROOT/$name/bin/python" -m pytest -q -p no:cacheprovider tests/test_django_backend.py "$@"
}

# Django 4.2 and 5.2 on the project's interpreter, with the extension setup.sh built.
base_python=$(.venv/bin/python -c 'import sys; print(sys._base_executable)')
for spec in "4.2:django>=4.2,<4.3" "5.2:django>=5.2,<5.3"; do
    name=django-${spec%%:*}
    make_venv "$name" "$base_python" "${spec#*:}"
    site=$("$ROOT/$name/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
    echo "$PWD/python" >"$site/fastsmtp.pth"
done

# Django 6: a wheel for a newer interpreter.
py6=$(python_312_or_newer)
wheels=$ROOT/wheels-$("$py6" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
rm -rf "$wheels"
CARGO_TARGET_DIR=$ROOT/cargo CARGO_PROFILE_RELEASE_LTO=false \
    CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
    .venv/bin/maturin build --release --quiet -i "$py6" -o "$wheels"
for spec in "6.0:django>=6.0,<6.1" "6.x:django>=6.1,<7"; do
    name=django-${spec%%:*}
    make_venv "$name" "$py6" "${spec#*:}"
    "$ROOT/$name/bin/python" -m pip install -q --force-reinstall --no-deps "$wheels"/*.whl
done

status=0
for name in django-4.2 django-5.2 django-6.0 django-6.x; do
    run "$name" "$@" || status=1
done
exit $status
