"""What a registered extractor is: :class:`ExtractorSpec`, its parameters and the checks on its output.

A spec holds the callable, its declared kind/output/version, its parameters (from the signature or
dataclass fields: :func:`params_of`) and their bounds. ``resolve_params`` checks a user's values
through the one validator (:mod:`training.core.validate`); ``compute`` runs the extractor on an
opaque view of the batch and checks what comes back (shape, finiteness, metadata), for built-ins
and plugins alike. Registration and lookup live in :mod:`fingerprint.registry`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fingerprint.batch import ModelBatch
from training.core.errors import PluginError, UserError, choices
from training.core.files import json_default
from training.core.validate import check, within
from training.trainer import finite_models

# a parameter's type is the type of its default; these are how a wrong one is named to people
_TYPES: tuple[tuple[type, Any, str], ...] = ((bool, bool, "true/false"), (int, int, "an integer"), (float, float, "a number"),
                                             (str, str, "a string"), (list, list[Any], "a list, e.g. [1,2], or [\"blocks.0\",\"ln_f\"] for names (quoted)"))


def bound_text(lo: Any, hi: Any) -> str:
    """``>= 1``, ``<= 8`` or ``in [0, 1]``: a declared parameter range, for messages and listings."""
    if hi is None:
        return f">= {lo}"
    return f"<= {hi}" if lo is None else f"in [{lo}, {hi}]"


def check_param(extractor: str, key: str, value: Any, default: Any, bounds: tuple[Any, Any] | None = None) -> Any:
    """``value`` for parameter ``key`` (whose default is ``default``) of ``extractor``, checked by
    :func:`training.core.validate.check` (type) and :func:`~training.core.validate.within` (declared
    ``(min, max)`` bounds, inclusive, ``None`` an open end); a one-line :class:`UserError` naming the
    parameter and the extractor otherwise. Values parsed from ``key=value`` text are first read the
    way the default is written: ``2.0`` for an int is ``2``, ``layer=1`` for a str is ``"1"``."""
    where = f"parameter '{key}' of extractor '{extractor}'"
    kind = next(((tp, ann, want) for tp, ann, want in _TYPES if isinstance(default, tp)), None)
    if kind is not None:
        tp, ann, want = kind
        if tp is int and isinstance(value, float) and value.is_integer():
            value = int(value)
        if tp is str and isinstance(value, int) and not isinstance(value, bool):
            value = str(value)  # `layer=1` names submodule "1", parsed as a number
        try:
            value = check(value, ann, where)
        except UserError:
            why = "a finite number" if tp is float and isinstance(value, float) else want  # nan / inf
            raise UserError(f"{where} must be {why}, got {value!r}") from None
    if bounds is not None:
        lo, hi = bounds
        try:
            within("", where, value, -math.inf if lo is None else lo, math.inf if hi is None else hi)
        except UserError:
            raise UserError(f"{where} must be {bound_text(lo, hi)}, got {value!r}") from None
    return value


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
    files: tuple[str, ...] = ()  # string parameters naming a file read by the extractor: its content is keyed too
    code: str | None = None  # a plugin's source digest (source_digest), keyed: an edited body is recomputed
    # how the analysis scales a feature fingerprint's columns before its PCA: "columns", each standardised
    # (columns in different units); "common", only centred (columns in one unit: a model's outputs)
    scale: str = "columns"
    # what it summarises, for the population's answer: "outputs", "activations" or "gradients" (on its
    # probe_set), "weights", or "" (its own): the fingerprints of one source are one voter in the consensus
    reads: str = ""

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "output": self.output, "version": self.version, "supervised": self.supervised,
                "source": self.source, "params": self.params, "bounds": {k: list(b) for k, b in self.bounds.items()},
                "files": list(self.files), "scale": self.scale, "reads": self.reads,
                "description": self.description}

    def resolve_params(self, overrides: dict[str, Any] | None) -> dict[str, Any]:
        """The declared defaults with ``overrides`` applied, each checked by the one validator
        (:mod:`training.core.validate`) against the type of its default and its declared bounds."""
        out = dict(self.params)
        for k, v in (overrides or {}).items():
            if k not in self.params:
                raise UserError(f"unknown parameter '{k}' for extractor '{self.name}' (valid: {choices(self.params)})")
            out[k] = check_param(self.name, k, v, self.params[k], self.bounds.get(k))
        for k in self.files:
            if out.get(k):
                out[k] = file_with_digest(self.name, k, out[k])
        return out

    @property
    def takes_groups(self) -> bool:
        """A supervised extractor that holds out whole init families: its function takes ``groups``."""
        fn = self.fn.__call__ if inspect.isclass(self.fn) else self.fn
        return "groups" in inspect.signature(fn).parameters

    def cache_key(self, params: dict[str, Any], step: int | str) -> str:
        """``<name>-<12 hex of sha256(name, version, params, step)>``; a plugin's key also covers its
        source (``code``), so editing its body without bumping ``version`` is not served stale values.
        Built-ins have no ``code``: their keys are what they always were."""
        what = {"name": self.name, "version": self.version, "params": params, "step": step}
        if self.code is not None and self.source != "builtin":
            what["code"] = self.code
        blob = json.dumps(what, sort_keys=True, default=str)
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in self.name)
        return f"{safe}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"

    def compute(self, models: Any, params: dict[str, Any], labels: Any = None, groups: Any = None
                ) -> tuple[np.ndarray, dict[str, Any]]:
        """Run and validate: features ``[n, d]`` or distances ``[n, n]`` / ``[n, n_landmarks]``, finite.

        The extractor sees opaque row ids (``m0000``, ...) instead of the zoo's (which encode seeds and
        lineage); a plugin also sees its rows shuffled (by a permutation seeded from a hash of the real
        ids, which it never sees: the zoo's seed-grid order does not reach it, and the same models give
        the same order, so a deterministic plugin stays deterministic), and a copy of the parameters. Rows, and model ids in the returned metadata, are put back in the caller's
        order and ids afterwards. Only supervised extractors receive ``labels`` (one per model, in
        ``models.model_ids`` order), and those with a ``groups`` argument also ``groups``: each
        model's init family as an opaque integer (relatives share one), to hold out whole families. Any failure -- an exception, ``sys.exit``, unreadable output --
        is a :class:`PluginError` naming the extractor.
        """
        real = list(models.model_ids)
        n = len(real)
        plugin = self.source != "builtin"
        order = hidden_order(real) if plugin else np.arange(n)
        view = _blind(models, order, copy=plugin)
        kw = {"labels": None if labels is None else [labels[i] for i in order]} if self.supervised else {}
        if self.supervised and self.takes_groups:
            kw["groups"] = None if groups is None else [groups[i] for i in order]
        res = self._call(view, params, kw)
        try:
            values, extra = self._validate(res, n)
            values, extra = self._restore(values, extra, order, view.model_ids, real)
        except UserError:
            raise
        except Exception as e:  # noqa: BLE001 - output no check foresaw (a tensor subclass, a device it cannot leave, ...)
            raise PluginError(f"extractor '{self.name}' returned output that cannot be read: {type(e).__name__}{_first_line(e)}") from None
        finite = finite_models({"values": torch.from_numpy(values)})
        if not bool(finite.all()):
            rows = (~finite).nonzero().flatten().tolist()
            ids = [real[i] for i in rows[:3]]
            if plugin and len(rows) == n:  # every model: the plugin's own arithmetic, not the models (audit 7B)
                raise PluginError(f"extractor '{self.name}' returned NaN/inf for every model ({n}): its own arithmetic is "
                                  "the likely culprit (a division by zero, a log of 0, an overflow?); call it on one model "
                                  "and look at where the NaN appears")
            weights = getattr(view, "params", None)
            if plugin and isinstance(weights, dict) and bool(finite_models(weights).all()):
                # every model's weights are finite: the plugin's own arithmetic first (an outside audit, 71: a plugin's
                # own NaN was blamed on healthy models, with advice to leave them out)
                raise PluginError(f"extractor '{self.name}' returned NaN/inf for {len(rows)} model(s), e.g. {', '.join(ids)}, "
                                  "whose weights are all finite: its own arithmetic is the likely culprit (a division by "
                                  "zero, a log of 0, an overflow?), unless those models' outputs overflow (weights far "
                                  "larger than the others'); call it on those models and look at where the NaN appears")
            if plugin:  # the plugin's own arithmetic may be at fault: name it first
                raise PluginError(f"extractor '{self.name}' returned NaN/inf for {len(rows)} model(s), e.g. {', '.join(ids)}: "
                                  "a diverged model (weights so large its outputs overflow)? Check those models; a population "
                                  "without them fingerprints (leave them out: an import's --skip-bad, or a new zoo)")
            raise UserError(nonfinite_models(ids, len(rows), self.name))
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
        except KeyError as e:  # most often a parameter name of another architecture: say which ones exist
            names = list(getattr(models, "params", {}) or {})
            key = e.args[0] if e.args else None
            if isinstance(key, str) and names and key not in names:
                raise PluginError(f"extractor '{self.name}' asked for parameter {key!r}, which these models do not have "
                                  f"(valid: {', '.join(sorted(names))}); models.weight_matrices() lists the weight "
                                  "matrices of any architecture") from None
            raise PluginError(f"extractor '{self.name}' raised KeyError{_first_line(e)}") from None
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
RESERVED_META = ("code", "created", "extra", "extractor", "key", "kind", "model_set", "output", "params", "reads", "scale", "shape",
                 "source", "spec", "step", "supervised", "version", "warnings")


FILE_DIGEST = "@sha256:"


def source_digest(fn: Any) -> str | None:
    """12 hex digits of sha256 of ``fn``'s source text (a function's, or a class's), read when it is
    registered: the code that runs, not a file edited since. ``None`` where Python keeps no source
    (a lambda typed at a bare interpreter prompt, a compiled extension): such a plugin is keyed by
    name, version and parameters alone. Only ``fn``'s own text counts, not helpers it calls."""
    try:
        text = inspect.getsource(fn)
    except (OSError, TypeError):
        return None
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def file_with_digest(extractor: str, key: str, value: str) -> str:
    """``PATH@sha256:<12 hex digits of the file's content>`` for a file parameter: the cache key (and
    the parameters stored with a fingerprint) change when the file does. A value that already carries
    a digest is re-read. A path that is not a file is a one-line error."""
    path = Path(str(value).split(FILE_DIGEST)[0])
    if not path.is_file():
        raise UserError(f"parameter '{key}' of extractor '{extractor}' names no file: '{path}'")
    return f"{path}{FILE_DIGEST}{hashlib.sha256(path.read_bytes()).hexdigest()[:12]}"


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



