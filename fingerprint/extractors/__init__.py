"""Built-in extractors. Importing this package registers them (see ``fingerprint.registry``)."""

from fingerprint.extractors import behavioural, mechanistic  # noqa: F401
