"""Importing code a user names: ``module:attr`` specs, architecture factories, and which ones the
user vouched for in this process.

The extractor registry (``module:function`` plugins), the importer (``module:factory``
architectures, probe functions) and the population (an imported zoo's factory) all import user code
through :func:`resolve` (:mod:`training.core.imports`, which task plugins use too), so a failure
reads the same everywhere: one :class:`PluginError` line.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from training.core.errors import PluginError
from training.core.imports import resolve

# ``module:factory`` specs the user named in this process (import, from_modules, --arch): an imported
# zoo naming one of them runs the user's own code, so reading it needs no --trust-code
TRUSTED_FACTORIES: set[str] = set()


def factory_dir(spec: str) -> str | None:
    """The directory that makes ``module`` of ``module:attr`` importable (where the import found it),
    recorded so that the zoo's architecture can be rebuilt from another working directory."""
    mod = spec.partition(":")[0]
    file = getattr(sys.modules.get(mod), "__file__", None)
    if not file:
        return None
    root = Path(file).resolve().parent
    for _ in range(mod.count(".") + (Path(file).name == "__init__.py")):
        root = root.parent
    return str(root)


def resolve_factory(spec: str, directory: str | None) -> Any:
    """:func:`resolve` for a zoo's architecture factory, retrying with the directory it was imported
    from on ``sys.path``."""
    try:
        return resolve(spec, "architecture factory")
    except PluginError:
        if not directory or directory in sys.path or not Path(directory).is_dir():
            raise
        sys.path.append(directory)
        return resolve(spec, "architecture factory")


def build_template(factory: Callable[[], nn.Module], label: str) -> nn.Module:
    try:
        m = factory()
    except Exception as e:  # noqa: BLE001
        raise PluginError(f"architecture factory '{label}' raised {type(e).__name__}: {e}") from None
    if not isinstance(m, nn.Module):
        raise PluginError(f"architecture factory '{label}' returned {type(m).__name__}, not an nn.Module")
    return m
