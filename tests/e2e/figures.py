"""Figures the end-to-end suite measures (toolchain, preview/up/destroy times, objects), printed at the end."""

from __future__ import annotations

FIGURES: list[str] = []


def figure(name: str, value: str) -> None:
    """Record a figure; it is also printed at once for a run with `-s`."""
    line = f"[e2e figure] {name}: {value}"
    FIGURES.append(line)
    print(line, flush=True)
