"""Analysis: clustering fingerprints into basins, the deep-vs-noise scorecard, and reports.

Pure functions on arrays (no file I/O, no imports of training/ or the extractors); the pipeline in
``fingerprint.cli.analyze`` glues them to zoos.
"""
