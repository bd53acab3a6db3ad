"""Private, throw-away Postfix instances (plus Dovecot SASL) as real SMTP peers for tests.

Each ``PostfixInstance`` gets its own config dir, queue, data dir, maillog file and Maildir
under one temp dir (on /dev/shm when possible, see ``scratch_root``), listens on
``127.0.0.1:<free port>`` only and never touches the system instance on port 25.

* Mail for any local part at the virtual domains (``example.org``, ``example.com``,
  ``example.net`` by default) is accepted and delivered, one file per recipient, into a
  single Maildir; ``messages_for(addr)``/``messages_by_address()`` tell recipients apart by
  the ``Delivered-To`` header Postfix adds (virtual(8) forbids per-address regexp paths).
* Any other domain is refused at RCPT: ``554 5.7.1 <x@nowhere.invalid>: Relay access denied``.
* Test hooks: ``MAIL FROM:<reject-NNN@...>`` / ``RCPT TO:<reject-NNN@...>`` are answered with
  code NNN (any 4xx or 5xx), e.g. ``reject-450@example.org`` for a temporary failure.
* Nothing is relayed out; bounces to outside senders fail at once (no DNS lookups).
* Servers left behind by a test process that was killed are reaped on the next start
  (``reap_stale``), using the ``owner.pid`` file in every temp dir.

Gotchas this module handles (see also /work/shared/PEERS.md):

* ``alternate_config_directories``: Postfix only insists that the *default* instance's
  ``main.cf`` lists a ``-c DIR`` for untrusted callers ("unauthorized configuration directory
  name"); as root ``postfix -c DIR start/stop`` works without it. We register the dir only if
  asked or if Postfix refuses it (under a file lock; removed again on stop, stale entries of
  crashed runs pruned), because editing /etc/postfix/main.cf makes every Postfix program that
  reads it in the next ~2 s stall for ~1.8 s (see the mtime note below).
* ``postfix start`` daemonizes ``master``, which inherits stdio: it is run in a new session
  with stdio redirected to a file, otherwise a caller reading its output hangs.
* The virtual delivery agent refuses to run while ``virtual_mailbox_limit`` is smaller than
  ``message_size_limit``; we set it to 0 (unlimited).
* ``maillog_file`` is silently ignored unless it starts with one of ``maillog_file_prefixes``.
* Rate/connection limits, error sleeps and ``in_flow_delay`` are disabled so bulk senders are
  not throttled, and ``default_process_limit`` allows many parallel sessions.
* The full ``postfix check`` run by ``postfix start`` (and ``post-install create-missing``)
  takes ~2 s; we create the queue dirs ourselves and use the ``quick-start`` marker instead.
* Postfix programs re-read a config file in 300 ms steps until its mtime is ~2 s in the past
  (so an edit in the same second is never missed): ``postfix start`` right after writing
  ``main.cf`` takes ~1.8 s more. We backdate our files' mtimes, so a start takes ~0.1 s.
* Dovecot (SASL) runs in the foreground as our own child with a private ``base_dir``,
  ``state_dir``, ``auth_failure_delay = 0`` and its per-IP auth penalty switched off (the
  anvil-auth-penalty socket with mode 0); otherwise repeated failures from 127.0.0.1 wait
  2, 4, 8... s. A failed login still takes ~0.5 s (Dovecot's failure flush timer).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import grp
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
import weakref
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Literal, Self

from .certs import TestPKI, make_test_ca
from .lifecycle import Peer
from .ports import LOCALHOST, free_port, port_is_listening

__all__ = [
    "DEFAULT_DOMAINS",
    "DisconnectStats",
    "PostfixError",
    "PostfixInstance",
    "TlsMode",
    "kill_process_tree",
    "parse_disconnect_stats",
    "reap_stale",
    "scratch_root",
]

TlsMode = Literal["none", "may", "encrypt"]
DisconnectStats = dict[str, int]

DEFAULT_DOMAINS: tuple[str, ...] = ("example.org", "example.com", "example.net")
DEFAULT_MESSAGE_SIZE_LIMIT = 10_240_000

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"
POSTCONF = shutil.which("postconf") or "/usr/sbin/postconf"
DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
DEFAULT_CONFIG_DIR = Path("/etc/postfix")
VMAIL_UID = 65534  # "nobody": owner of all delivered Maildirs

# Set FASTSMTP_KEEP_PEERS=1 to keep the temp dirs (configs, logs, Maildirs) for debugging.
KEEP_ENV = "FASTSMTP_KEEP_PEERS"
# Where the temp dirs go (default: /dev/shm if usable, else the system temp dir).
TMPDIR_ENV = "FASTSMTP_PEERS_TMPDIR"
_SHM = Path("/dev/shm")
_SHM_MIN_FREE = 1 << 30
_DIR_PREFIX = "fastsmtp-postfix-"
_ALT_LOCK = Path(tempfile.gettempdir()) / "fastsmtp-postfix-alternate.lock"
_QUEUE_DIRS = ("maildrop", "incoming", "active", "deferred", "hold")
# (name, mode, group is postdrop) of each queue subdirectory, from postfix-files.
_QUEUE_LAYOUT: tuple[tuple[str, int, bool], ...] = (
    *((name, 0o700, False) for name in ("active", "bounce", "corrupt", "defer", "deferred")),
    *((name, 0o700, False) for name in ("flush", "hold", "incoming", "private", "saved")),
    ("trace", 0o700, False),
    ("maildrop", 0o730, True),
    ("public", 0o710, True),
    ("pid", 0o755, False),
)

# "disconnect from unknown[127.0.0.1] ehlo=1 mail=2 rcpt=2 bdat=4 quit=1 commands=10"
_DISCONNECT_RE = re.compile(r"\bdisconnect from \S+((?: [a-z]+=\d+(?:/\d+)?)+)\s*$")
_CONNECT_RE = re.compile(r" (\S+\[\d+\]): connect from ")
_PROCESS_RE = re.compile(r" (\S+\[\d+\]): ")

# Only the services a sending-side test needs; nothing chrooted (the queue dir has no /etc).
_MASTER_CF = """\
# service  type  private unpriv chroot wakeup maxproc command
{listen} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""

