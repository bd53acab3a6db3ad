"""Shared pytest set-up: real-peer fixtures, hypothesis profiles, and every async test run
under both event loops fastsmtp supports (plain asyncio and uvloop)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping

import hypothesis
import pytest
import uvloop

from tests.peers.fixtures import *  # noqa: F403  (real Postfix, smtp-sink, aiosmtpd, TLS)

hypothesis.settings.register_profile("ci", max_examples=100, deadline=None)
hypothesis.settings.register_profile("dev", max_examples=30, deadline=None)
hypothesis.settings.register_profile("slow", max_examples=5000, deadline=None)
hypothesis.settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Parametrize each async test over asyncio and uvloop (FASTSMTP_LOOPS=asyncio|uvloop
    narrows it)."""
    factories: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
        "asyncio": asyncio.new_event_loop,
        "uvloop": uvloop.new_event_loop,
    }
    only = os.environ.get("FASTSMTP_LOOPS")
    if only:
        factories = {k: v for k, v in factories.items() if k in only.split(",")}
    return factories
