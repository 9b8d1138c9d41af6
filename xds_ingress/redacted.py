"""Bytes that never print: private keys carry this type from parsing to the Envoy layer."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Redacted:
    """Secret bytes (a private key): repr and str say [redacted]."""

    value: bytes = field(repr=False)

    def __repr__(self) -> str:
        return "Redacted('[redacted]')"

    def __str__(self) -> str:
        return "[redacted]"