# Test hooks: MAIL FROM / RCPT TO addresses "reject-NNN@..." get reply code NNN (4xx or 5xx).
_REJECT_ACCESS = (
    "/^reject-(4[0-9][0-9])@/ ${1} 4.7.1 rejected by test peer\n"
    "/^reject-(5[0-9][0-9])@/ ${1} 5.7.1 rejected by test peer\n"
)

_DOVECOT_CONF = """\
# Private Dovecot used only as Postfix's SASL authentication server.
base_dir = {run}
state_dir = {state}
instance_name = {name}
protocols =
listen = 127.0.0.1
ssl = no
log_path = {log}
info_log_path = {log}
auth_mechanisms = plain login
# The default 2 s delay after a failed login would slow every "535" test down.
auth_failure_delay = 0
# (a failed login still answers after ~0.5 s: Dovecot flushes failures on a fixed timer)
disable_plaintext_auth = no
default_internal_user = dovecot
default_login_user = dovenull
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {passwd}
}}
userdb {{
  driver = static
  args = uid={uid} gid={uid} home=/nonexistent
}}
# Dovecot's documented switch for its per-IP failed-login penalty (2, 4, 8... s delays that
# would hit every "wrong password" test from 127.0.0.1).
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service auth {{
  unix_listener {socket} {{
    mode = 0660
    user = postfix
    group = postfix
  }}
}}
"""


def scratch_root() -> Path:
    """Parent directory for peer temp dirs.

    Postfix fsyncs every queue file and Maildir delivery; on tmpfs that is free, which makes
    bulk tests ~3x faster (3000 messages: ~3 s instead of ~10 s on this VM's disk).
    """
    configured = os.environ.get(TMPDIR_ENV)
    if configured:
        return Path(configured)
    with contextlib.suppress(OSError):
        st = os.statvfs(_SHM)
        if os.access(_SHM, os.W_OK | os.X_OK) and st.f_bavail * st.f_frsize >= _SHM_MIN_FREE:
            return _SHM
    return Path(tempfile.gettempdir())


class PostfixError(RuntimeError):
    """Postfix (or its Dovecot helper) failed to start or misbehaved."""


# --------------------------------------------------------------------------- processes


def _environ_items(pid: int) -> list[bytes]:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return []


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _stat_fields(pid: int) -> list[str]:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return []
    # Field 2 (comm) may contain spaces and parentheses; split after its closing one.
    return stat.rsplit(")", 1)[1].split()


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _alive(pid: int) -> bool:
    """True if ``pid`` runs and is not a zombie (zombies are reaped by init eventually)."""
    fields = _stat_fields(pid)
    return bool(fields) and fields[0] != "Z"


def kill_process_tree(
    *,
    session: int | None = None,
    environ_marker: bytes | None = None,
    cmdline_marker: bytes | None = None,
    grace: float = 2.0,
) -> list[int]:
    """SIGTERM (then SIGKILL) every live process in ``session``, or with ``environ_marker``
    as one of its environment entries (e.g. ``b"MAIL_CONFIG=/dev/shm/..."``), or with
    ``cmdline_marker`` inside its command line. Returns the pids it signalled.

    A safety net after a server's own stop command, so no test leaves daemons behind.
    """
    own = os.getpid()

    def victims() -> list[int]:
        found = []
        for pid in _pids():
            if pid == own or not _alive(pid):
                continue
            fields = _stat_fields(pid)
            if (
                (session is not None and len(fields) > 3 and int(fields[3]) == session)
                or (environ_marker is not None and environ_marker in _environ_items(pid))
                or (cmdline_marker is not None and cmdline_marker in _cmdline(pid))
            ):
                found.append(pid)
        return found

    signalled: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = victims()
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            signalled.append(pid)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.02)
    return signalled


