"""Deprecated name: the Ray executor lives in :mod:`training.executors` with the local and process ones.

Kept only while ``fingerprint/parallel.py`` (and ``scripts/bench_ray.py``) import from here.
"""

from training.executors import (
    RayExecutor,
    check_reachable,
    failure_reason,
    resolve_address,
)

__all__ = ["RayExecutor", "check_reachable", "failure_reason", "resolve_address"]
