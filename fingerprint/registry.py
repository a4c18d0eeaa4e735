"""The extractor registry: built-in and plugin fingerprints are the same kind of object.

An extractor is a function ``fn(models: ModelBatch, **params) -> Tensor`` (or a class whose
dataclass fields are its parameters and whose ``__call__(models)`` computes the fingerprint),
registered with :func:`extractor`. Parameters and defaults come from the signature, so the cache key
(name, version, resolved parameters, step) is derived, never hand-written. Plugins register the
same way from their own package (entry-point group ``fingerprint.extractors``) or are named on the
command line as ``module:function``. Output validation (shape, NaN/inf) happens once, here, for
built-ins and plugins alike.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import numpy as np
import torch

from training.core.errors import PluginError, UserError, choices

ENTRY_POINT_GROUP = "fingerprint.extractors"
KINDS = ("behavioural", "mechanistic")
OUTPUTS = ("features", "distances")


@dataclass
class ExtractorSpec:
    """A registered extractor: its callable, declared kind/output/version, and parameter defaults."""

    name: str
    fn: Callable[..., Any]
    kind: str = "behavioural"
    output: str = "features"
    version: str = "1"
    supervised: bool = False
    streaming: bool = True  # rows depend only on their own model: safe to compute in chunks of models
    description: str = ""
    source: str = "builtin"
    params: dict[str, Any] = field(default_factory=dict)
    bounds: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # numeric parameter -> (min, max), inclusive; None: open

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "output": self.output, "version": self.version, "supervised": self.supervised,
                "source": self.source, "params": self.params, "bounds": {k: list(b) for k, b in self.bounds.items()},
                "description": self.description}

    def resolve_params(self, overrides: dict[str, Any] | None) -> dict[str, Any]:
        out = dict(self.params)
        for k, v in (overrides or {}).items():
            if k not in self.params:
                raise UserError(f"unknown parameter '{k}' for extractor '{self.name}' (valid: {choices(self.params)})")
            default = self.params[k]
            if isinstance(default, bool) and not isinstance(v, bool):
                raise UserError(f"parameter '{k}' of extractor '{self.name}' must be true/false, got {v!r}")
            if isinstance(default, int) and not isinstance(default, bool) and isinstance(v, float) and v.is_integer():
                v = int(v)
            if isinstance(default, float) and isinstance(v, int) and not isinstance(v, bool):
                v = float(v)
            if isinstance(default, str) and isinstance(v, int) and not isinstance(v, bool):
                v = str(v)  # `layer=1` names submodule "1", parsed as a number
            for kind, ok in ((int, lambda x: isinstance(x, int) and not isinstance(x, bool)),
                             (float, lambda x: isinstance(x, float)), (str, lambda x: isinstance(x, str)),
                             (list, lambda x: isinstance(x, list))):
                if isinstance(default, kind) and not isinstance(default, bool) and not ok(v):
                    want = {int: "an integer", float: "a number", str: "a string", list: "a list, e.g. [1,2]"}[kind]
                    raise UserError(f"parameter '{k}' of extractor '{self.name}' must be {want}, got {v!r}")
            if not _within(v, *self.bounds.get(k, (None, None))):
                raise UserError(f"parameter '{k}' of extractor '{self.name}' must be {bound_text(*self.bounds[k])}, got {v!r}")
            out[k] = v
        return out

    def cache_key(self, params: dict[str, Any], step: int | str) -> str:
        blob = json.dumps({"name": self.name, "version": self.version, "params": params, "step": step},
                          sort_keys=True, default=str)
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in self.name)
        return f"{safe}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"

    def compute(self, models: Any, params: dict[str, Any], labels: Any = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Run and validate: features ``[n, d]`` or distances ``[n, n]`` / ``[n, n_landmarks]``, finite.

        The extractor sees opaque row ids (``m0000``, ...) instead of the zoo's (which encode seeds and
        lineage); a plugin also sees its rows shuffled (by a permutation seeded from a hash of the real
        ids, which it never sees: the zoo's seed-grid order does not reach it, and the same models give
        the same order, so a deterministic plugin stays deterministic), and a copy of the parameters. Rows, and model ids in the returned metadata, are put back in the caller's
        order and ids afterwards. Only supervised extractors receive ``labels`` (one per model, in
        ``models.model_ids`` order). Any failure -- an exception, ``sys.exit``, unreadable output --
        is a :class:`PluginError` naming the extractor.
        """
        real = list(models.model_ids)
        n = len(real)
        plugin = self.source != "builtin"
        order = _hidden_order(real) if plugin else np.arange(n)
        view = _blind(models, order, copy=plugin)
        kw = {"labels": None if labels is None else [labels[i] for i in order]} if self.supervised else {}
        res = self._call(view, params, kw)
        try:
            values, extra = self._validate(res, n)
            values, extra = self._restore(values, extra, order, view.model_ids, real)
        except UserError:
            raise
        except Exception as e:  # noqa: BLE001 - output no check foresaw (a tensor subclass, a device it cannot leave, ...)
            raise PluginError(f"extractor '{self.name}' returned output that cannot be read: {type(e).__name__}{_first_line(e)}") from None
        from training.trainer import finite_models

        finite = finite_models({"values": torch.from_numpy(values)})
        if not bool(finite.all()):
            rows = (~finite).nonzero().flatten().tolist()
            ids = [real[i] for i in rows[:3]]
            raise PluginError(f"extractor '{self.name}' returned NaN/inf for {len(rows)} model(s), e.g. {', '.join(ids)}")
        from training.core.files import json_default

        for what, d in (("metadata", extra), ("parameters", params)):  # both go into the cache file's JSON
            try:
                json.dumps(d, default=json_default)
            except (TypeError, ValueError) as e:
                raise PluginError(f"extractor '{self.name}' has {what} that cannot be stored as JSON ({e})") from None
        return values, extra

    def _call(self, models: Any, params: dict[str, Any], kw: dict[str, Any]) -> Any:
        try:
            if inspect.isclass(self.fn):
                return self.fn(**params)(models, **kw)
            return self.fn(models, **params, **kw)
        except KeyboardInterrupt:  # the user's Ctrl-C stops everything
            raise
        except UserError as e:
            if self.source == "builtin" or f"'{self.name}'" in str(e):
                raise
            raise PluginError(f"extractor '{self.name}': {_first_line(e)[2:]}") from None
        except SystemExit as e:
            raise PluginError(f"extractor '{self.name}' called sys.exit({e.code!r}); an extractor returns its fingerprint "
                              "or raises, it does not end the program") from None
        except BaseException as e:  # noqa: BLE001 - a broken plugin must not take the others down
            raise PluginError(f"extractor '{self.name}' raised {type(e).__name__}{_first_line(e)}") from None

    def _validate(self, res: Any, n: int) -> tuple[np.ndarray, dict[str, Any]]:
        """The returned values as float32 ``[n, d]`` and the metadata, checked (rows still in the
        extractor's order)."""
        extra: dict[str, Any] = {}
        if isinstance(res, tuple) and len(res) == 2 and isinstance(res[1], dict):
            res, extra = res[0], dict(res[1])
        if isinstance(res, np.ndarray):
            if res.dtype.kind == "c":
                raise PluginError(f"extractor '{self.name}' returned complex values ({res.dtype}); a fingerprint is real "
                                  "(return e.g. the absolute values, or real and imaginary parts as columns)")
            if res.dtype.kind not in "biuf":
                raise PluginError(f"extractor '{self.name}' returned a numpy array of dtype {res.dtype}, expected numbers [n_models, d]")
            res = torch.from_numpy(np.ascontiguousarray(res, dtype=np.float32))
        if not isinstance(res, torch.Tensor):
            raise PluginError(f"extractor '{self.name}' returned {type(res).__name__}, expected a tensor [n_models, d]")
        if res.is_complex():
            raise PluginError(f"extractor '{self.name}' returned complex values ({res.dtype}); a fingerprint is real "
                              "(return e.g. the absolute values, or real and imaginary parts as columns)")
        res = res.detach().to("cpu", torch.float32)
        if res.dim() != 2 or res.shape[0] != n:
            raise PluginError(f"extractor '{self.name}' returned shape {list(res.shape)}, expected [n_models={n}, d]")
        if self.output == "distances" and not extra.get("landmarks") and res.shape[1] != n:
            raise PluginError(f"extractor '{self.name}' returned shape {list(res.shape)}, expected distances [{n}, {n}]")
        if res.shape[1] == 0:
            raise PluginError(f"extractor '{self.name}' returned no features (shape {list(res.shape)})")
        _check_extra(self.name, extra)
        if self.output == "distances" and self.source != "builtin":
            _check_distances(self.name, res, extra)
        return res.numpy(), extra

    def _restore(self, values: np.ndarray, extra: dict[str, Any], order: np.ndarray, opaque: list[str],
                 real: list[str]) -> tuple[np.ndarray, dict[str, Any]]:
        """Rows back in the caller's order, and the caller's ids for opaque ones in the metadata."""
        n = len(real)
        if not np.array_equal(order, np.arange(n)):
            out = np.empty_like(values)
            if self.output == "distances" and not extra.get("landmarks"):
                out[np.ix_(order, order)] = values
            else:
                out[order] = values
            values = out
            for k, v in extra.items():  # per-row arrays (e.g. a train mask) follow their rows
                if isinstance(v, np.ndarray) and v.ndim and v.shape[0] == n:
                    back_rows = np.empty_like(v)
                    back_rows[order] = v
                    extra[k] = back_rows
        back = {o: real[i] for o, i in zip(opaque, order)}
        lm = extra.get("landmarks")
        if lm and (not isinstance(lm, (list, tuple)) or not all(isinstance(x, str) and x in back for x in lm)):
            raise PluginError(f"extractor '{self.name}' declared landmarks that are not ids of the models it was given "
                              "(give the models.model_ids of the landmark rows)")
        for k, v in extra.items():
            if isinstance(v, str) and v in back:
                extra[k] = back[v]
            elif isinstance(v, (list, tuple)) and v and all(isinstance(x, str) and x in back for x in v):
                extra[k] = [back[x] for x in v]
        return values, extra