def params_of(fn: Callable[..., Any], name: str | None = None) -> dict[str, Any]:
    """The declared parameters of extractor ``fn`` (registered as ``name``: the error names it as the
    spec was written) and their defaults; a parameter without a default is a one-line error."""
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
        if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL) or p.name in ("labels", "groups"):  # data, not parameters
            continue
        if p.default is inspect.Parameter.empty:
            raise PluginError(f"extractor {name or getattr(fn, '__name__', fn)!r}: parameter '{p.name}' needs a default")
        out[p.name] = p.default
    return out


def hidden_order(ids: list[str]) -> np.ndarray:
    """A permutation of ``len(ids)`` rows seeded from a hash of the ids themselves (see ``compute``):
    a plugin's row ``j`` is the caller's row ``hidden_order(ids)[j]``."""
    seed = int.from_bytes(hashlib.sha256("\n".join(ids).encode()).digest()[:8], "little")
    return np.random.default_rng(seed).permutation(len(ids))


def nonfinite_models(ids: list[str], n: int, fingerprint: str) -> str:
    """The one line for models whose built-in fingerprint is NaN/inf: the models first (up to three
    of ``n`` named by ``ids``), since it is the model and not the extractor, and what to do."""
    more = f" (and {n - len(ids)} more)" if n > len(ids) else ""
    who = (f"model '{ids[0]}' gives" if n == 1 else f"models {', '.join(repr(m) for m in ids)}{more} give")
    return (f"{who} NaN/inf values in fingerprint '{fingerprint}': a diverged run (weights so large its outputs "
            f"overflow)? It is the model{'s' if n > 1 else ''}, not the extractor: leave {'them' if n > 1 else 'it'} out of the zoo "
            "(`fingerprint import --skip-bad` refuses models whose outputs are not finite; docs/import.md)")

