"""What the outbox hands out: recipient states, lanes, jobs, claims and records.

States are small integers in the database (one byte per row) and names everywhere else.
A recipient moves ``queued -> on_wire -> accepted | rejected | failed`` or, on a 4xx,
``-> deferred`` (with a next attempt time) and round again, until ``expired`` (deferred for
longer than the queue lifetime). A recipient found ``on_wire`` when a sender opens the
outbox after a crash becomes ``in_doubt``: the end of data went out, the reply never came,
so the server may or may not have the message.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from fastsmtp._models import Message, Result, Status

# Row states (the `state` column). Final states are >= ACCEPTED.
QUEUED = 0
ON_WIRE = 1
DEFERRED = 2
IN_DOUBT = 3
ACCEPTED = 4
REJECTED = 5
FAILED = 6
EXPIRED = 7
CANCELLED = 8
SUPPRESSED = 9
FIRST_FINAL = ACCEPTED

State = Literal[
    "queued",
    "on_wire",
    "deferred",
    "in_doubt",
    "accepted",
    "rejected",
    "failed",
    "expired",
    "cancelled",
    "suppressed",
]
"""A recipient's state in the outbox:

* ``queued``: not tried yet; ``deferred``: got a 4xx, tried again at ``next_attempt_at``;
* ``on_wire``: its end of data was written, the reply is pending;
* ``in_doubt``: was ``on_wire`` when its sender died; not sent again unless asked;
* final: ``accepted``, ``rejected``, ``failed``, ``expired`` (deferred past the queue
  lifetime), ``cancelled`` (its job was cancelled first), ``suppressed`` (not sent on
  purpose)."""

STATE_NAMES: tuple[State, ...] = (
    "queued",
    "on_wire",
    "deferred",
    "in_doubt",
    "accepted",
    "rejected",
    "failed",
    "expired",
    "cancelled",
    "suppressed",
)
STATE_CODES: dict[str, int] = {name: code for code, name in enumerate(STATE_NAMES)}

RESULT_STATUS: dict[int, Status] = {
    ACCEPTED: "accepted",
    REJECTED: "rejected",
    FAILED: "failed",
    EXPIRED: "deferred",
    CANCELLED: "failed",
    SUPPRESSED: "failed",
    # The in-memory engine reports a message whose end of data got no reply as deferred
    # with a reason; an in-doubt recipient is reported the same way.
    IN_DOUBT: "deferred",
}
"""The ``Result.status`` each state with an outcome is reported as."""

Lane = Literal["transactional", "bulk"]
LANES: tuple[Lane, ...] = ("transactional", "bulk")
"""Claim order: every due transactional recipient before any bulk one."""
LANE_CODES: dict[str, int] = {"transactional": 0, "bulk": 1}

# Job states (the jobs.state column).
JobState = Literal["filling", "active", "cancelled", "drained"]

JOB_FILLING = 0
"""Recipients are still being added (or their adding was interrupted): not claimable,
except by the sender that is adding them."""
JOB_ACTIVE = 1
JOB_CANCELLED = 2
JOB_DRAINED = 3
"""Every recipient was handed to the sender at least once: none is queued (some may still
be deferred, on the wire or in doubt). Claims skip such jobs' key ranges."""
JOB_STATE_NAMES: tuple[JobState, ...] = ("filling", "active", "cancelled", "drained")

KEY_BITS = 32
"""A recipient's key is ``job_rowid << 32 | index``: one integer primary key (the row's
SQLite rowid) orders a job's recipients by index, with no second index to keep."""
MAX_INDEX = (1 << KEY_BITS) - 1


def recipient_key(job_rowid: int, index: int) -> int:
    return (job_rowid << KEY_BITS) | index