# metadata keys extraction writes itself: an extractor's own metadata may not replace them
RESERVED_META = ("created", "extra", "extractor", "key", "kind", "model_set", "output", "params", "shape", "source",
                 "spec", "step", "supervised", "version")


def _first_line(e: BaseException) -> str:
    """``": <first line of str(e)>"`` (empty when there is none), safe for any exception."""
    try:
        text = str(e).strip()
    except Exception:  # noqa: BLE001 - an exception whose __str__ raises
        text = ""
    return f": {text.splitlines()[0][:300]}" if text else ""


def _blind(models: Any, order: np.ndarray, copy: bool) -> Any:
    """The batch an extractor is handed: rows in ``order``, opaque ids ``m0000``... by position (they
    encode neither seeds nor lineage), and with ``copy`` its own copy of the parameters (a plugin that
    edits them in place must not change what the next extractor sees)."""
    from fingerprint.batch import ModelBatch

    n = len(order)
    width = max(4, len(str(n - 1)))
    idx = torch.as_tensor(order, dtype=torch.long)
    params = {k: (v[idx.to(v.device)] if copy else v) for k, v in models.params.items()}
    return ModelBatch(models.family, params, models.task, [f"m{j:0{width}d}" for j in range(n)],
                      getattr(models, "step", "final"), getattr(models, "device", "cpu"), getattr(models, "chunk", 2048))


