"""The shape of one baseline section: its entries' identity fields and field order. A leaf module, so that each
protocol's baseline part can declare its section without importing the baseline file model."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SectionSpec:
    """One section of the file: its entries' identity fields (in order) and field order when written."""

    name: str
    key: tuple[str, ...]
    order: tuple[str, ...]  # fields after the identity, status and note
    count_field: str  # how much traffic the entry was learned from
    protocol: str | None = None  # None for the generic sections (assets, talkers)
