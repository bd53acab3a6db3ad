"""The release artifacts as a user gets them: the sdist that ``scripts/build-wheels.sh``
makes, the abi3 manylinux2014 wheel it builds *from that sdist* (so the sdist is complete
and builds from source with a Rust toolchain), installed into brand-new virtualenvs
outside the repository, for the oldest and the newest CPython the package declares, and a
real send from there to the aiosmtpd capture server.

Interpreters: the oldest is ``requires-python`` and the newest the highest ``Programming
Language :: Python :: 3.X`` classifier in pyproject.toml. They are looked up in pyenv's
versions (the project's machine image ships CPython 3.6-3.13 there, beside Debian's 3.11)
and on PATH (``python3.X``, e.g. Debian's). A missing one fails the test, naming it.

Plain ``pip install fastsmtp`` must import and send without rich, aiosmtpd, Django or
uvloop; a command that needs an extra says which one; with the ``cli`` extra the
``fastsmtp`` command runs from the venv.
"""

from __future__ import annotations

import email.parser
import email.policy
import glob
import json
import os
import re
import shutil
import subprocess
import tarfile
import textwrap
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomllib  # the dev venv's Python (3.11+); the package itself supports 3.10

import fastsmtp
from tests.peers.aiosmtpd_server import CaptureServer

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
VERSION = fastsmtp.__version__
BUILD_TIMEOUT = 1800

pytestmark = pytest.mark.timeout(BUILD_TIMEOUT)


# -- interpreters ----------------------------------------------------------------------------


def supported_versions() -> tuple[str, str]:
    """(oldest, newest) CPython the package declares."""
    requires = PROJECT["requires-python"]
    match = re.fullmatch(r">=\s*(3\.\d+)", requires)
    assert match, requires
    listed = [
        c.rsplit(":: ", 1)[1]
        for c in PROJECT["classifiers"]
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    ]
    newest = max(listed, key=lambda v: int(v.split(".")[1]))
    assert match.group(1) in listed, "requires-python and the classifiers disagree"
    return match.group(1), newest


def find_python(version: str) -> str:
    """A CPython ``version`` executable: pyenv's, else ``python3.X`` on PATH."""
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates = sorted(
        glob.glob(str(pyenv_root / "versions" / f"{version}.*" / "bin" / f"python{version}")),
        key=lambda p: [int(x) for x in re.findall(r"\d+", Path(p).parent.parent.name)],
    )
    on_path = shutil.which(f"python{version}")
    for candidate in [*reversed(candidates), *([on_path] if on_path else [])]:
        out = subprocess.run(
            [candidate, "-c", "import sys, venv, ensurepip; print(sys.version_info[:2])"],
            capture_output=True,
            text=True,
        )
        if out.returncode == 0 and out.stdout.strip() == str(tuple(map(int, version.split(".")))):
            return candidate
    pytest.fail(
        f"no CPython {version} with venv and ensurepip: expected under {pyenv_root}/versions "
        f"(the machine image's pyenv) or python{version} on PATH"
    )


# -- building ----------------------------------------------------------------------------------


def build(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> None:
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "build-wheels.sh"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        env={**os.environ, **(env or {})},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]


@pytest.fixture(scope="session")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dist")


@pytest.fixture(scope="session")
def sdist(dist: Path) -> Path:
    build("--out", str(dist), "sdist")
    (path,) = dist.glob("fastsmtp-*.tar.gz")
    return path