def _check_extra(name: str, extra: dict[str, Any]) -> None:
    """Metadata keys become HDF5 names (``extra/<key>``) and JSON keys; arrays are stored as numbers."""
    for k, v in extra.items():
        if not isinstance(k, str) or not k or "/" in k or k in (".", "..") or not k.isprintable():
            raise PluginError(f"extractor '{name}' returned metadata key {k!r}; keys are non-empty printable names without '/'")
        if k in RESERVED_META:
            raise PluginError(f"extractor '{name}' returned metadata key '{k}', which extraction writes itself "
                              f"(reserved: {', '.join(RESERVED_META)})")
        if isinstance(v, np.ndarray) and v.dtype.kind not in "biuf":
            raise PluginError(f"extractor '{name}' returned metadata array '{k}' of dtype {v.dtype}; arrays in metadata hold numbers")


def _check_distances(name: str, d: torch.Tensor, extra: dict[str, Any]) -> None:
    """A plugin's distances ``[n, n]`` (or ``[n, n_landmarks]``, one declared landmark per column)
    are >= 0, and a square one is symmetric with a zero diagonal (up to float round-off)."""
    scale = max(float(d.abs().max()), 1.0)
    if float(d.min()) < -1e-6 * scale:
        raise PluginError(f"extractor '{name}' returned negative distances (min {float(d.min()):.3g})")
    lm = extra.get("landmarks")
    if lm:
        if len(lm) != d.shape[1]:
            raise PluginError(f"extractor '{name}' declared {len(lm)} landmarks for {d.shape[1]} distance columns")
        return
    asym = float((d - d.T).abs().max())
    if asym > 1e-4 * scale:
        raise PluginError(f"extractor '{name}' returned a distance matrix that is not symmetric (max |d - d^T| = {asym:.3g})")
    diag = float(d.diagonal().abs().max())
    if diag > 1e-4 * scale:
        raise PluginError(f"extractor '{name}' returned a distance matrix whose diagonal is not zero (max |d_ii| = {diag:.3g}): "
                          "a model is at distance 0 from itself")


