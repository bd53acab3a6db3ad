"""When a deferred recipient is tried again, and when it is given up.

A recipient that got a 4xx stays in the outbox and is tried again after an exponential
backoff, like an MTA's deferred queue, until ``max_queue_lifetime`` after it was first due
(its job's ``send_at``); a deferral after that is final. The defaults follow Postfix
(``minimal_backoff_time`` 300 s, ``maximal_backoff_time`` 4000 s, ``maximal_queue_lifetime``
5 days); jitter spreads the retries of a large job that was deferred all at once, so they
do not come back as one burst.
"""

from __future__ import annotations

import random

import msgspec


class BackoffPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """Exponential backoff with jitter between attempts of one recipient.

    The delay before attempt ``n + 1`` (after ``n >= 1`` attempts) is
    ``min(max_backoff, min_backoff * multiplier ** (n - 1))``, scaled by a random factor in
    ``[1 - jitter, 1]``, and never later than the end of the queue lifetime (so the last
    attempt happens at the deadline rather than never).
    """

    min_backoff: float = 300.0
    """Seconds before the second attempt."""
    max_backoff: float = 4000.0
    """The longest wait between two attempts, in seconds."""
    multiplier: float = 2.0
    jitter: float = 0.1
    """The fraction of a delay that may be taken off at random (0 for none)."""
    max_queue_lifetime: float = 5 * 24 * 3600.0
    """Seconds after a recipient was first due (its job's ``send_at``) after which a
    deferral is final: the recipient is reported ``deferred`` and not tried again."""

    def __post_init__(self) -> None:
        if not 0 < self.min_backoff <= self.max_backoff:
            raise ValueError("need 0 < min_backoff <= max_backoff")
        if self.multiplier < 1:
            raise ValueError("multiplier must be at least 1")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter must be in [0, 1)")
        if self.max_queue_lifetime < 0:
            raise ValueError("max_queue_lifetime must not be negative")

    def delay(self, attempts: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after ``attempts`` attempts (at least 1) before the next one."""
        exponent = max(0, attempts - 1)
        # Cap the exponent: multiplier ** 1000 overflows a float long before it matters.
        base = min(self.max_backoff, self.min_backoff * self.multiplier ** min(exponent, 64))
        if self.jitter:
            base *= 1.0 - self.jitter * (rng or random).random()
        return base

    def next_attempt(
        self, attempts: int, first_due: float, now: float, rng: random.Random | None = None
    ) -> float | None:
        """When to try again after a deferral at ``now`` (a Unix time), or None when the
        queue lifetime that started at ``first_due`` is over: the deferral is final."""
        deadline = first_due + self.max_queue_lifetime
        if now >= deadline:
            return None
        return min(now + self.delay(attempts, rng), deadline)