# --------------------------------------------------------------- stale instances

OWNER_FILE = "owner.pid"  # pid of the test process that created a peer temp dir


def claim_dir(base: Path) -> None:
    """Record the current process as owner of a peer temp dir (see ``reap_stale``)."""
    (base / OWNER_FILE).write_text(f"{os.getpid()}\n")


def _owner_alive(base: Path) -> bool:
    try:
        pid = int((base / OWNER_FILE).read_text())
    except (OSError, ValueError):
        return True  # not claimed yet (being created right now) or unreadable: leave it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _alive(pid)


def reap_stale(root: Path | None = None) -> list[Path]:
    """Stop servers and delete temp dirs left by test processes that died without cleanup
    (SIGKILL, OOM, power-off...). Dirs of live test processes are never touched.
    Returns the dirs removed."""
    root = root or scratch_root()
    removed: list[Path] = []
    for base in sorted(root.glob("fastsmtp-*-*")):
        if not base.is_dir() or _owner_alive(base):
            continue
        etc = base / "etc"
        if (base / "queue" / "pid" / "master.pid").exists():
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                _run([POSTFIX, "-c", str(etc), "stop"], timeout=15)
        kill_process_tree(environ_marker=f"MAIL_CONFIG={etc}".encode())
        # Dovecot and smtp-sink name files under the dir on their command lines.
        kill_process_tree(cmdline_marker=str(base).encode())
        sink_pid = base / "sink.pid"
        with contextlib.suppress(OSError, ValueError):
            pid = int(sink_pid.read_text())
            if b"smtp-sink" in _cmdline(pid):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(PostfixError, OSError, subprocess.SubprocessError):
            _update_alternate_dirs(remove=etc, only_if_listed=True)
        if not os.environ.get(KEEP_ENV):
            shutil.rmtree(base, ignore_errors=True)
        removed.append(base)
    return removed


_reaped = False


def reap_stale_once() -> None:
    """``reap_stale()`` on the first server start of this process."""
    global _reaped
    if not _reaped:
        _reaped = True
        reap_stale()


# ---------------------------------------------------------------- alternate_config_dirs