@pytest.fixture(scope="session")
def sdist_tree(sdist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist unpacked in a directory outside the repo."""
    src = tmp_path_factory.mktemp("sdist-src")
    with tarfile.open(sdist) as tar:
        tar.extractall(src, filter="data")
    (tree,) = src.iterdir()
    # The sdist's files carry a fixed old timestamp (reproducible builds): against the
    # shared target dir below, cargo would take a crate built from other sources as fresh.
    # Timestamps of now make it rebuild the crate (and only the crate).
    for path in tree.rglob("*"):
        os.utime(path)
    return tree


def wheel_from_sdist(tree: Path, target: str, out: Path) -> Path:
    # The repo's own target dir keeps compiled dependencies between runs; the crate itself
    # is built from the unpacked sources.
    env = {"CARGO_TARGET_DIR": str(ROOT / "target" / "from-sdist")}
    build("--out", str(out), "--manifest", str(tree / "Cargo.toml"), target, env=env)
    (path,) = out.glob(f"*{target}*.whl")
    return path


@pytest.fixture(scope="session")
def wheel(sdist_tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The x86_64 wheel, built from the sdist."""
    return wheel_from_sdist(sdist_tree, "x86_64", tmp_path_factory.mktemp("wheels"))


@pytest.fixture(scope="session")
def aarch64_wheel(sdist_tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The aarch64 wheel, cross-built from the sdist."""
    return wheel_from_sdist(sdist_tree, "aarch64", tmp_path_factory.mktemp("wheels-aarch64"))


# -- the sdist -------------------------------------------------------------------------------


def test_sdist_holds_sources_license_and_metadata_only(sdist: Path) -> None:
    with tarfile.open(sdist) as tar:
        names = [name.split("/", 1)[1] for name in tar.getnames() if "/" in name]
        pkg_info = tar.extractfile(f"fastsmtp-{VERSION}/PKG-INFO")
        assert pkg_info is not None
        metadata = pkg_info.read().decode()
    assert {"LICENSE", "Cargo.toml", "Cargo.lock", "pyproject.toml", "rust/lib.rs"} <= set(names)
    assert "python/fastsmtp/py.typed" in names and "python/fastsmtp/cli/__init__.py" in names
    bulk = [n for n in names if n.startswith(("benches/", "tests/", "target/", "scripts/", "."))]
    assert bulk == []
    assert not [n for n in names if n.endswith((".so", ".whl", ".pyc"))]
    assert sdist.stat().st_size < 400_000
    check_metadata(metadata)


def check_metadata(metadata: str) -> None:
    headers, _, description = metadata.partition("\n\n")
    fields = [tuple(line.split(": ", 1)) for line in headers.splitlines() if ": " in line]
    values: dict[str, list[str]] = {}
    for key, value in fields:
        values.setdefault(key, []).append(value)
    assert values["License-Expression"] == ["MIT"]
    assert values["License-File"] == ["LICENSE"]
    assert values["Requires-Python"] == [">=3.10"]
    assert values["Requires-Dist"][0] == "msgspec>=0.18"
    core = [d for d in values["Requires-Dist"] if "extra ==" not in d]
    assert core == ["msgspec>=0.18"]
    assert {"cli", "testing", "django", "uvloop", "metrics", "otel"} <= set(
        values["Provides-Extra"]
    )
    classifiers = values["Classifier"]
    assert "Typing :: Typed" in classifiers
    assert "Operating System :: POSIX :: Linux" in classifiers
    assert {"Programming Language :: Python :: 3.10", "Programming Language :: Python :: 3.13"} <= (
        set(classifiers)
    )
    assert not [c for c in classifiers if c.startswith("License ::")]  # PEP 639
    assert {url.split(",")[0] for url in values["Project-URL"]} >= {"Source", "Changelog"}
    # The PyPI page starts with installing and using the library.
    first_section = description.split("\n## ")[1]
    assert first_section.startswith("Install") and "pip install fastsmtp" in first_section
    assert "scripts/demo.sh" not in description


# -- the wheel -------------------------------------------------------------------------------


def test_wheel_is_abi3_manylinux2014_stripped_with_license(wheel: Path, tmp_path: Path) -> None:
    assert (
        wheel.name
        == f"fastsmtp-{VERSION}-cp310-abi3-manylinux2014_x86_64.manylinux_2_17_x86_64.whl"
    )
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        assert f"fastsmtp-{VERSION}.dist-info/licenses/LICENSE" in names
        assert "fastsmtp/py.typed" in names and "fastsmtp/_fastsmtp.pyi" in names
        assert not [n for n in names if n.startswith(("tests/", "benches/"))]
        zf.extract("fastsmtp/_fastsmtp.abi3.so", tmp_path)
        check_metadata(zf.read(f"fastsmtp-{VERSION}.dist-info/METADATA").decode())
    so = tmp_path / "fastsmtp" / "_fastsmtp.abi3.so"
    sections = subprocess.run(["readelf", "-SW", so], capture_output=True, text=True, check=True)
    assert ".symtab" not in sections.stdout and ".debug_info" not in sections.stdout
    symbols = subprocess.run(["readelf", "-W", "--dyn-syms", so], capture_output=True, text=True)
    glibc = {tuple(map(int, v.split("."))) for v in re.findall(r"GLIBC_([\d.]+)", symbols.stdout)}
    assert glibc and max(glibc) <= (2, 17), max(glibc)
    # Only the stable ABI of libpython: no symbol of the full API (they start with _Py).
    undefined = re.findall(r"UND (\S+)", symbols.stdout)
    assert "PyInit__fastsmtp" in symbols.stdout
    assert not [s for s in undefined if s.startswith("_Py") and s not in STABLE_UNDERSCORED]


STABLE_UNDERSCORED = {"_Py_Dealloc", "_Py_DecRef", "_Py_IncRef", "_Py_NoneStruct"}
"""Underscored names that are part of CPython's stable ABI (refcounting and None)."""
STABLE_UNDERSCORED |= {"_Py_TrueStruct", "_Py_FalseStruct", "_Py_NotImplementedStruct"}
STABLE_UNDERSCORED |= {"_Py_EllipsisObject", "_PyArg_ParseTuple_SizeT"}


# -- installed into fresh virtualenvs ------------------------------------------------------------


@pytest.fixture
def capture() -> Iterator[CaptureServer]:
    with CaptureServer() as server:
        yield server


SEND_SCRIPT = textwrap.dedent(
    """
    import importlib.util, json, sys
    import fastsmtp

    port = int(sys.argv[1])
    template = fastsmtp.Message(
        sender="Shop <shop@example.com>", subject="Hello {{ name }}", text="Order {{ order }}"
    )
    rows = [{"address": f"u{i}@example.org", "name": f"U{i}", "order": i} for i in range(3)]
    report = fastsmtp.send_batch_sync(template, rows, host="127.0.0.1", port=port, tls="none")
    print(json.dumps({
        "file": fastsmtp.__file__,
        "version": fastsmtp.__version__,
        "python": list(sys.version_info[:2]),
        "accepted": report.accepted,
        "absent": [m for m in ("rich", "aiosmtpd", "django", "uvloop")
                   if importlib.util.find_spec(m) is None],
    }))
    """
)


def make_venv(python: str, where: Path) -> Path:
    subprocess.run([python, "-m", "venv", str(where)], check=True, timeout=300)
    return where / "bin" / "python"


def pip_install(venv_python: Path, *requirements: str) -> None:
    env = {**os.environ, "PIP_CONSTRAINT": str(ROOT / "scripts" / "constraints.txt")}
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(
        [
            str(venv_python),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            *requirements,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def run_in(venv: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}:/usr/bin:/bin:/usr/sbin"
    return subprocess.run(
        [str(venv / "bin" / args[0]), *args[1:]],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize("which", ["oldest", "newest"])
def test_wheel_installs_without_extras_and_sends(
    which: str, wheel: Path, capture: CaptureServer, tmp_path_factory: pytest.TempPathFactory
) -> None:
    oldest, newest = supported_versions()
    version = oldest if which == "oldest" else newest
    python = find_python(version)
    # A brand-new venv and working directory, both outside the repository.
    base = tmp_path_factory.mktemp(f"venv-{version}")
    assert ROOT not in base.parents
    venv = base / "venv"
    venv_python = make_venv(python, venv)
    pip_install(venv_python, str(wheel))

    script = base / "send.py"
    script.write_text(SEND_SCRIPT)
    proc = run_in(venv, "python", str(script), str(capture.port), cwd=base)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["python"] == [int(x) for x in version.split(".")]
    assert Path(report["file"]).is_relative_to(venv)
    assert report["version"] == VERSION
    assert report["accepted"] == 3
    assert sorted(report["absent"]) == ["aiosmtpd", "django", "rich", "uvloop"]
    messages = capture.wait_for(3)
    subjects = sorted(
        str(email.parser.BytesParser(policy=email.policy.default).parsebytes(m.content)["Subject"])
        for m in messages
    )
    assert subjects == ["Hello U0", "Hello U1", "Hello U2"]

    # Without extras: --version and --help work; a command that needs an extra names it.
    proc = run_in(venv, "fastsmtp", "--version", cwd=base)
    assert proc.returncode == 0 and proc.stdout.strip() == f"fastsmtp {VERSION}"
    proc = run_in(venv, "fastsmtp", "send", "--help", cwd=base)
    assert proc.returncode == 0 and "--dry-run" in proc.stdout
    proc = run_in(venv, "fastsmtp", "demo", cwd=base)
    assert proc.returncode == 2
    assert "pip install 'fastsmtp[cli]'" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_in(venv, "python", "-c", "import fastsmtp.testing", cwd=base)
    assert proc.returncode == 1 and "pip install 'fastsmtp[testing]'" in proc.stderr

    if which == "newest":
        # With extras, the command line runs from the venv (python -m as well).
        pip_install(venv_python, f"{wheel}[cli,uvloop]")
        out = base / "eml"
        proc = run_in(
            venv, "python", "-m", "fastsmtp", "demo", "--count", "5", "--sink-count", "0",
            "--dir", str(out), cwd=base,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert len(list(out.glob("*.eml"))) == 5


# -- the aarch64 wheel, run under qemu ---------------------------------------------------------

ARM64_PACKAGES = [
    "python3.11-minimal", "libpython3.11-minimal", "libpython3.11-stdlib", "libc6", "libssl3",
    "zlib1g", "libffi8", "libexpat1", "libbz2-1.0", "liblzma5", "libsqlite3-0", "libuuid1",
    "libncursesw6", "libtinfo6", "libreadline8", "libgcc-s1", "libcrypt1", "libnsl2",
    "libtirpc3", "libdb5.3", "libgdbm6",
]  # fmt: skip
"""Debian's CPython for arm64 and the libraries it loads."""


@pytest.fixture(scope="session")
def arm64_python() -> tuple[Path, Path]:
    """(qemu-aarch64-static, an arm64 root with Debian's python3.11), both unpacked from
    Debian's packages under target/arm64-python (a private apt state: the machine's own
    apt configuration and installed packages are left alone)."""
    base = ROOT / "target" / "arm64-python"
    qemu = base / "qemu" / "usr" / "bin" / "qemu-aarch64-static"
    root = base / "root"
    if qemu.exists() and (root / "usr" / "bin" / "python3.11").exists():
        return qemu, root
    shutil.rmtree(base, ignore_errors=True)
    state = base / "apt"
    for d in ("lists/partial", "cache/archives/partial", "debs"):
        (state / d).mkdir(parents=True)
    (state / "status").touch()
    suite = re.search(r"VERSION_CODENAME=(\w+)", Path("/etc/os-release").read_text())
    assert suite is not None
    keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
    (state / "sources.list").write_text(
        f"deb [arch=amd64,arm64 signed-by={keyring}] http://deb.debian.org/debian "
        f"{suite.group(1)} main\n"
        f"deb [arch=amd64,arm64 signed-by={keyring}] http://deb.debian.org/debian-security "
        f"{suite.group(1)}-security main\n"
    )
    options = []
    for option in (
        "APT::Architecture=amd64",
        "APT::Architectures=amd64,arm64",
        f"Dir::State={state}",
        f"Dir::State::Lists={state}/lists",
        f"Dir::State::status={state}/status",
        f"Dir::Cache={state}/cache",
        f"Dir::Etc::SourceList={state}/sources.list",
        "Dir::Etc::SourceParts=/nonexistent",
        "Debug::NoLocking=1",
        "APT::Sandbox::User=root",
    ):
        options += ["-o", option]
    apt = ["apt-get", "-q", *options]
    subprocess.run([*apt, "update"], check=True, capture_output=True, timeout=600)
    packages = ["qemu-user-static", "media-types", *(f"{p}:arm64" for p in ARM64_PACKAGES)]
    subprocess.run(
        [*apt, "download", *packages],
        check=True,
        capture_output=True,
        timeout=600,
        cwd=state / "debs",
    )
    for deb in (state / "debs").glob("*.deb"):
        dest = base / "qemu" if deb.name.startswith("qemu-user-static_") else root
        subprocess.run(["dpkg-deb", "-x", str(deb), str(dest)], check=True)
    return qemu, root


def test_aarch64_wheel_sends_under_qemu(
    aarch64_wheel: Path,
    arm64_python: tuple[Path, Path],
    capture: CaptureServer,
    tmp_path: Path,
) -> None:
    assert aarch64_wheel.name == (
        f"fastsmtp-{VERSION}-cp310-abi3-manylinux2014_aarch64.manylinux_2_17_aarch64.whl"
    )
    qemu, root = arm64_python
    site = tmp_path / "site"
    deps = tmp_path / "deps"
    env = {**os.environ, "PIP_CONSTRAINT": str(ROOT / "scripts" / "constraints.txt")}
    subprocess.run(
        [
            str(ROOT / ".venv" / "bin" / "python"), "-m", "pip", "download", "-q", "--no-deps",
            "--only-binary=:all:", "--platform", "manylinux2014_aarch64",
            "--python-version", "3.11", "-d", str(deps), "msgspec",
        ],
        check=True,
        timeout=300,
        env=env,
    )  # fmt: skip
    for wheel_file in [aarch64_wheel, *deps.glob("*.whl")]:
        with zipfile.ZipFile(wheel_file) as zf:
            zf.extractall(site)
    script = tmp_path / "send.py"
    script.write_text(SEND_SCRIPT + "import platform; print(platform.machine())\n")
    proc = subprocess.run(
        [str(qemu), "-L", str(root), str(root / "usr/bin/python3.11"), str(script),
         str(capture.port)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env={"PYTHONPATH": str(site), "PYTHONHOME": str(root / "usr"), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    report_line, machine = proc.stdout.strip().splitlines()
    assert machine == "aarch64"
    report = json.loads(report_line)
    assert report["accepted"] == 3 and report["python"] == [3, 11]
    assert Path(report["file"]).is_relative_to(site)
    assert len(capture.wait_for(3)) == 3
