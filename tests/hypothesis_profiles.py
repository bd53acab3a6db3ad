"""Hypothesis profiles for the property tests: "ci" (the default: 100 examples), "dev"
(30, quick local runs) and "slow" (5000, on demand), chosen by ``HYPOTHESIS_PROFILE``.

``tests/conftest.py`` registers the same names; test modules call :func:`load` so they get
the profile also when run on their own (``--noconftest``)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_COMMON = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}

settings.register_profile("ci", max_examples=100, **_COMMON)  # type: ignore[arg-type]
settings.register_profile("dev", max_examples=30, **_COMMON)  # type: ignore[arg-type]
settings.register_profile("slow", max_examples=5000, **_COMMON)  # type: ignore[arg-type]


def load() -> None:
    """Load the profile named by ``HYPOTHESIS_PROFILE`` (default "ci")."""
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