@contextlib.contextmanager
def _alt_lock() -> Iterator[None]:
    # Parallel pytest workers edit the same /etc/postfix/main.cf line.
    with open(_ALT_LOCK, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _run(args: list[str], timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        start_new_session=True,
    )


def _update_alternate_dirs(
    add: Path | None = None, remove: Path | None = None, *, only_if_listed: bool = False
) -> None:
    """Add/remove a config dir in the default instance's ``alternate_config_directories``."""
    main_cf = DEFAULT_CONFIG_DIR / "main.cf"
    if only_if_listed and remove is not None:
        # Cheap check without taking the lock: most dirs were never registered.
        with contextlib.suppress(OSError):
            if str(remove) not in main_cf.read_text(errors="replace"):
                return
    with _alt_lock():
        res = _run([POSTCONF, "-c", str(DEFAULT_CONFIG_DIR), "-h", "alternate_config_directories"])
        current = [d for d in re.split(r"[\s,]+", res.stdout.strip()) if d]
        # Drop entries of crashed earlier runs (ours only, recognised by the dir prefix).
        gone = str(remove) if remove is not None else None
        keep = [d for d in current if not (_DIR_PREFIX in d and not Path(d).exists()) and d != gone]
        if add is not None and str(add) not in keep:
            keep.append(str(add))
        if keep == current:
            return
        if keep:
            cmd = ["-e", "alternate_config_directories = " + " ".join(keep)]
        else:
            cmd = ["-X", "alternate_config_directories"]
        res = _run([POSTCONF, "-c", str(DEFAULT_CONFIG_DIR), *cmd])
        if res.returncode != 0:
            raise PostfixError(f"postconf failed: {res.stderr.strip()}")


# ----------------------------------------------------------------------------- instance

_LIVE: weakref.WeakSet[PostfixInstance] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    # Safety net for interrupted test runs: fixtures normally stop instances themselves.
    for inst in list(_LIVE):
        with contextlib.suppress(Exception):
            inst.stop()


class PostfixInstance(Peer):
    """A private Postfix ``smtpd`` on ``127.0.0.1:<port>`` delivering to temp Maildirs.

    Args:
        tls: ``"none"`` (no STARTTLS), ``"may"`` (STARTTLS offered) or ``"encrypt"``
            (STARTTLS required before MAIL).
        pki: certificate for STARTTLS; a fresh test CA is made in the temp dir if omitted.
        auth: enable SASL AUTH (PLAIN, LOGIN) via a private Dovecot with ``users``.
            With TLS on, AUTH is only offered after STARTTLS (``smtpd_tls_auth_only``).
        users: ``{username: password}`` for the Dovecot passwd-file.
        require_auth: refuse recipients (554 5.7.1) for clients that did not authenticate.
        smtputf8: advertise SMTPUTF8.
        message_size_limit: the SIZE limit in bytes (0 = unlimited).
        domains: virtual mailbox domains that accept any local part.
        discard_ehlo_keywords: EHLO keywords to hide, e.g. ``["chunking"]`` or
            ``["pipelining"]`` (``smtpd_discard_ehlo_keywords``; the commands stay usable).
        extra_config: further ``main.cf`` parameters, applied last (override anything).
        start_timeout: seconds to wait for the listener before failing.
        register_config_dir: list the config dir in the default instance's
            ``alternate_config_directories`` up front. Not needed when running as root (done
            automatically if Postfix refuses the directory); it edits /etc/postfix/main.cf,
            and every Postfix program reading a main.cf younger than ~2 s stalls ~1.8 s.
        tmp_root: parent of the instance's temp dir (default ``scratch_root()``: /dev/shm
            when available, overridable with $FASTSMTP_PEERS_TMPDIR).
    """

    def __init__(
        self,
        *,
        tls: TlsMode = "none",
        pki: TestPKI | None = None,
        auth: bool = False,
        users: Mapping[str, str] | None = None,
        require_auth: bool = False,
        smtputf8: bool = True,
        message_size_limit: int = DEFAULT_MESSAGE_SIZE_LIMIT,
        domains: tuple[str, ...] = DEFAULT_DOMAINS,
        discard_ehlo_keywords: Sequence[str] = (),
        extra_config: Mapping[str, str] | None = None,
        start_timeout: float = 20.0,
        register_config_dir: bool = False,
        tmp_root: str | os.PathLike[str] | None = None,
    ) -> None:
        if tls not in ("none", "may", "encrypt"):
            raise ValueError(f"tls must be 'none', 'may' or 'encrypt', not {tls!r}")
        if (users or require_auth) and not auth:
            raise ValueError("users/require_auth need auth=True")
        for name, password in (users or {}).items():
            if not name or any(c in name + password for c in ":\n\r"):
                raise ValueError(f"user/password unusable in a passwd-file: {name!r}")
        self.host = LOCALHOST
        self.port = 0
        self.tls: TlsMode = tls
        self.auth = auth
        self.users: dict[str, str] = dict(users or {})
        self.require_auth = require_auth
        self.smtputf8 = smtputf8
        self.message_size_limit = message_size_limit
        self.domains = domains
        self.discard_ehlo_keywords = list(discard_ehlo_keywords)
        self.extra_config: dict[str, str] = dict(extra_config or {})
        self.start_timeout = start_timeout
        self._pki = pki
        self.base: Path | None = None
        self._dovecot: subprocess.Popen[bytes] | None = None
        self._master_pid: int | None = None
        self._running = False
        self.register_config_dir = register_config_dir
        self.tmp_root = Path(tmp_root) if tmp_root is not None else scratch_root()
        self._registered = False
        self._address_cache: dict[Path, str] = {}

    def _register(self) -> None:
        _update_alternate_dirs(add=self.config_dir)
        self._registered = True

    # ------------------------------------------------------------------ paths

    def _dir(self) -> Path:
        if self.base is None:
            raise PostfixError("instance has not been started")
        return self.base

    @property
    def config_dir(self) -> Path:
        return self._dir() / "etc"

    @property
    def queue_dir(self) -> Path:
        return self._dir() / "queue"

    @property
    def mail_dir(self) -> Path:
        """``virtual_mailbox_base``; the one Maildir is ``<mail_dir>/maildir/{new,cur,tmp}``."""
        return self._dir() / "mail"

    @property
    def log_file(self) -> Path:
        return self._dir() / "maillog"

    @property
    def pki(self) -> TestPKI | None:
        """The certificate the server presents (None if TLS is off)."""
        return self._pki if self.tls != "none" else None

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def __repr__(self) -> str:
        state = "running" if self._running else "stopped"
        return f"<PostfixInstance {self.host}:{self.port} tls={self.tls} auth={self.auth} {state}>"

    # ------------------------------------------------------------ lifecycle

    def start(self) -> Self:
        """Create the temp tree, start Dovecot (if auth) and Postfix; wait for the port."""
        if self._running:
            return self
        reap_stale_once()
        self.base = Path(tempfile.mkdtemp(prefix=_DIR_PREFIX, dir=self.tmp_root))
        claim_dir(self.base)
        _LIVE.add(self)
        self._running = True  # from here on stop() has something to clean up
        try:
            self._prepare_tree()
            if self.tls != "none" and self._pki is None:
                self._pki = make_test_ca(self._dir() / "pki")
            if self.auth:
                self._start_dovecot()
            if self.register_config_dir:
                self._register()
            self._start_postfix()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop Postfix and Dovecot, kill stragglers, unregister and delete the temp dir."""
        if not self._running:
            return
        self._running = False
        base = self._dir()
        try:
            if (self.queue_dir / "pid" / "master.pid").exists():
                _run([POSTFIX, "-c", str(self.config_dir), "stop"], timeout=15)
            if self._master_pid is not None:
                kill_process_tree(session=self._master_pid)
            # Children carry MAIL_CONFIG=<our etc dir>; nothing of ours may survive the test.
            kill_process_tree(environ_marker=f"MAIL_CONFIG={self.config_dir}".encode())
            self._stop_dovecot()
        finally:
            if self._registered:
                with contextlib.suppress(PostfixError, OSError, subprocess.SubprocessError):
                    _update_alternate_dirs(remove=self.config_dir)
                self._registered = False
            _LIVE.discard(self)
            if not os.environ.get(KEEP_ENV):
                shutil.rmtree(base, ignore_errors=True)

    # --------------------------------------------------------------- set-up

    def _prepare_tree(self) -> None:
        base = self._dir()
        # Postfix daemons (user postfix) and the delivery uid must traverse the temp dir.
        os.chmod(base, 0o755)
        for sub in ("etc", "queue", "data", "mail"):
            (base / sub).mkdir()
        os.chown(base / "data", _uid("postfix"), _gid("postfix"))
        os.chmod(base / "data", 0o700)
        os.chown(base / "mail", VMAIL_UID, VMAIL_UID)
        (self.config_dir / "reject_access.regexp").write_text(_REJECT_ACCESS)
        # The queue layout from /etc/postfix/postfix-files, as "post-install create-missing"
        # would make it (that script takes ~2 s).
        postfix_uid, postdrop_gid = _uid("postfix"), _gid("postdrop")
        for name, mode, gid in _QUEUE_LAYOUT:
            path = self.queue_dir / name
            path.mkdir(exist_ok=True)
            os.chown(path, 0 if name == "pid" else postfix_uid, postdrop_gid if gid else 0)
            os.chmod(path, mode)

    def _main_cf(self) -> dict[str, str]:
        base = self._dir()
        name = base.name.removeprefix(_DIR_PREFIX)
        access = f"regexp:{self.config_dir / 'reject_access.regexp'}"
        cfg: dict[str, str] = {
            "compatibility_level": "3.6",
            "multi_instance_name": f"fastsmtp-{name}",
            "queue_directory": str(self.queue_dir),
            "data_directory": str(base / "data"),
            "maillog_file": str(self.log_file),
            # Without the prefix postlogd silently refuses to write the file.
            "maillog_file_prefixes": str(base),
            "myhostname": "localhost",
            "smtpd_banner": "$myhostname ESMTP Postfix (fastsmtp test peer)",
            "inet_interfaces": "loopback-only",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "mydestination": "",
            "relay_domains": "",
            "local_recipient_maps": "",
            "alias_maps": "",
            "alias_database": "",
            "biff": "no",
            "append_dot_mydomain": "no",
            "smtpd_peername_lookup": "no",  # no DNS/hosts lookups for 127.0.0.1
            "virtual_mailbox_domains": " ".join(self.domains),
            "virtual_mailbox_base": str(self.mail_dir),
            # One Maildir for all recipients (virtual(8) forbids regexp substitution, so no
            # per-address paths); messages are told apart by their Delivered-To header.
            "virtual_mailbox_maps": "static:maildir/",
            "virtual_uid_maps": f"static:{VMAIL_UID}",
            "virtual_gid_maps": f"static:{VMAIL_UID}",
            # virtual(8) refuses to deliver while this is below message_size_limit.
            "virtual_mailbox_limit": "0",
            "message_size_limit": str(self.message_size_limit),
            "smtputf8_enable": "yes" if self.smtputf8 else "no",
            # Only the virtual domains are deliverable; anything else gets 554 at RCPT.
            "smtpd_relay_restrictions": "reject_unauth_destination",
            "smtpd_recipient_restrictions": f"check_recipient_access {access}",
            "smtpd_sender_restrictions": f"check_sender_access {access}",
            # Bounces to outside senders fail at once instead of trying DNS.
            "default_transport": "error:5.7.1 test peer does not relay",
            "relay_transport": "error:5.7.1 test peer does not relay",
            # Bulk tests: no throttling, lots of parallel sessions, no error back-off.
            "default_process_limit": "200",
            "in_flow_delay": "0s",
            "smtpd_client_connection_count_limit": "10000",
            "smtpd_client_connection_rate_limit": "0",
            "smtpd_client_message_rate_limit": "0",
            "smtpd_client_recipient_rate_limit": "0",
            "smtpd_client_new_tls_session_rate_limit": "0",
            "smtpd_client_auth_rate_limit": "0",
            "smtpd_error_sleep_time": "0",
            "smtpd_soft_error_limit": "10000",
            "smtpd_hard_error_limit": "10000",
            "smtpd_junk_command_limit": "100000",
            "smtp_tls_security_level": "none",
            "smtpd_tls_security_level": self.tls,
            "smtpd_discard_ehlo_keywords": ", ".join(self.discard_ehlo_keywords),
        }
        if self.tls != "none":
            assert self._pki is not None
            cfg |= {
                "smtpd_tls_cert_file": str(self._pki.cert_file),
                "smtpd_tls_key_file": str(self._pki.key_file),
                "smtpd_tls_session_cache_database": "",
                "smtpd_tls_loglevel": "1",  # logs "TLS connection established"
            }
        if self.auth:
            cfg |= {
                "smtpd_sasl_auth_enable": "yes",
                "smtpd_sasl_type": "dovecot",
                "smtpd_sasl_path": str(self._dovecot_socket),
                "smtpd_sasl_security_options": "noanonymous",
                "smtpd_sasl_tls_security_options": "noanonymous",
                "smtpd_tls_auth_only": "yes" if self.tls != "none" else "no",
            }
            if self.require_auth:
                cfg["smtpd_client_restrictions"] = "permit_sasl_authenticated, reject"
        cfg |= self.extra_config
        return cfg

    def _write_config(self) -> None:
        lines = [f"{key} = {value}" for key, value in self._main_cf().items()]
        (self.config_dir / "main.cf").write_text("\n".join(lines) + "\n")
        listen = f"{self.host}:{self.port}"
        (self.config_dir / "master.cf").write_text(_MASTER_CF.format(listen=listen))
        # "postfix start" sleeps until config files are >~2 s old (so a later edit in the
        # same second is detectable); backdating them saves ~1.8 s per start.
        past = time.time() - 10
        for name in ("main.cf", "master.cf", "reject_access.regexp"):
            os.utime(self.config_dir / name, (past, past))

    def _start_postfix(self) -> None:
        cmd_log = self._dir() / "postfix-start.out"
        last_error = ""
        # A port taken between free_port() and bind() makes master fail: retry with a new one.
        for _attempt in range(3):
            self.port = free_port(self.host)
            self._write_config()
            with open(cmd_log, "ab") as out:
                # "postfix start" runs a full "postfix check" (~2 s, and "post-install
                # create-missing" as well): we made the queue dirs, so the marker skips it.
                (self.queue_dir / "quick-start").touch()
                # New session + stdio in a file: master inherits both, a pipe would hang us.
                res = subprocess.run(
                    [POSTFIX, "-c", str(self.config_dir), "start"],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    timeout=self.start_timeout + 10,
                    check=False,
                    start_new_session=True,
                )
            if res.returncode == 0 and self._wait_listening():
                return
            last_error = f"postfix start exited {res.returncode}"
            if "unauthorized configuration directory" in _tail(cmd_log) and not self._registered:
                # Only untrusted (non-root/set-gid) callers need the default instance's consent.
                self._register()
                continue
            if "Address already in use" not in self.log_text():
                break
            _run([POSTFIX, "-c", str(self.config_dir), "stop"], timeout=15)
        raise PostfixError(
            f"Postfix did not start on {self.host}:{self.port} ({last_error}).\n"
            f"--- {cmd_log.name}:\n{_tail(cmd_log)}\n--- maillog:\n{_tail(self.log_file)}"
        )

    def _wait_listening(self) -> bool:
        pid_file = self.queue_dir / "pid" / "master.pid"
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError):
                self._master_pid = int(pid_file.read_text().split()[0])
            # The master binds the port itself; checking /proc avoids a logged probe session.
            if port_is_listening(self.host, self.port):
                return True
            if self._master_pid is not None and not _alive(self._master_pid):
                return False
            time.sleep(0.02)
        return False

    # --------------------------------------------------------------- dovecot

    @property
    def _dovecot_dir(self) -> Path:
        return self._dir() / "dovecot"

    @property
    def _dovecot_socket(self) -> Path:
        return self._dovecot_dir / "auth-client"

    @property
    def dovecot_log_file(self) -> Path:
        return self._dovecot_dir / "dovecot.log"

    def _start_dovecot(self) -> None:
        d = self._dovecot_dir
        d.mkdir(mode=0o755)
        passwd = d / "passwd"
        passwd.write_text("".join(f"{u}:{{PLAIN}}{p}::::::\n" for u, p in self.users.items()))
        # Read by the auth process, which runs as user "dovecot".
        os.chmod(passwd, 0o644)
        conf = d / "dovecot.conf"
        conf.write_text(
            _DOVECOT_CONF.format(
                run=d / "run",
                state=d / "state",
                name=f"fastsmtp-{d.parent.name.removeprefix(_DIR_PREFIX)}",
                log=self.dovecot_log_file,
                passwd=passwd,
                uid=VMAIL_UID,
                socket=self._dovecot_socket,
            )
        )
        (d / "state").mkdir()
        with open(d / "dovecot.out", "wb") as out:
            self._dovecot = subprocess.Popen(
                [DOVECOT, "-F", "-c", str(conf)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + self.start_timeout
        while not self._dovecot_socket.exists():
            if self._dovecot.poll() is not None or time.monotonic() > deadline:
                raise PostfixError(
                    f"Dovecot auth did not start (exit {self._dovecot.returncode}).\n"
                    f"--- dovecot.out:\n{_tail(d / 'dovecot.out')}\n"
                    f"--- dovecot.log:\n{_tail(self.dovecot_log_file)}"
                )
            time.sleep(0.02)

    def _stop_dovecot(self) -> None:
        proc, self._dovecot = self._dovecot, None
        if proc is None:
            return
        # A graceful SIGTERM costs ~1 s and this Dovecot keeps no state: kill its whole
        # process group (auth/log/config children share the foreground master's).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        kill_process_tree(session=proc.pid)

    # --------------------------------------------------------------- queue

    def queue_count(self) -> int:
        """Number of messages still in Postfix's queues (not yet delivered)."""
        total = 0
        for name in _QUEUE_DIRS:
            for _root, _dirs, files in os.walk(self.queue_dir / name):
                total += len(files)
        return total

    def queue_empty(self) -> bool:
        return self.queue_count() == 0

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Wait until every accepted message has left the queue (delivered or bounced)."""
        deadline = time.monotonic() + timeout
        while not self.queue_empty():
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{self.queue_count()} messages still queued after {timeout}s\n"
                    f"{_tail(self.log_file)}"
                )
            time.sleep(0.05)

    # ------------------------------------------------------------- mailboxes

    @property
    def maildir(self) -> Path:
        """The single Maildir all recipients share (``cur``/``new``/``tmp`` inside)."""
        return self.mail_dir / "maildir"

    def _delivered_files(self) -> list[Path]:
        new_dir = self.maildir / "new"
        try:
            files = [p for p in new_dir.iterdir() if p.is_file()]
        except FileNotFoundError:
            return []
        # Maildir names start with the delivery time; mtime order is the delivery order.
        files.sort(key=lambda p: (p.stat().st_mtime_ns, p.name))
        return files

    def _addressed(self, files: list[Path]) -> dict[str, list[bytes]]:
        # virtual(8) writes its own "Delivered-To: <recipient>" as the message's first lines
        # (after Return-Path), so the first Delivered-To names the mailbox it was meant for.
        result: dict[str, list[bytes]] = {}
        for path in files:
            if path in self._address_cache:
                address, raw = self._address_cache[path], path.read_bytes()
            else:
                raw = path.read_bytes()
                address = _delivered_to(raw)
                self._address_cache[path] = address
            result.setdefault(address, []).append(raw)
        return result

    def delivered_count(self) -> int:
        """Number of messages in the Maildir's ``new/`` (one per recipient delivered)."""
        return len(self._delivered_files())

    def _count_for(self, address: str) -> int:
        wanted = address.lower()
        count = 0
        for path in self._delivered_files():
            if path not in self._address_cache:
                self._address_cache[path] = _delivered_to(path.read_bytes())
            count += self._address_cache[path] == wanted
        return count

    def _wait_delivered(self, expected: int | None, timeout: float, address: str | None) -> None:
        if expected is None:
            self.wait_idle(timeout)
            return
        deadline = time.monotonic() + timeout

        def count() -> int:
            return self.delivered_count() if address is None else self._count_for(address)

        while (got := count()) < expected:
            if time.monotonic() > deadline:
                what = f" for {address}" if address else ""
                raise TimeoutError(
                    f"{got}/{expected} messages delivered{what} after {timeout}s "
                    f"({self.queue_count()} still queued)\n{_tail(self.log_file)}"
                )
            time.sleep(0.02)

    def maildir_messages(self, timeout: float = 10.0, expected: int | None = None) -> list[bytes]:
        """Raw bytes of all delivered messages (the Maildir's ``new/``), oldest first.

        Waits until at least ``expected`` messages have been delivered (``TimeoutError``
        otherwise); with ``expected=None`` waits until the queue is empty. A message sent to
        N recipients counts N times. Postfix prepends ``Return-Path``, ``Delivered-To`` and
        ``Received`` headers, and lines end in LF.
        """
        self._wait_delivered(expected, timeout, None)
        return [p.read_bytes() for p in self._delivered_files()]

    def messages_by_address(
        self, timeout: float = 10.0, expected: int | None = None
    ) -> dict[str, list[bytes]]:
        """Like ``maildir_messages`` but grouped by (lower-cased) recipient address."""
        self._wait_delivered(expected, timeout, None)
        return self._addressed(self._delivered_files())

    def messages_for(
        self, address: str, expected: int | None = 1, timeout: float = 10.0
    ) -> list[bytes]:
        """Delivered messages of one recipient, waiting until ``expected`` have arrived.

        Handy with the shared session instance: use a unique address per test.
        """
        self._wait_delivered(expected, timeout, address)
        return self._addressed(self._delivered_files()).get(address.lower(), [])

    def clear_maildir(self) -> None:
        """Delete all delivered mail (the Maildir is re-created on the next delivery)."""
        shutil.rmtree(self.maildir, ignore_errors=True)
        self._address_cache.clear()

    # -------------------------------------------------------------------- log

    def log_text(self) -> str:
        """The instance's whole maillog so far."""
        try:
            return self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_offset(self) -> int:
        """Current maillog size; pass it as ``since=`` to look only at later lines."""
        try:
            return self.log_file.stat().st_size
        except FileNotFoundError:
            return 0

    def _log_since(self, since: int) -> str:
        try:
            with open(self.log_file, "rb") as fh:
                fh.seek(since)
                return fh.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def disconnect_stats(
        self, since: int = 0, expected: int | None = None, timeout: float = 10.0
    ) -> list[DisconnectStats]:
        """Per-connection command counts from ``disconnect from ...`` maillog lines.

        Each dict maps a command to how many succeeded, e.g.
        ``{"ehlo": 1, "mail": 2, "rcpt": 2, "bdat": 4, "quit": 1, "commands": 10}``.
        Postfix writes ``name=ok/total`` when some failed; then the dict also gets
        ``"name_total"``. ``since`` is a ``log_offset()``; with ``expected`` this waits
        until that many sessions have been logged (logging lags the SMTP reply slightly).
        Only sessions that connected after ``since`` count: an earlier test's session can
        be logged as ended after it.
        """
        deadline = time.monotonic() + timeout
        while True:
            stats = parse_disconnect_stats(self._log_since(since), started_in_log=since > 0)
            if expected is None or len(stats) >= expected:
                return stats
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{len(stats)}/{expected} disconnect lines after {timeout}s\n"
                    f"{_tail(self.log_file)}"
                )
            time.sleep(0.02)


