"""A real DNS server for the routing tests: Debian's ``unbound`` on ``127.0.0.1:<free port>``,
serving zones the test writes.

Why unbound: one daemon does all three jobs the tests need. It serves plain zones from
``local-data`` (any record type, per-record TTLs, an SOA for negative answers), it is a
*validating* resolver, so a DNSSEC-signed zone loaded as an ``auth-zone`` (signed here with
dnspython, keys made with ``cryptography``) comes back with the AD bit under a local trust
anchor, and with ``log-queries`` it writes one line per query a client asked, which is how
tests count look-ups ("at most one per TTL").

Zone kinds (``Zone``):

* plain: ``local-zone: NAME static`` + ``local-data``; names not in it are NXDOMAIN with
  the zone's SOA (negative TTL = ``negative_ttl``). Can be added while running
  (``add_zone``) through ``unbound-control`` on a private unix socket.
* ``signed=True``: signed with an ECDSA P-256 key, served through the validator: answers
  carry AD.
* ``bogus=True``: signed, but the trust anchor names another key, so validation fails and
  unbound answers SERVFAIL, as a real resolver does for a broken DNSSEC chain.
* ``DnsServer(dead_zones=[...])``: delegated (``stub-zone``) to a port where nothing
  answers: queries time out.

Anything outside the configured zones is REFUSED (``local-zone: "." refuse``), so a test can
never leak a query to the internet. unbound's own defaults block ``test.``; it is
re-enabled so the zones live under the RFC 2606 ``.test`` TLD.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import weakref
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import dns.dnssec
import dns.rdatatype
import dns.zone
from cryptography.hazmat.primitives.asymmetric import ec
from dns.dnssectypes import Algorithm

from .lifecycle import Peer
from .ports import LOCALHOST
from .postfix import claim_dir, reap_stale_once, scratch_root

__all__ = ["UNBOUND", "DnsServer", "DnsServerError", "Zone", "free_udp_tcp_port"]

UNBOUND = shutil.which("unbound") or "/usr/sbin/unbound"
UNBOUND_CONTROL = shutil.which("unbound-control") or "/usr/sbin/unbound-control"
KEEP_ENV = "FASTSMTP_KEEP_PEERS"

_LIVE: weakref.WeakSet[DnsServer] = weakref.WeakSet()

# "[1700000000] unbound[123:0] info: 127.0.0.1 a.test. MX IN" (a query; the reply line
# that log-replies adds has rcode and timing fields after "IN").
_QUERY_LINE = re.compile(r"\binfo: (\S+) (\S+) (\S+) IN$")


@atexit.register
def _stop_all() -> None:
    # unbound runs in its own session and would outlive an interrupted test run.
    for server in list(_LIVE):
        with contextlib.suppress(Exception):
            server.stop()


class DnsServerError(RuntimeError):
    """unbound failed to start or refused a change."""


@dataclass(frozen=True)
class Zone:
    """A zone to serve.

    Args:
        name: the apex, e.g. ``"mx.test"``.
        records: zone-file lines relative to the apex, ``"@ 300 MX 10 mx1"`` or
            ``"mx1 60 A 127.0.0.2"`` (``@`` is the apex; names without a dot at the end are
            relative; the TTL is optional, ``ttl`` is the default). SOA and NS are added.
        ttl: default TTL of the records.
        negative_ttl: the SOA's MINIMUM and TTL, i.e. how long NXDOMAIN/NODATA may be cached.
        signed: DNSSEC-sign it and serve it through the validator (answers carry AD).
        bogus: sign it under a key the trust anchor does not name (validator: SERVFAIL).
    """

    name: str
    records: Sequence[str] = ()
    ttl: int = 300
    negative_ttl: int = 60
    signed: bool = False
    bogus: bool = False

    @property
    def origin(self) -> str:
        return self.name.rstrip(".") + "."

    def to_dns_zone(self) -> dns.zone.Zone:
        """The zone parsed by dnspython (which also validates the record syntax)."""
        neg = self.negative_ttl
        text = "\n".join(
            [
                f"$ORIGIN {self.origin}",
                f"$TTL {self.ttl}",
                f"@ {neg} IN SOA ns hostmaster 1 3600 600 86400 {neg}",
                "@ IN NS ns",
                *[_with_class(line) for line in self.records],
                "",
            ]
        )
        return dns.zone.from_text(text, origin=self.origin, relativize=False)

    def local_data(self) -> list[str]:
        """The zone as absolute ``local-data`` lines for unbound."""
        zone = self.to_dns_zone()
        lines = []
        for name, ttl, rdata in zone.iterate_rdatas():
            rdtype = dns.rdatatype.to_text(rdata.rdtype)
            lines.append(f"{name.to_text()} {ttl} IN {rdtype} {rdata.to_text()}")
        return lines


def _with_class(line: str) -> str:
    """Insert ``IN`` after the owner and optional TTL, so records may omit it."""
    parts = line.split()
    if "IN" in parts:
        return line
    at = 2 if len(parts) > 1 and parts[1].isdigit() else 1
    return " ".join([*parts[:at], "IN", *parts[at:]])


def free_udp_tcp_port(host: str = LOCALHOST) -> int:
    """A port free for both UDP and TCP on ``host`` a moment ago (DNS listens on both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((host, 0))
            port: int = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((host, port))
                except OSError:
                    continue
                return port
    raise DnsServerError("no port free for both UDP and TCP")


def _sign(zone: Zone, base: Path) -> tuple[Path, str]:
    """Sign ``zone`` into ``base/NAME.signed``; return the file and its trust anchor line
    (a DS for the signing key, or for an unrelated key when the zone is ``bogus``)."""
    dzone = zone.to_dns_zone()
    key = ec.generate_private_key(ec.SECP256R1())
    dnskey = dns.dnssec.make_dnskey(key.public_key(), Algorithm.ECDSAP256SHA256, flags=257)
    now = dt.datetime.now(dt.UTC)
    with dzone.writer() as txn:
        dns.dnssec.sign_zone(
            dzone,
            txn=txn,
            keys=[(key, dnskey)],
            add_dnskey=True,
            dnskey_ttl=zone.ttl,
            inception=now - dt.timedelta(hours=1),
            expiration=now + dt.timedelta(days=7),
        )
    path = base / f"{zone.origin}signed"
    path.write_text(dzone.to_text(relativize=False))
    anchor_key = dnskey
    if zone.bogus:
        other = ec.generate_private_key(ec.SECP256R1())
        anchor_key = dns.dnssec.make_dnskey(
            other.public_key(), Algorithm.ECDSAP256SHA256, flags=257
        )
    ds = dns.dnssec.make_ds(zone.origin, anchor_key, "SHA256")
    return path, f"{zone.origin} DS {ds.to_text()}"


class DnsServer(Peer):
    """unbound on ``127.0.0.1:<free port>`` (UDP and TCP) serving ``zones``.

    Args:
        zones: the zones to serve from the start.
        dead_zones: names delegated to a server that never answers (queries time out).
        start_timeout: seconds to wait for unbound to come up.

    Point a resolver at ``server.address``. ``queries()`` counts what clients asked.
    """

    def __init__(
        self,
        zones: Iterable[Zone] = (),
        *,
        dead_zones: Iterable[str] = (),
        start_timeout: float = 15.0,
    ) -> None:
        self.zones = list(zones)
        self.dead_zones = [d.rstrip(".") + "." for d in dead_zones]
        self.start_timeout = start_timeout
        self.host = LOCALHOST
        self.port = 0
        self.base: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._dead_port = 0

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def _path(self, name: str) -> Path:
        if self.base is None:
            raise DnsServerError("the DNS server has not been started")
        return self.base / name

    @property
    def log_file(self) -> Path:
        return self._path("unbound.log")

    @property
    def config_file(self) -> Path:
        return self._path("unbound.conf")

    def __repr__(self) -> str:
        state = "running" if self._proc is not None else "stopped"
        return f"<DnsServer unbound {self.host}:{self.port} {state}>"

    # ------------------------------------------------------------- config

    def _config(self) -> str:
        assert self.base is not None
        server = [
            f"interface: {self.host}@{self.port}",
            f"port: {self.port}",
            'username: ""',
            'chroot: ""',
            f'directory: "{self.base}"',
            f'pidfile: "{self.base}/unbound.pid"',
            f'logfile: "{self.log_file}"',
            "use-syslog: no",
            "log-queries: yes",
            "log-replies: yes",
            "verbosity: 1",
            "do-daemonize: no",
            "do-ip6: no",
            "do-not-query-localhost: no",
            "num-threads: 1",
            "access-control: 127.0.0.0/8 allow",
            'module-config: "validator iterator"',
            "trust-anchor-signaling: no",
            "root-key-sentinel: no",
            'local-zone: "test." nodefault',
            'local-zone: "." refuse',
        ]
        tail: list[str] = []
        anchors: list[str] = []
        for zone in self.zones:
            if zone.signed or zone.bogus:
                path, anchor = _sign(zone, self.base)
                anchors.append(anchor)
                server.append(f'local-zone: "{zone.origin}" transparent')
                tail += [
                    "auth-zone:",
                    f'    name: "{zone.origin}"',
                    f'    zonefile: "{path}"',
                    "    for-downstream: no",
                    "    for-upstream: yes",
                    "    fallback-enabled: no",
                ]
            else:
                server.append(f'local-zone: "{zone.origin}" static')
                # Single quotes: TXT data carries double quotes of its own.
                server += [f"local-data: '{line}'" for line in zone.local_data()]
        for name in self.dead_zones:
            server += [f'local-zone: "{name}" transparent', f'domain-insecure: "{name}"']
            dead = f"{self.host}@{self._dead_port}"
            tail += ["stub-zone:", f'    name: "{name}"', f"    stub-addr: {dead}"]
        if anchors:
            anchor_file = self.base / "trust-anchors"
            anchor_file.write_text("\n".join(anchors) + "\n")
            server.append(f'trust-anchor-file: "{anchor_file}"')
        control = [
            "control-enable: yes",
            f'control-interface: "{self.base}/control.sock"',
        ]
        return "\n".join(
            ["server:", *(f"    {line}" for line in server), *tail, "remote-control:"]
            + [f"    {line}" for line in control]
            + [""]
        )

    # ----------------------------------------------------------- lifecycle

    def start(self) -> Self:
        if self._proc is not None:
            return self
        reap_stale_once()
        self.base = Path(tempfile.mkdtemp(prefix="fastsmtp-dns-", dir=scratch_root()))
        claim_dir(self.base)
        _LIVE.add(self)
        last = ""
        for _attempt in range(3):  # the free port may be taken before unbound binds it
            self.port = free_udp_tcp_port(self.host)
            # A port nothing listens on (UDP there is answered by nothing at all: unbound
            # gets no reply and keeps retrying, so clients time out).
            self._dead_port = free_udp_tcp_port(self.host)
            self.config_file.write_text(self._config())
            out = self._path("unbound.out")
            with open(out, "ab") as fh:
                proc = subprocess.Popen(
                    [UNBOUND, "-d", "-c", str(self.config_file)],
                    stdin=subprocess.DEVNULL,
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            deadline = time.monotonic() + self.start_timeout
            while proc.poll() is None and time.monotonic() < deadline:
                if self.log_file.exists() and "start of service" in self.log_file.read_text(
                    errors="replace"
                ):
                    self._proc = proc
                    return self
                time.sleep(0.02)
            _kill(proc)
            last = out.read_text(errors="replace")
            if self.log_file.exists():
                last += self.log_file.read_text(errors="replace")
            if "in use" not in last:
                break
        self._cleanup()
        raise DnsServerError(f"unbound did not start on {self.host}:{self.port}:\n{last}")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            _kill(proc)
        self._cleanup()

    def _cleanup(self) -> None:
        _LIVE.discard(self)
        if self.base is not None and not os.environ.get(KEEP_ENV):
            shutil.rmtree(self.base, ignore_errors=True)

    # ------------------------------------------------------------ run time

    def control(self, *args: str, stdin: str | None = None) -> str:
        """Run ``unbound-control`` against this server; returns its output."""
        done = subprocess.run(
            [UNBOUND_CONTROL, "-c", str(self.config_file), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=15,
        )
        if done.returncode != 0 or done.stdout.startswith("error"):
            raise DnsServerError(f"unbound-control {' '.join(args)}: {done.stdout}{done.stderr}")
        return done.stdout

    def add_zone(self, zone: Zone) -> None:
        """Serve another plain zone (or replace one) without restarting."""
        if zone.signed or zone.bogus:
            raise DnsServerError("signed zones are only loaded at start")
        self.remove_zone(zone.name)
        self.control("local_zone", zone.origin, "static")
        self.control("local_datas", stdin="\n".join(zone.local_data()) + "\n")
        self.zones.append(zone)

    def remove_zone(self, name: str) -> None:
        origin = name.rstrip(".") + "."
        if any(z.origin == origin for z in self.zones):
            self.control("local_zone_remove", origin)
            self.zones = [z for z in self.zones if z.origin != origin]

    def queries(self, name: str | None = None, rdtype: str | None = None) -> int:
        """How many queries clients asked (optionally for one name and/or type)."""
        counts = self.query_counts()
        want_name = None if name is None else name.rstrip(".").lower() + "."
        return sum(
            n
            for (qname, qtype), n in counts.items()
            if (want_name is None or qname == want_name) and (rdtype is None or qtype == rdtype)
        )

    def query_counts(self) -> Counter[tuple[str, str]]:
        """``{(name with trailing dot, type): count}`` from the query log."""
        counts: Counter[tuple[str, str]] = Counter()
        if self.base is None or not self.log_file.exists():
            return counts
        for line in self.log_file.read_text(errors="replace").splitlines():
            match = _QUERY_LINE.search(line)
            if match:
                counts[(match.group(2).lower(), match.group(3))] += 1
        return counts


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
