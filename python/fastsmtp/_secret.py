"""``Secret``: a credential that never shows itself.

A password or OAuth2 token is held in a ``Secret`` from the moment the engine gets it, so
no repr, str, log line, exception message or traceback with locals can carry it: they all
show ``Secret('********')``. Only ``reveal()`` gives the value, at the one place it is
handed to the protocol core.
"""

from __future__ import annotations

from typing import Any


class Secret:
    """A credential; see the module docstring."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"a credential must be a str, not {type(value).__name__}")
        self._value = value

    @classmethod
    def wrap(cls, value: str | Secret | None) -> Secret | None:
        """``value`` as a Secret (None stays None)."""
        if value is None or isinstance(value, Secret):
            return value
        return cls(value)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __reduce__(self) -> Any:
        raise TypeError("a Secret is not pickled (credentials stay in the process)")
