"""Importing code a user names: ``module:attr`` specs, architecture factories, and which ones the
user vouched for in this process.

The extractor registry (``module:function`` plugins), the importer (``module:factory``
architectures, probe functions) and the population (an imported zoo's factory) all import user code
through :func:`resolve`, so a failure reads the same everywhere: one :class:`PluginError` line.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from training.core.errors import PluginError, UserError

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


def resolve(spec: str, what: str) -> Any:
    """Import ``module:attr`` (``what`` names it in errors)."""
    mod, sep, attr = spec.partition(":")
    if not sep or not mod or not attr:
        raise UserError(f"{what} must be given as module:name, got {spec!r}")
    try:
        obj = importlib.import_module(mod)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except Exception as e:  # noqa: BLE001 - the user's module itself may raise anything while importing
        hint = ""
        if isinstance(e, ModuleNotFoundError) and e.name == mod.split(".")[0]:  # the user's own module, not one it imports
            hint = (f" (the module is looked for in the working directory and on PYTHONPATH: run from the directory of "
                    f"{mod.split('.')[0]}.py, or set PYTHONPATH)")
        raise PluginError(f"{what} '{spec}' cannot be imported: {type(e).__name__}: {e}{hint}") from None
    return obj


def build_template(factory: Callable[[], nn.Module], label: str) -> nn.Module:
    try:
        m = factory()
    except Exception as e:  # noqa: BLE001
        raise PluginError(f"architecture factory '{label}' raised {type(e).__name__}: {e}") from None
    if not isinstance(m, nn.Module):
        raise PluginError(f"architecture factory '{label}' returned {type(m).__name__}, not an nn.Module")
    return m
