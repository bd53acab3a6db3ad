"""Routing cost per recipient with a warm cache: 100,000 recipients over 1,000 domains
(Zipf-distributed, s = 1.1; the top 3 domains share MX hosts), resolved through a real
unbound on loopback (``tests.peers.dns``).

Measured (medians of ``--rounds`` rounds, CPU time of this process):

* ``cold``: routing all 1,000 domains once from an empty cache (DNS on the wire), with
  the number of queries unbound logged per (name, type): must be 1 each;
* ``cached``: the per-recipient warm path the engine takes for each recipient
  (``rfind("@")`` + ``Router.cached(domain)`` + ``Shaper.for_route(route)``);
* ``lookup``: the same through ``await Router.lookup(domain)`` (an async call per
  recipient);
* ``group``: ``await Router.group(recipients)`` on the whole batch (per recipient).

The budget (issue 16): the whole routing layer at most 10% of the single-relay engine's
CPU per message (20-48 µs in benches/RESULTS.md), i.e. a few µs per recipient.

Run: ``python benches/bench_routing.py [--rounds 7]`` (needs unbound: .ci/install-peers.sh).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.peers.dns import DnsServer, Zone

from fastsmtp.routing import Resolver, Route, Router, Shaper

DOMAINS = 1_000
RECIPIENTS = 100_000
ZIPF_S = 1.1
MX_POOLS = 50  # distinct MX host sets among the other domains


def zones() -> list[Zone]:
    hosts = Zone(
        "hosts.bench.test",
        [f"mx{i} A 127.0.{i // 250}.{i % 250 + 2}" for i in range(MX_POOLS)]
        + ["big-a A 127.1.0.2", "big-b A 127.1.0.3"],
    )
    out = [hosts]
    for i in range(DOMAINS):
        if i < 3:  # the top 3 domains share one provider's MX hosts (MX rollup)
            mx = ["@ MX 5 big-a.hosts.bench.test.", "@ MX 10 big-b.hosts.bench.test."]
        else:
            mx = [f"@ MX 10 mx{i % MX_POOLS}.hosts.bench.test."]
        out.append(Zone(f"d{i:04d}.bench.test", mx, ttl=3600))
    return out


def recipients(seed: int = 16) -> list[str]:
    rng = random.Random(seed)
    names = [f"d{i:04d}.bench.test" for i in range(DOMAINS)]
    weights = [1 / (k + 1) ** ZIPF_S for k in range(DOMAINS)]
    picks = rng.choices(names, weights=weights, k=RECIPIENTS)
    return [f"user{n}@{d}" for n, d in enumerate(picks)]


def per_recipient_cached(router: Router, shaper: Shaper, rcpts: list[str]) -> float:
    cached, for_route = router.cached, shaper.for_route
    start = time.process_time()
    for rcpt in rcpts:
        route = cached(rcpt[rcpt.rfind("@") + 1 :])
        assert route is not None
        for_route(route)
    return (time.process_time() - start) / len(rcpts)


async def per_recipient_lookup(router: Router, rcpts: list[str]) -> float:
    lookup = router.lookup
    start = time.process_time()
    for rcpt in rcpts:
        await lookup(rcpt[rcpt.rfind("@") + 1 :])
    return (time.process_time() - start) / len(rcpts)


async def per_recipient_group(router: Router, rcpts: list[str]) -> tuple[float, int]:
    start = time.process_time()
    grouping = await router.group(rcpts)
    elapsed = time.process_time() - start
    assert not grouping.failed
    assert sum(len(g.recipients) for g in grouping.groups) == len(rcpts)
    return elapsed / len(rcpts), len(grouping.groups)


async def run(server: DnsServer, rounds: int) -> None:
    rcpts = recipients()
    resolver = Resolver([server.address], timeout=2.0, lifetime=5.0)
    router = Router(resolver)
    shaper = Shaper()
    domains = sorted({r[r.rfind("@") + 1 :] for r in rcpts})

    start = time.perf_counter()
    results = await asyncio.gather(*(router.lookup(d) for d in domains))
    cold = time.perf_counter() - start
    assert all(isinstance(r, Route) for r in results)
    counts = server.query_counts()
    worst = max(counts.values())
    top = [router.cached(f"d{i:04d}.bench.test") for i in range(3)]
    assert all(isinstance(r, Route) for r in top)
    shared = len({r.destination for r in top if isinstance(r, Route)}) == 1

    cached = [per_recipient_cached(router, shaper, rcpts) for _ in range(rounds)]
    lookup = [await per_recipient_lookup(router, rcpts) for _ in range(rounds)]
    grouped = [await per_recipient_group(router, rcpts) for _ in range(rounds)]
    destinations = grouped[0][1]

    print(f"recipients {RECIPIENTS:,} over {len(domains)} distinct domains (Zipf s={ZIPF_S})")
    print(
        f"cold: {cold * 1000:.0f} ms wall for {len(domains)} domains; "
        f"{sum(counts.values())} DNS queries, at most {worst} per (name, type); "
        f"top-3 domains share one destination: {shared}"
    )
    print(f"{'path':<44} {'µs/recipient (median)':>22}  rounds")
    for name, values in (
        ("cached(domain) + shaper.for_route(route)", cached),
        ("await lookup(domain)", lookup),
        (f"await group(100k) -> {destinations} groups", [g for g, _ in grouped]),
    ):
        rounds_text = " ".join(f"{v * 1e6:.2f}" for v in values)
        print(f"{name:<44} {statistics.median(values) * 1e6:>22.3f}  {rounds_text}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    with DnsServer(zones()) as server:
        asyncio.run(run(server, args.rounds))


if __name__ == "__main__":
    main()
