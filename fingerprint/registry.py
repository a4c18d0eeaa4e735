"""The extractor registry: built-in and plugin fingerprints are the same kind of object.

An extractor is a function ``fn(models: ModelBatch, **params) -> Tensor`` (or a class whose
dataclass fields are its parameters and whose ``__call__(models)`` computes the fingerprint),
registered with :func:`extractor`. Parameters and defaults come from the signature, so the cache key
(name, version, resolved parameters, step) is derived, never hand-written (:mod:`fingerprint.extractor_spec`).

One path registers every extractor. :func:`extractor` builds an :class:`ExtractorSpec` and hands it
to :func:`register`, which checks it (kind, output, bounds against the defaults, a plugin taking a
built-in's name). One loader, :func:`list_extractors`, fills the registry: it imports the package
``fingerprint.extractors`` (whose modules register the built-ins through that decorator, so they are
found from a source tree as well as from an install) and then every entry point of the group
``fingerprint.extractors`` -- the built-ins are declared there too, in pyproject.toml, exactly as a
plugin package declares its own; an entry point whose object is already registered is not registered
again, and one that is a plain callable is registered under the entry point's name. A plugin may
also be named on the command line as ``module:function`` (:func:`load_plugin`). Output validation
(shape, NaN/inf) happens once, in :meth:`ExtractorSpec.compute`, for built-ins and plugins alike.
"""

from __future__ import annotations

import importlib
import inspect
import json
import sys
from collections.abc import Callable
from importlib import metadata
from typing import Any

from fingerprint.extractor_spec import (
    RESERVED_META,
    ExtractorSpec,
    bound_text,
    check_param,
    params_of,
    source_digest,
)
from fingerprint.usercode import resolve
from training.core.errors import PluginError, UserError, choices

__all__ = ["ENTRY_POINT_GROUP", "KINDS", "OUTPUTS", "READS", "SCALES", "RESERVED_META", "ExtractorSpec", "bound_text", "builtin_spec",
           "extractor", "get_extractor", "list_extractors", "load_plugin", "parse_spec", "register", "reset_plugins"]

ENTRY_POINT_GROUP = "fingerprint.extractors"
BUILTIN_PACKAGE = "fingerprint.extractors"  # importing it registers the built-ins
KINDS = ("behavioural", "mechanistic")
OUTPUTS = ("features", "distances")
SCALES = ("columns", "common")  # ExtractorSpec.scale: standardise each column, or only centre (one unit)
# ExtractorSpec.reads: "" its own source; "occlusions": outputs on its probe set with tokens replaced (token-occlusion)
READS = ("", "outputs", "activations", "gradients", "occlusions", "weights")

_REGISTRY: dict[str, ExtractorSpec] = {}
_LOADED = {"builtins": False, "entry_points": False}
_BROKEN: dict[str, str] = {}  # entry-point name -> why it failed to import


def register(spec: ExtractorSpec) -> ExtractorSpec:
    """Check ``spec`` and add it to the registry: the one way in, for built-ins and plugins alike.

    Refused (:class:`PluginError`): bounds that name no numeric parameter or exclude their own
    default, and a plugin taking a built-in's name. Returns the registered spec.
    """
    if spec.kind not in KINDS:
        raise UserError(f"extractor '{spec.name}': unknown kind '{spec.kind}' (valid: {', '.join(KINDS)})")
    if spec.output not in OUTPUTS:
        raise UserError(f"extractor '{spec.name}': unknown output '{spec.output}' (valid: {', '.join(OUTPUTS)})")
    if spec.scale not in SCALES:
        raise UserError(f"extractor '{spec.name}': unknown scale '{spec.scale}' (valid: {', '.join(SCALES)})")
    if spec.reads not in READS:
        raise UserError(f"extractor '{spec.name}': unknown reads '{spec.reads}' (valid: {choices(r for r in READS if r)}, "
                        "or leave it out)")
    numeric = [p for p, d in spec.params.items() if isinstance(d, (int, float)) and not isinstance(d, bool)]
    for k, bounds in spec.bounds.items():
        if k not in numeric:
            raise PluginError(f"extractor '{spec.name}' declares bounds for '{k}', which is not one of its numeric "
                              f"parameters (valid: {choices(numeric)})")
        try:
            check_param(spec.name, k, spec.params[k], spec.params[k], bounds)
        except UserError:
            raise PluginError(f"extractor '{spec.name}': the default {k}={spec.params[k]!r} is outside its bounds "
                              f"({bound_text(*bounds)})") from None
    bad = [k for k in spec.files if not isinstance(spec.params.get(k), str)]
    if bad:
        raise PluginError(f"extractor '{spec.name}' declares '{bad[0]}' a file parameter, which is not one of its string "
                          f"parameters (valid: {choices(p for p, d in spec.params.items() if isinstance(d, str))})")
    if spec.source != "builtin":
        _load_builtins()
        taken = _REGISTRY.get(spec.name)
        where = lambda s: f"{getattr(s.fn, '__module__', '')}:{getattr(s.fn, '__qualname__', s.name)}"  # noqa: E731
        if taken is not None and taken.source == "builtin":
            raise PluginError(f"extractor plugin {where(spec)} wants the name '{spec.name}', which is a built-in "
                              "extractor's: choose another name")
        if taken is not None and where(taken) != where(spec):  # the same function again (a reload) replaces itself
            raise PluginError(f"extractor plugins {where(taken)} and {where(spec)} both want the name '{spec.name}': "
                              "rename one (an outside audit: the last one won silently, and the first one's cached "
                              "fingerprints were replaced as if its source had changed)")
    _REGISTRY[spec.name] = spec
    spec.fn.__extractor_spec__ = spec  # type: ignore[attr-defined]
    return spec


