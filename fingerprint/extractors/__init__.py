"""Built-in extractors. Importing this package registers them (see ``fingerprint.registry``)."""

from fingerprint.extractors import behavioural, causal, mechanistic  # noqa: F401
