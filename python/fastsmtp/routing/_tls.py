"""What TLS a route asks of each MX host: the policy the engine applies when it connects.

Three sources, strongest first, decided per MX host by the router:

* **DANE** (RFC 7672): a DNSSEC-validated TLSA RRset at ``_25._tcp.HOST`` with usable
  records (DANE-TA(2) or DANE-EE(3)): TLS is mandatory and the server's chain must match a
  record (``fastsmtp.routing.verify_chain``). A validated TLSA RRset whose records are all
  unusable still makes TLS mandatory, without authentication (RFC 7672 2.2, in short: a
  secure but unusable TLSA RRset means encryption without authentication, never
  plaintext).
* **MTA-STS** (RFC 8461): the host must match the policy's ``mx`` patterns and present a
  certificate that verifies (WebPKI) for its name. In ``enforce`` mode a failure makes the
  host unusable; in ``testing`` mode it is only reported (``report_only``).
* **Opportunistic**: STARTTLS when offered, any certificate, plaintext otherwise (what MTAs
  do by default, RFC 7435).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ._resolver import TLSARecord

__all__ = ["OPPORTUNISTIC", "HostTLS", "TLSMode"]


class TLSMode(enum.Enum):
    OPPORTUNISTIC = "opportunistic"
    MTA_STS = "mta-sts"
    DANE = "dane"  # TLS required, chain checked against ``tlsa``
    DANE_ENCRYPT = "dane-encrypt"  # TLS required, no authentication (all TLSA unusable)


@dataclass(frozen=True, slots=True)
class HostTLS:
    """The TLS requirement for one MX host.

    Attributes:
        mode: where the requirement comes from.
        required: no TLS (or a failed verification) makes this host unusable: the engine
            moves on to the next MX host, and defers when none is left.
        report_only: verify and count failures, but deliver anyway (MTA-STS ``testing``).
        verify_names: reference identifiers a certificate must match (the MX host name for
            MTA-STS and DANE-TA; nothing for DANE-EE, RFC 7672 3.1.1).
        tlsa: the usable TLSA records for DANE.
        policy_domain: the domain whose policy this is (for texts and TLS reports).
    """

    mode: TLSMode
    required: bool = False
    report_only: bool = False
    verify_names: tuple[str, ...] = ()
    tlsa: tuple[TLSARecord, ...] = ()
    policy_domain: str = ""

    @property
    def verify_pkix(self) -> bool:
        """The certificate must verify against the WebPKI trust store for the host name."""
        return self.mode is TLSMode.MTA_STS

    def describe(self) -> str:
        if self.mode is TLSMode.MTA_STS:
            how = "testing" if self.report_only else "enforce"
            return f"MTA-STS policy of {self.policy_domain} ({how})"
        if self.mode is TLSMode.DANE:
            return f"DANE TLSA records of {self.verify_names[0] if self.verify_names else '?'}"
        if self.mode is TLSMode.DANE_ENCRYPT:
            return "DANE (unusable TLSA records: encryption required)"
        return "opportunistic TLS"


OPPORTUNISTIC = HostTLS(TLSMode.OPPORTUNISTIC)