def parse_disconnect_stats(log: str, *, started_in_log: bool = False) -> list[DisconnectStats]:
    """Parse Postfix ``disconnect from HOST ehlo=1 mail=1/2 ...`` lines (see above). With
    ``started_in_log``, a session counts only if its ``connect from`` line (same smtpd
    process) is in ``log`` too."""
    result: list[DisconnectStats] = []
    started: Counter[str] = Counter()
    for line in log.splitlines():
        if started_in_log and (c := _CONNECT_RE.search(line)):
            started[c.group(1)] += 1
            continue
        m = _DISCONNECT_RE.search(line)
        if not m:
            continue
        if started_in_log:
            process = _PROCESS_RE.search(line)
            key = process.group(1) if process else ""
            if not started[key]:
                continue  # it began before this part of the log
            started[key] -= 1
        stats: DisconnectStats = {}
        for item in m.group(1).split():
            name, _, value = item.partition("=")
            ok, _, total = value.partition("/")
            stats[name] = int(ok)
            if total:
                stats[f"{name}_total"] = int(total)
        result.append(stats)
    return result


def _delivered_to(raw: bytes) -> str:
    """The lower-cased address of the first ``Delivered-To:`` header ("" if none)."""
    head = raw.split(b"\n\n", 1)[0]
    m = re.search(rb"^Delivered-To:[ \t]*<?([^>\r\n]*)>?", head, re.MULTILINE | re.IGNORECASE)
    return m.group(1).decode("utf-8", errors="replace").strip().lower() if m else ""


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(missing)"


def _uid(user: str) -> int:
    return pwd.getpwnam(user).pw_uid


def _gid(group: str) -> int:
    return grp.getgrnam(group).gr_gid
