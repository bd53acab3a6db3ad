"""A FaultServer in a process of its own that notes when each MAIL command arrives.

Run by ``TimedServer`` (below) as ``python -m tests.timed_server``: it prints its port,
serves until its stdin closes, then prints the arrival times (``time.monotonic()``, the
system-wide monotonic clock, so the test process can compare them). A process of its own
keeps the engine under test from delaying, and so bunching, the timestamps.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

from tests.faultserver import FaultServer


async def serve() -> None:
    server = FaultServer(chunking=False)
    arrivals: list[float] = []
    original = server._reply

    async def reply(writer: asyncio.StreamWriter, line: str) -> None:
        if line.startswith("250 2.1.0"):  # the reply to MAIL
            arrivals.append(time.monotonic())
        await original(writer, line)

    server._reply = reply  # type: ignore[method-assign]
    await server.start()
    print(server.port, flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # until the test closes stdin
    await server.stop()
    print(json.dumps(arrivals), flush=True)


class TimedServer:
    """``with TimedServer() as server:`` ... ``server.port``; afterwards ``server.arrivals``."""

    def __init__(self) -> None:
        self.port = 0
        self.arrivals: list[float] = []
        self._proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> TimedServer:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "tests.timed_server"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._proc.stdout is not None
        self.port = int(self._proc.stdout.readline())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._proc is not None
        out, _ = self._proc.communicate(timeout=30)  # closes its stdin: the server stops
        self.arrivals = json.loads(out.strip().splitlines()[-1])


if __name__ == "__main__":
    asyncio.run(serve())