class JobInfo(msgspec.Struct, kw_only=True, frozen=True):
    """A job as the outbox has it: identity, schedule and (when asked) counts by state."""

    job_id: str
    lane: Lane
    state: JobState
    created_at: float
    """Unix time."""
    send_at: float
    """Unix time before which none of its recipients is sent."""
    total: int
    """Recipients stored so far (all of them once ``state`` is not ``filling``)."""
    fingerprint: str
    """Hex SHA-256 of the template and batch data it was created with."""
    counts: dict[str, int] = msgspec.field(default_factory=dict)
    """Recipients by state name (states with none are left out); empty when the caller did
    not ask for counts."""

    @property
    def done(self) -> bool:
        """Every recipient has a final state (in-doubt ones are not final). Needs counts."""
        finished = sum(n for s, n in self.counts.items() if STATE_CODES[s] >= FIRST_FINAL)
        return self.state != "filling" and finished == self.total

    @property
    def settled(self) -> bool:
        """Every recipient has an outcome to report: final, or in doubt (which nothing
        sends again unless asked). A durable send_batch is over then. Needs counts."""
        settled = sum(
            n for s, n in self.counts.items() if STATE_CODES[s] >= FIRST_FINAL or s == "in_doubt"
        )
        return self.state != "filling" and settled == self.total


class JobTemplate(msgspec.Struct, kw_only=True, frozen=True):
    """What the engine renders a job's messages from: stored once per job."""

    job_id: str
    rowid: int
    """The job's internal number (the high bits of its recipients' keys)."""
    message: Message
    """The template, with its Date fixed when the job was created (a resend renders the
    same Date header)."""
    data: dict[str, Any] | None
    lane: Lane
    send_at: float
    msgid_token: str
    msgid_domain: str

    @property
    def literal(self) -> bool:
        """The job is one message sent as it is (to/cc/bcc are its recipients), not a
        template rendered per recipient."""
        return bool(self.message.to or self.message.cc or self.message.bcc)

    def message_id(self, index: int) -> str:
        """The Message-ID of recipient ``index``: fixed when the job was created, so every
        attempt (in any process) sends the same one. A literal message has one for all."""
        if self.literal and self.message.message_id:
            mid = self.message.message_id
            return mid if mid.startswith("<") else f"<{mid}>"
        return f"<{self.msgid_token}.{index}@{self.msgid_domain}>"


class Claim(msgspec.Struct, kw_only=True, gc=False):
    """One recipient handed to the sender: render its message and send it, then record
    its outcome with the key."""

    key: int
    job: JobTemplate
    index: int
    address: str
    name: str | None
    data: dict[str, Any] | None
    attempts: int
    """Attempts before this one."""
    in_doubt: bool
    """It was in doubt before and is sent again on purpose (it may reach its recipient
    twice)."""

    @property
    def message_id(self) -> str:
        return self.job.message_id(self.index)


class RecipientRecord(msgspec.Struct, kw_only=True, frozen=True, gc=False):
    """One recipient row, as stored."""

    job_id: str
    index: int
    address: str
    name: str | None
    data: dict[str, Any] | None
    state: State
    attempts: int
    next_attempt_at: float | None
    code: int | None
    enhanced_code: str | None
    text: str | None
    message_id: str
    in_doubt: bool
    """Its end of data was on the wire when a sender died: the server may have the message
    (kept when it is later sent again and gets a final result)."""

    def to_result(self) -> Result | None:
        """The fastsmtp Result for a recipient with an outcome, None while it has none."""
        status = RESULT_STATUS.get(STATE_CODES[self.state])
        if status is None:
            return None
        text = self.text or ""
        if self.state == "in_doubt":
            text = "in doubt: the end of data was sent, the reply was lost" + (
                f" ({text})" if text else ""
            )
        elif self.state == "cancelled" and not text:
            text = "cancelled"
        return Result(
            recipient=self.address,
            status=status,
            code=self.code,
            enhanced_code=self.enhanced_code,
            text=text,
            message_id=self.message_id,
            index=self.index,
            attempts=self.attempts,
        )