def extractor(name: str, kind: str = "behavioural", output: str = "features", version: str = "1",
              supervised: bool = False, streaming: bool | None = None, description: str | None = None,
              bounds: dict[str, tuple[Any, Any]] | None = None, source: str | None = None,
              files: tuple[str, ...] = (), scale: str = "columns", reads: str = ""):
    """Decorator: register ``fn(models, **params)`` (or a class) as the extractor ``name``.

    ``bounds`` declares the valid range of numeric parameters, ``{name: (min, max)}`` (inclusive;
    ``None`` for an open end): a value outside it is refused with a one-line error naming the range,
    instead of being silently clamped by the extractor. ``files`` names string parameters that may
    name a file the extractor reads: the file's content is part of the cache key (an edited file is
    recomputed, not served from the cache). ``scale`` says how the analysis puts a feature
    fingerprint's columns on one footing before its PCA: ``"columns"`` (default) standardises each
    (columns in different units: norms, counts, statistics), ``"common"`` only centres them (columns
    in one unit, such as a model's log-probabilities on probe inputs, where standardising would give
    a column every model agrees on as much weight as the one that tells them apart). ``reads`` says
    what it summarises: ``"outputs"``, ``"activations"`` or ``"gradients"`` (on its ``probe_set``
    parameter's inputs), ``"weights"``, or ``""`` (default: its own source, except that a behavioural
    extractor with a ``probe_set`` parameter reads the outputs on it); in the population's
    answer, fingerprints of one source count as one voter (two summaries of the same outputs agree
    without being two pieces of evidence). ``source`` (default: ``builtin`` for the
    modules of ``fingerprint.extractors``, ``plugin (<module>)`` otherwise) is how listings name
    where it came from.

    Examples
    --------
    >>> import fingerprint
    >>> @fingerprint.extractor("mean-logit", kind="behavioural")
    ... def mean_logit(models, probe_set: str = "ood"):
    ...     return models.forward(models.task.probes(probe_set)).mean(1)   # [n_models, n_out]
    """
    if kind not in KINDS:
        raise UserError(f"extractor '{name}': unknown kind '{kind}' (valid: {', '.join(KINDS)})")
    if output not in OUTPUTS:
        raise UserError(f"extractor '{name}': unknown output '{output}' (valid: {', '.join(OUTPUTS)})")

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        mod = getattr(fn, "__module__", "") or ""
        where = source or ("builtin" if mod.startswith(BUILTIN_PACKAGE) else f"plugin ({mod})")
        register(ExtractorSpec(
            name=name, fn=fn, kind=kind, output=output, version=str(version), supervised=supervised,
            streaming=(output == "features" and not supervised) if streaming is None else streaming,
            description=(description or (inspect.getdoc(fn) or "").split("\n")[0]),
            source=where, params=params_of(fn, name), bounds=dict(bounds or {}), files=tuple(files),
            code=None if where == "builtin" else source_digest(fn), scale=scale, reads=reads,
        ))
        return fn

    return wrap


def _adopt(name: str, obj: Any, source: str) -> ExtractorSpec:
    """The spec of ``obj`` found at an entry point or a ``module:function`` name: the one its
    decorator registered, or (a plain callable) registered now under ``name``."""
    found = getattr(obj, "__extractor_spec__", None)
    if found is not None:
        return found
    if not callable(obj):
        raise PluginError(f"extractor plugin '{source}' is not callable")
    extractor(name, source=f"plugin ({source})")(obj)
    return _REGISTRY[name]


def _load_builtins() -> None:
    if not _LOADED["builtins"]:
        _LOADED["builtins"] = True
        importlib.import_module(BUILTIN_PACKAGE)


