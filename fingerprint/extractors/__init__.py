"""Built-in extractors. Importing this package registers them through ``fingerprint.registry.extractor``,
the decorator plugins use; pyproject.toml declares the same functions as entry points of the group
``fingerprint.extractors``, the way a plugin package does (a test keeps the two in step)."""

from fingerprint.extractors import (  # noqa: F401
    anomaly,
    attribution,
    behavioural,
    causal,
    geometry,
    language,
    mechanistic,
    similarity,
)
