#!/usr/bin/env bash
# Build the release artifacts into dist/ (or --out DIR): the source distribution and one
# abi3 wheel per platform (CPython >= 3.10), manylinux2014 (glibc >= 2.17), stripped:
#
#   bash scripts/build-wheels.sh                  # sdist, x86_64, aarch64
#   bash scripts/build-wheels.sh x86_64 sdist     # just these
#   bash scripts/build-wheels.sh --out /tmp/dist aarch64
#   bash scripts/build-wheels.sh --manifest /tmp/fastsmtp-0.1.0/Cargo.toml x86_64
#                                       # wheels from another source tree (an unpacked sdist)
#
# Wheels are linked with zig (maturin --zig, the `ziglang` package from PyPI), which
# targets glibc 2.17 from any build machine. The aarch64 wheel needs Rust's standard
# library for aarch64: rustup's (`rustup target add aarch64-unknown-linux-gnu`) when it is
# installed; otherwise, on Debian, the script assembles a private cross toolchain under
# target/debian-rust/ from Debian's own packages (rustc-web and libstd-rust-web-dev for
# amd64 and arm64, unpacked, never installed), for machines that reach Debian's archive but
# not rustup's servers. musllinux wheels are built by the release workflow only
# (.github/workflows/release.yml), which has the musl targets.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

OUT=dist
MANIFEST=$ROOT/Cargo.toml
TARGETS=()
while [[ $# -gt 0 ]]; do
    case $1 in
    --out) OUT=$(realpath -m "$2"); shift 2 ;;
    --manifest) MANIFEST=$(realpath "$2"); shift 2 ;;
    x86_64 | aarch64 | sdist) TARGETS+=("$1"); shift ;;
    -h | --help) sed -n '2,19p' "$0"; exit 0 ;;
    *)
        echo "build-wheels.sh: unknown argument $1 (x86_64, aarch64, sdist, --out DIR, --manifest FILE)" >&2
        exit 2
        ;;
    esac
done
[[ ${#TARGETS[@]} -gt 0 ]] || TARGETS=(sdist x86_64 aarch64)
mkdir -p "$OUT"

# maturin and zig from the project's virtualenv, at the versions CI pins.
if [[ ! -x .venv/bin/python ]]; then
    bash scripts/setup.sh
fi
export PIP_CONSTRAINT="$ROOT/scripts/constraints.txt"
.venv/bin/python -m pip install -q "maturin>=1.9,<2" "ziglang>=0.13"
MATURIN=(.venv/bin/maturin)
# maturin finds zig through the ziglang package of the Python it runs under.
export PATH="$ROOT/.venv/bin:$PATH"

wheel() { # wheel TARGET_TRIPLE [extra env...]
    local triple=$1
    shift
    env "$@" "${MATURIN[@]}" build --release --strip --zig --compatibility manylinux2014 \
        --target "$triple" --manifest-path "$MANIFEST" --out "$OUT"
}

# A private Rust toolchain for aarch64 made of Debian's packages (see the header). Prints
# the path of a rustc wrapper to use as RUSTC.
debian_rustc() {
    local dir=$ROOT/target/debian-rust
    local apt_dir=$dir/apt
    if [[ ! -x $dir/rustc ]]; then
        echo "build-wheels.sh: assembling Rust for aarch64 from Debian's rustc-web packages" >&2
        rm -rf "$dir"
        mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$dir/debs" "$dir/root"
        touch "$apt_dir/status"
        # A separate apt state: the machine's own sources, architectures and lists are left
        # alone; only .deb files are downloaded, then unpacked under $dir/root.
        local suite
        suite=$(. /etc/os-release && echo "$VERSION_CODENAME")
        local keyring=/usr/share/keyrings/debian-archive-keyring.gpg
        {
            echo "deb [arch=amd64,arm64 signed-by=$keyring] http://deb.debian.org/debian $suite main"
            echo "deb [arch=amd64,arm64 signed-by=$keyring] http://deb.debian.org/debian-security $suite-security main"
        } >"$apt_dir/sources.list"
        local opts=(-o "APT::Architecture=amd64" -o "APT::Architectures=amd64,arm64"
            -o "Dir::State=$apt_dir" -o "Dir::State::Lists=$apt_dir/lists"
            -o "Dir::State::status=$apt_dir/status" -o "Dir::Cache=$apt_dir/cache"
            -o "Dir::Etc::SourceList=$apt_dir/sources.list" -o "Dir::Etc::SourceParts=/nonexistent"
            -o "Debug::NoLocking=1" -o "APT::Sandbox::User=root")
        apt-get -q "${opts[@]}" update >&2
        # The newest rustc-web (Debian's Rust for building browsers, kept recent in the
        # security suite), its standard library for both architectures and its LLVM.
        local version minor llvm
        version=$(apt-cache "${opts[@]}" policy rustc-web | sed -n 's/^ *Candidate: //p')
        [[ -n $version && $version != "(none)" ]] || {
            echo "build-wheels.sh: Debian has no rustc-web here" >&2
            return 1
        }
        minor=${version%%+*}
        minor=${minor%.*}
        llvm=$(apt-cache "${opts[@]}" depends "libstd-rust-web-$minor=$version" |
            sed -n 's/^ *Depends: \(libllvm[0-9]*\)$/\1/p' | head -1)
        (cd "$dir/debs" && apt-get -q "${opts[@]}" download "rustc-web=$version" \
            "libstd-rust-web-dev=$version" "libstd-rust-web-$minor=$version" "$llvm" \
            "libstd-rust-web-dev:arm64=$version" >&2)
        for deb in "$dir"/debs/*.deb; do
            dpkg-deb -x "$deb" "$dir/root"
        done
        # rustc finds its standard libraries relative to its own path ($dir/root/usr/lib/
        # rustlib/<target>); its own shared libraries live in the multiarch directory.
        cat >"$dir/rustc" <<EOF
#!/bin/sh
LD_LIBRARY_PATH="$dir/root/usr/lib/x86_64-linux-gnu\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}" exec "$dir/root/usr/bin/rustc" "\$@"
EOF
        chmod +x "$dir/rustc"
        "$dir/rustc" --version >&2
    fi
    echo "$dir/rustc"
}

for target in "${TARGETS[@]}"; do
    case $target in
    sdist)
        "${MATURIN[@]}" sdist --manifest-path "$MANIFEST" --out "$OUT"
        ;;
    x86_64)
        wheel x86_64-unknown-linux-gnu
        ;;
    aarch64)
        if rustup target list --installed 2>/dev/null | grep -qx aarch64-unknown-linux-gnu; then
            wheel aarch64-unknown-linux-gnu
        elif command -v apt-get >/dev/null && [[ -f /etc/debian_version ]]; then
            rustc=$(debian_rustc)
            # Its own target dir: artefacts of one compiler cannot be mixed with another's.
            wheel aarch64-unknown-linux-gnu RUSTC="$rustc" CARGO_TARGET_DIR="$ROOT/target/debian-rust/target"
        else
            echo "build-wheels.sh: no Rust standard library for aarch64: run" \
                "'rustup target add aarch64-unknown-linux-gnu'" >&2
            exit 1
        fi
        ;;
    esac
done
ls -l "$OUT"