_REGISTRY: dict[str, ExtractorSpec] = {}
_LOADED = {"builtins": False, "entry_points": False}
_BROKEN: dict[str, str] = {}  # entry-point name -> why it failed to import


def _params_of(fn: Callable[..., Any]) -> dict[str, Any]:
    if inspect.isclass(fn):
        if dataclasses.is_dataclass(fn):
            return {f.name: (f.default if f.default is not dataclasses.MISSING else f.default_factory())  # type: ignore[misc]
                    for f in dataclasses.fields(fn) if f.init}
        sig = inspect.signature(fn.__init__)
        params = list(sig.parameters.values())[1:]
    else:
        params = list(inspect.signature(fn).parameters.values())[1:]  # first is the ModelBatch
    out = {}
    for p in params:
        if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL) or p.name == "labels":  # labels are data, not a parameter
            continue
        if p.default is inspect.Parameter.empty:
            raise PluginError(f"extractor {getattr(fn, '__name__', fn)!r}: parameter '{p.name}' needs a default")
        out[p.name] = p.default
    return out


def _within(v: Any, lo: Any, hi: Any) -> bool:
    return (lo is None or v >= lo) and (hi is None or v <= hi)


def bound_text(lo: Any, hi: Any) -> str:
    """``>= 1``, ``<= 8`` or ``in [0, 1]``: a declared parameter range, for messages and listings."""
    if hi is None:
        return f">= {lo}"
    return f"<= {hi}" if lo is None else f"in [{lo}, {hi}]"


