"""Model-column values that name nothing (a model the metadata CSV had no row for), shared by the
label-free tests and the readings of a whole result, without importing either (start-up time)."""

from __future__ import annotations

from typing import Any

__all__ = ["missing"]


def missing(v: Any) -> bool:
    """A model-column value that names nothing: ``None``, NaN, an empty or blank string (a model the
    metadata CSV had no row for)."""
    return v is None or (isinstance(v, float) and v != v) or str(v).strip() in ("", "nan", "None")