def _load_entry_points() -> list[str]:
    """Import every entry point of the group (the built-ins' own, and installed plugins'); returns
    one-line problems instead of failing the whole registry."""
    problems: list[str] = []
    if _LOADED["entry_points"]:
        return problems
    _LOADED["entry_points"] = True
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            _adopt(ep.name, ep.load(), ep.value)
        except Exception as e:  # noqa: BLE001 - a broken plugin must not take the registry down
            problems.append(f"extractor plugin '{ep.name}' ({ep.value}) failed to import: {type(e).__name__}: {e}")
            _BROKEN[ep.name] = problems[-1]  # asking for it by name then says why it is missing
    return problems


def reset_plugins() -> None:
    """Forget loaded entry points (tests install plugins at run time)."""
    _LOADED["entry_points"] = False
    _BROKEN.clear()


def list_extractors() -> dict[str, ExtractorSpec]:
    """Every extractor, by name: the built-ins, then entry points (see the module docstring)."""
    _load_builtins()
    _load_entry_points()
    return dict(sorted(_REGISTRY.items()))


def load_plugin(spec: str) -> ExtractorSpec:
    """``module:function`` named on the command line."""
    return _adopt(spec, resolve(spec, "extractor plugin"), spec)


def load_plugins(spec: str) -> list[ExtractorSpec]:
    """``--plugin``: ``module:function`` (that one), or a bare ``module``: import it and return the
    extractors its ``@extractor`` decorators registered."""
    if ":" in spec:
        return [load_plugin(spec)]
    before = set(list_extractors())
    try:
        importlib.import_module(spec)
    except Exception as e:  # noqa: BLE001 - the user's module itself may raise anything while importing
        raise PluginError(f"extractor plugin module '{spec}' cannot be imported: {type(e).__name__}: {e}") from None
    specs = list_extractors()
    found = [s for n, s in specs.items() if n not in before or getattr(s.fn, "__module__", None) == spec]
    if not found:
        raise UserError(f"plugin module '{spec}' registers no extractor: decorate functions with "
                        "@fingerprint.extractor(...), or name one as module:function")
    return found


def builtin_spec(name: str) -> ExtractorSpec | None:
    """The spec of the built-in extractor ``name``, ``None`` for any other (nothing is imported but
    the built-ins: a cached fingerprint's plugin is never loaded to read what it declared); for a
    cache entry written before extraction stored the declarations (``scale``, ``reads``)."""
    _load_builtins()
    spec = _REGISTRY.get(str(name))
    return spec if spec is not None and spec.source == "builtin" else None


def unloaded(name: str) -> bool:
    """Whether ``name`` is a ``module:function`` that no extractor is registered under and whose module is not
    imported: reading its cached fingerprints must not import it (outside audit 121: ``cluster --fp sidefp:plain``
    imported a module of the working directory on a zoo not trusted, though the cache needed no code)."""
    return ":" in name and name not in list_extractors() and name.partition(":")[0] not in sys.modules


def get_extractor(name: str) -> ExtractorSpec:
    specs = list_extractors()
    if name in specs:
        return specs[name]
    if name in _BROKEN:
        raise PluginError(_BROKEN[name])
    if ":" in name:
        head, _, rest = name.partition(":")
        if head in specs:  # a built-in with a parameter that lacks '='
            raise UserError(f"parameters of extractor '{head}' are key=value pairs, got '{rest}' "
                            f"(its parameters: {choices(specs[head].params) or 'none'})")
        return load_plugin(name)
    raise UserError(f"unknown extractor '{name}' (valid: {choices(specs)}; a plugin: --plugin MODULE first, or name it "
                    "module:function)")


def parse_spec(text: str) -> tuple[str, dict[str, Any]]:
    """``NAME[:key=value,...]`` or ``module:function[:key=value,...]`` -> (name, params). The name
    ends at the last ``:`` before the first ``=``. Values parse as JSON where they can (numbers,
    bools, lists)."""
    name, params = text, {}
    eq = text.find("=")
    if eq >= 0 and ":" in text[:eq]:
        name = text[:eq].rpartition(":")[0]
        for item in _split_top(text[len(name) + 1:]):
            if "=" not in item:
                raise UserError(f"bad extractor spec '{text}': expected key=value, got '{item}'")
            k, _, v = item.partition("=")
            if k.strip() in params:  # the last one would win silently (an outside audit, 71)
                raise UserError(f"bad extractor spec '{text}': key '{k.strip()}' is given twice")
            params[k.strip()] = _parse_value(v.strip())
    return name.strip(), params


def _split_top(s: str) -> list[str]:
    out, depth, cur = [], 0, ""
    for ch in s:
        if ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    if cur:
        out.append(cur)
    return out


def _parse_value(v: str) -> Any:
    low = v.lower()
    if low in ("true", "false"):
        return low == "true"
    try:
        return json.loads(v)
    except json.JSONDecodeError:
        return v