def extractor(name: str, kind: str = "behavioural", output: str = "features", version: str = "1",
              supervised: bool = False, streaming: bool | None = None, description: str | None = None,
              bounds: dict[str, tuple[Any, Any]] | None = None):
    """Decorator: register ``fn(models, **params)`` (or a class) as the extractor ``name``.

    ``bounds`` declares the valid range of numeric parameters, ``{name: (min, max)}`` (inclusive;
    ``None`` for an open end): a value outside it is refused with a one-line error naming the range,
    instead of being silently clamped by the extractor.

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
        spec = ExtractorSpec(
            name=name, fn=fn, kind=kind, output=output, version=str(version), supervised=supervised,
            streaming=(output == "features" and not supervised) if streaming is None else streaming,
            description=(description or (inspect.getdoc(fn) or "").split("\n")[0]),
            source="builtin" if mod.startswith("fingerprint.extractors") else f"plugin ({mod})",
            params=_params_of(fn), bounds=dict(bounds or {}),
        )
        for k, (lo, hi) in spec.bounds.items():
            default = spec.params.get(k)
            if k not in spec.params or isinstance(default, bool) or not isinstance(default, (int, float)):
                raise PluginError(f"extractor '{name}' declares bounds for '{k}', which is not one of its numeric "
                                  f"parameters (valid: {choices([p for p, d in spec.params.items() if isinstance(d, (int, float)) and not isinstance(d, bool)])})")
            if not _within(default, lo, hi):
                raise PluginError(f"extractor '{name}': the default {k}={default!r} is outside its bounds ({bound_text(lo, hi)})")
        if spec.source != "builtin":
            _load_builtins()
            taken = _REGISTRY.get(name)
            if taken is not None and taken.source == "builtin":
                raise PluginError(f"extractor plugin {mod}:{getattr(fn, '__name__', name)} wants the name '{name}', which "
                                  "is a built-in extractor's: choose another name")
        _REGISTRY[name] = spec
        fn.__extractor_spec__ = spec  # type: ignore[attr-defined]
        return fn

    return wrap


def _load_builtins() -> None:
    if not _LOADED["builtins"]:
        _LOADED["builtins"] = True
        importlib.import_module("fingerprint.extractors")


def _load_entry_points() -> list[str]:
    """Import installed plugins; returns one-line problems instead of failing the whole registry."""
    problems = []
    if _LOADED["entry_points"]:
        return problems
    _LOADED["entry_points"] = True
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
        except Exception as e:  # noqa: BLE001
            problems.append(f"extractor plugin '{ep.name}' ({ep.value}) failed to import: {type(e).__name__}: {e}")
            _BROKEN[ep.name] = problems[-1]  # asking for it by name then says why it is missing
            continue
        spec = getattr(obj, "__extractor_spec__", None)
        if spec is None and callable(obj):
            extractor(ep.name)(obj)
            _REGISTRY[ep.name].source = f"plugin ({ep.value})"
    return problems


def reset_plugins() -> None:
    """Forget loaded entry points (tests install plugins at run time)."""
    _LOADED["entry_points"] = False
    _BROKEN.clear()


def list_extractors() -> dict[str, ExtractorSpec]:
    _load_builtins()
    _load_entry_points()
    return dict(sorted(_REGISTRY.items()))


def load_plugin(spec: str) -> ExtractorSpec:
    """``module:function`` named on the command line."""
    from fingerprint.importer import resolve

    obj = resolve(spec, "extractor plugin")
    found = getattr(obj, "__extractor_spec__", None)
    if found is not None:
        return found
    if not callable(obj):
        raise PluginError(f"extractor plugin '{spec}' is not callable")
    extractor(spec)(obj)
    _REGISTRY[spec].source = f"plugin ({spec})"
    return _REGISTRY[spec]


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
    raise UserError(f"unknown extractor '{name}' (valid: {choices(specs)})")


def parse_spec(text: str) -> tuple[str, dict[str, Any]]:
    """``NAME[:key=value,...]`` -> (name, params). Values parse as JSON where they can (numbers, bools, lists)."""
    name, params = text, {}
    if ":" in text:
        head, _, rest = text.partition(":")
        if "=" in rest.split(",")[0]:
            name = head
            for item in _split_top(rest):
                if "=" not in item:
                    raise UserError(f"bad extractor spec '{text}': expected key=value, got '{item}'")
                k, _, v = item.partition("=")
                params[k.strip()] = _parse_value(v.strip())
        elif "=" in rest:  # module:function:key=value
            mod_fn, _, kv = text.rpartition(":")
            name = mod_fn
            return (name, parse_spec(f"x:{kv}")[1])
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


def _hidden_order(ids: list[str]) -> np.ndarray:
    """A permutation of ``len(ids)`` rows seeded from a hash of the ids themselves (see ``compute``)."""
    seed = int.from_bytes(hashlib.sha256("\n".join(ids).encode()).digest()[:8], "little")
    return np.random.default_rng(seed).permutation(len(ids))
