"""Importing code a user names as ``module:attr``, with one error line whatever goes wrong.

Task plugins (:mod:`training.tasks`) and, above them, extractor plugins, architecture factories and
probe functions (:mod:`fingerprint.usercode`) all import user code through :func:`resolve`, so a
failure reads the same everywhere: one :class:`~training.core.errors.PluginError` line.
"""

from __future__ import annotations

import importlib
from typing import Any

from training.core.errors import PluginError, UserError


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
