"""The zoo: a population of trained models on disk. This module alone touches the zoo's files.

A zoo is a directory (schema in ``docs/zoo-format.md``)::

    ZOO/manifest.json            config, schema version, package version, planned models, shards
    ZOO/shards/<shard>.h5        one HDF5 file per trained batch: model table + stacked checkpoints
    ZOO/fingerprints/<key>.h5    cached fingerprints, keyed by extractor, version, params and step
    ZOO/results/<name>.json      clusters, scorecards and other analysis results
    ZOO/probes.h5                probe sets of imported zoos (sweeps get theirs from the task)

Every file is written under a temporary name and renamed into place when complete, so a crash
leaves either the old state or the new, never half a file. Readers see the union of the shards as
one population, in the manifest's planned order, and can stream parameters in chunks of models.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from fingerprint.errors import CorruptFileError, UserError, choices

SCHEMA_VERSION = 1
SHARD_FORMAT = "basin-fingerprint/zoo-shard"
FINGERPRINT_FORMAT = "basin-fingerprint/fingerprint"
MANIFEST = "manifest.json"
_STR = h5py.string_dtype("utf-8")

# Columns every shard's model table has (others: metrics and task diagnostics).
CORE_COLUMNS = ("model_id", "kind", "group", "task", "arch", "init_seed", "data_seed", "parent_id",
                "spawn_step", "variant", "final_step", "diverged", "diverged_step")


def package_version() -> str:
    try:
        from importlib.metadata import version

        return version("basin-fingerprint")
    except Exception:  # noqa: BLE001 - running from a source tree
        return "0+unknown"


# -- atomic writes ---------------------------------------------------------------------------------
@contextmanager
def atomic_path(path: Path, cache: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    Readers see the old file or the complete new one, never a partial one. ``cache=True`` (for
    recomputable files) removes an existing ``path`` before the rename instead of renaming over it:
    a reader may briefly see no file (a cache miss), but ext4 flushes a file's data to disk when it
    is renamed over another one, which costs ~1.5 ms per fingerprint recomputed.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        publish_mode(tmp_path)
        if cache:
            path.unlink(missing_ok=True)
        try:
            os.replace(tmp_path, path)
        except OSError as e:  # e.g. ``path`` is a directory: name it, not the temporary file
            raise type(e)(e.errno, e.strerror, str(path)) from e
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _umask()


def publish_mode(path: Path) -> None:
    """Give a finished temporary file (or directory) the permissions a plain ``open`` / ``mkdir``
    would have: ``tempfile`` creates them private (0600 / 0700), which would hide zoos, reports
    and caches from the other users of a shared machine once renamed into place."""
    os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~_UMASK)


def write_json(path: Path, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"'{path}' not found") from None
    except json.JSONDecodeError as e:
        raise CorruptFileError(f"'{path}' is not valid JSON ({e})") from None


def step_key(step: int) -> str:
    return f"step_{int(step):08d}"


# -- the model table -------------------------------------------------------------------------------
class ModelTable:
    """Per-model metadata: columns of equal length ``[n_models]``; iterate for row dicts."""

    def __init__(self, columns: dict[str, np.ndarray]):
        self.columns = columns

    def __len__(self) -> int:
        return len(self.columns["model_id"]) if self.columns else 0

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self.columns:
            raise UserError(f"unknown model column '{name}' (valid: {choices(self.columns)})")
        return self.columns[name]

    def __contains__(self, name: str) -> bool:
        return name in self.columns

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for i in range(len(self)):
            yield self.row(i)

    def row(self, i: int) -> dict[str, Any]:
        return {k: _py(v[i]) for k, v in self.columns.items()}

    def names(self) -> list[str]:
        return list(self.columns)

    def select(self, idx: np.ndarray | Sequence[int]) -> "ModelTable":
        idx = np.asarray(idx, dtype=int)
        return ModelTable({k: v[idx] for k, v in self.columns.items()})


def _py(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.generic):
        return v.item()
    return v


def _column_to_h5(values: Sequence[Any] | np.ndarray) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype.kind in "OUS":
        return np.asarray([str(v) for v in values], dtype=object)
    return arr


def _column_from_h5(ds: h5py.Dataset) -> np.ndarray:
    if h5py.check_string_dtype(ds.dtype) is not None:
        return np.asarray(ds.asstr()[()], dtype=object)
    return ds[()]


# -- shards ----------------------------------------------------------------------------------------
@dataclass
class ShardData:
    """What a trained batch writes: the model table, checkpoints, and per-checkpoint metrics."""

    shard: str
    table: dict[str, Sequence[Any]]
    checkpoints: dict[int, dict[str, torch.Tensor]]  # step -> name -> [n, ...]; may differ per model via mask
    present: dict[int, np.ndarray] | None = None  # step -> bool [n]: which models have that checkpoint
    metrics: dict[int, dict[str, Any]] | None = None  # step -> column -> [n]
    attrs: dict[str, Any] | None = None
    optimizer_states: dict[int, dict[str, torch.Tensor]] | None = None  # step -> "<param>/<buffer>" -> [n, ...]


def write_shard(zoo_dir: Path, data: ShardData) -> Path:
    """Write one shard atomically to ``zoo_dir/shards/<shard>.h5``."""
    path = Path(zoo_dir) / "shards" / f"{data.shard}.h5"
    n = len(data.table["model_id"])
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = SHARD_FORMAT
            f.attrs["schema_version"] = SCHEMA_VERSION
            f.attrs["package_version"] = package_version()
            f.attrs["shard"] = data.shard
            f.attrs["created"] = time.time()
            for k, v in (data.attrs or {}).items():
                f.attrs[k] = json.dumps(v)
            g = f.create_group("models")
            for col, values in data.table.items():
                arr = _column_to_h5(values)
                if len(arr) != n:
                    raise ValueError(f"column {col} has {len(arr)} rows, expected {n}")
                g.create_dataset(col, data=arr, dtype=_STR if arr.dtype == object else arr.dtype)
            f.create_dataset("steps", data=np.asarray(sorted(data.checkpoints), dtype=np.int64))
            cg = f.create_group("checkpoints")
            for step, params in sorted(data.checkpoints.items()):
                sg = cg.create_group(step_key(step))
                present = np.ones(n, dtype=bool) if data.present is None else data.present.get(step, np.ones(n, bool))
                sg.create_dataset("present", data=present)
                pg = sg.create_group("params")
                for name, t in params.items():
                    pg.create_dataset(name, data=t.detach().cpu().numpy().astype(np.float32))
                ostate = (data.optimizer_states or {}).get(step)
                if ostate:
                    og = sg.create_group("optim")
                    for key, t in ostate.items():
                        og.create_dataset(key.replace("/", ":"), data=t.detach().cpu().numpy())
                mg = sg.create_group("metrics")
                for col, values in ((data.metrics or {}).get(step) or {}).items():
                    arr = _column_to_h5(values)
                    mg.create_dataset(col, data=arr, dtype=_STR if arr.dtype == object else arr.dtype)
    return path


class Shard:
    """A read handle on one shard file (opened per read; h5py handles are not kept open)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            with h5py.File(self.path, "r") as f:
                if f.attrs.get("format") != SHARD_FORMAT:
                    raise CorruptFileError(f"zoo shard '{self.path}' is not a basin-fingerprint shard")
                version = int(f.attrs.get("schema_version", -1))
                if version > SCHEMA_VERSION:
                    raise CorruptFileError(
                        f"zoo shard '{self.path}' has schema version {version}; this basin-fingerprint reads up to {SCHEMA_VERSION} (upgrade the package)")
                self.table = {k: _column_from_h5(ds) for k, ds in f["models"].items()}
                self.steps = [int(s) for s in f["steps"][()]]
                self.present = {s: f["checkpoints"][step_key(s)]["present"][()] for s in self.steps}
                pg = f["checkpoints"][step_key(self.steps[-1])]["params"]
                # {name: (rows, ...)} of the stacked parameters (the same at every stored step)
                self.param_shapes = {k: tuple(ds.shape) for k, ds in pg.items()}
                self.attrs = {k: _maybe_json(v) for k, v in f.attrs.items()}
            self._check_rows()
        except CorruptFileError:
            raise
        except (OSError, KeyError, ValueError) as e:
            raise CorruptFileError(f"zoo shard '{self.path}' is corrupt or truncated ({type(e).__name__}: {e})") from None

    def _check_rows(self) -> None:
        """Every table column, presence mask and stacked parameter has one row per model."""
        if "model_id" not in self.table:
            raise CorruptFileError(f"zoo shard '{self.path}' is corrupt: its model table has no 'model_id' column")
        n = len(self.table["model_id"])
        rows = {f"models/{k}": len(v) for k, v in self.table.items()}
        rows.update({f"{step_key(s)}/present": len(v) for s, v in self.present.items()})
        rows.update({f"params/{k}": shape[0] if shape else 0 for k, shape in self.param_shapes.items()})
        bad = next((k for k, r in rows.items() if r != n), None)
        if bad is not None:
            raise CorruptFileError(f"zoo shard '{self.path}' is corrupt: '{bad}' has {rows[bad]} rows for {n} models")

    @property
    def n_models(self) -> int:
        return len(self.table["model_id"])

    @property
    def param_names(self) -> list[str]:
        return list(self.param_shapes)

    def read_params(self, step: int, rows: np.ndarray | slice | None = None,
                    out: dict[str, np.ndarray] | None = None, pos: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Stacked parameters of ``rows`` (all by default) at ``step``, ``{name: [len(rows), ...]}``.

        With ``out`` (``{name: float32 [N, ...]}``) and ``pos``, row ``rows[j]`` is written into
        ``out[name][pos[j]]`` instead (and nothing is returned).
        """
        try:
            with h5py.File(self.path, "r") as f:
                base = f"checkpoints/{step_key(step)}/params/"
                names = self.param_names if out is None else list(out)
                result: dict[str, np.ndarray] = {}
                for k in names:
                    # the low-level open: h5py's path lookup f[...] costs ~70 us per dataset
                    ds = h5py.Dataset(h5py.h5d.open(f.id, (base + k).encode()))
                    if tuple(ds.shape) != self.param_shapes[k]:  # a read into `out` trusts the shape
                        raise CorruptFileError(f"zoo shard '{self.path}' is corrupt: parameter '{k}' at step {step} has shape "
                                               f"{tuple(ds.shape)}, not {self.param_shapes[k]} as at its last step")
                    a = _read_rows(ds, rows, None if out is None else out[k], pos)
                    if a is not None:
                        result[k] = a
                return result
        except (OSError, KeyError) as e:
            raise CorruptFileError(f"zoo shard '{self.path}' is corrupt or truncated ({type(e).__name__}: {e})") from None

    def read_optimizer_state(self, step: int, rows: np.ndarray) -> dict[str, np.ndarray] | None:
        with h5py.File(self.path, "r") as f:
            sg = f["checkpoints"][step_key(step)]
            if "optim" not in sg:
                return None
            out = {}
            for k, ds in sg["optim"].items():
                out[k.replace(":", "/")] = ds[()] if ds.ndim == 0 else ds[np.sort(rows)][np.argsort(np.argsort(rows))]
            return out

    def read_metrics(self, step: int) -> dict[str, np.ndarray]:
        with h5py.File(self.path, "r") as f:
            g = f["checkpoints"][step_key(step)]["metrics"]
            return {k: _column_from_h5(ds) for k, ds in g.items()}


def _as_range(idx: np.ndarray) -> tuple[int, int] | None:
    """``(lo, hi)`` when ``idx`` is exactly ``lo, lo + 1, ..., hi - 1``."""
    if len(idx) and int(idx[-1]) - int(idx[0]) == len(idx) - 1 and (len(idx) == 1 or bool((np.diff(idx) == 1).all())):
        return int(idx[0]), int(idx[-1]) + 1
    return None


def _read_rows(ds: "h5py.Dataset", rows: np.ndarray | slice | None, dest: np.ndarray | None,
               pos: np.ndarray | None) -> np.ndarray | None:
    """``ds[rows]``, or with ``dest``, ``dest[pos] = ds[rows]`` (then returns None)."""
    dst = None if dest is None or pos is None else _as_range(np.asarray(pos))
    if rows is None or isinstance(rows, slice):
        a = ds[slice(None) if rows is None else rows]
    else:
        rows = np.asarray(rows)
        span = _as_range(rows) if len(rows) else None
        if span is not None and dst is not None and dest.flags.c_contiguous:
            # rows lo:hi straight into dest[a:b] (contiguous): a hyperslab read, no temporary
            fspace = ds.id.get_space()
            count = (span[1] - span[0], *ds.shape[1:])
            fspace.select_hyperslab((span[0],) + (0,) * (len(count) - 1), count)
            ds.id.read(h5py.h5s.create_simple(count), fspace, dest[dst[0] : dst[1]])
            return None
        if span is not None:
            a = ds[span[0] : span[1]]
        elif len(rows) and int(rows.max()) - int(rows.min()) + 1 <= 2 * len(rows):
            # dense rows (a chunk of neighbouring models): one contiguous read, then numpy indexing;
            # h5py's point selection costs ~0.5 ms per dataset even for a few rows
            lo = int(rows.min())
            a = ds[lo : int(rows.max()) + 1][rows - lo]
        else:
            order = np.argsort(rows)
            inv = np.empty_like(order)
            inv[order] = np.arange(len(order))
            a = ds[rows[order]][inv]
    if dest is None:
        return a
    dest[slice(*dst) if dst else pos] = a  # (h5py's read_direct builds selections slower than this copy)
    return None


def _maybe_json(v: Any) -> Any:
    if isinstance(v, str):
        try:
            return json.loads(v)
        except json.JSONDecodeError:
            return v
    if isinstance(v, np.generic):
        return v.item()
    return v


# -- the zoo ---------------------------------------------------------------------------------------
class Zoo:
    """A population on disk. Open with :meth:`Zoo.open`.

    ``model_ids`` lists the trained models in planned order; ``models`` is their metadata table;
    ``params(step)`` gives stacked parameters ``{name: [n_models, ...]}`` in ``model_ids`` order.
    """

    def __init__(self, path: Path, manifest: dict, shards: list[Shard], corrupt: list[tuple[Path, str]]):
        self.path = path
        self.manifest = manifest
        self.shards = shards
        self.corrupt = corrupt
        planned = [m["model_id"] for m in manifest.get("planned", [])]
        rank = {mid: i for i, mid in enumerate(planned)}
        rows = []  # (rank, shard index, row)
        for si, sh in enumerate(shards):
            for r, mid in enumerate(sh.table["model_id"]):
                rows.append((rank.get(mid, len(rank) + len(rows)), si, r))
        rows.sort()
        seen: set[str] = set()
        self._loc: list[tuple[int, int]] = []
        for _, si, r in rows:
            mid = shards[si].table["model_id"][r]
            if mid in seen:  # a model is in exactly one shard; keep the first if a stray copy exists
                continue
            seen.add(mid)
            self._loc.append((si, r))
        cols: dict[str, list[Any]] = {}
        all_cols = list(dict.fromkeys(c for sh in shards for c in sh.table))
        for si, r in self._loc:
            for c in all_cols:
                col = shards[si].table.get(c)
                cols.setdefault(c, []).append(col[r] if col is not None else _missing(c, shards))
        self.models = ModelTable({c: _as_array(v) for c, v in cols.items()})
        self.model_ids: list[str] = [str(m) for m in self.models.columns.get("model_id", [])]
        self._index = {m: i for i, m in enumerate(self.model_ids)}

    # -- opening ---------------------------------------------------------------------------------
    module_factory = None  # set for zoos built from in-memory modules (no importable factory), or by the user's --arch
    trust_code = False  # may the code this zoo names (an imported zoo's factory, a sweep's module:Class task) be imported?

    @classmethod
    def from_modules(cls, modules, out=None, metadata=None, model_ids=None, probes=None, layers=(), factory=None,
                     overwrite=False) -> "Zoo":
        """A zoo from a list of same-architecture ``nn.Module`` s, written to ``out`` (without it, to a
        temporary directory that is removed when the interpreter exits).

        ``metadata`` maps column -> per-model values (lineage, labels to score against); ``probes`` maps
        probe-set name -> inputs ``[n_probes, ...]``; ``layers`` names submodules whose outputs
        extractors may read as activations.
        """
        from fingerprint.importer import zoo_from_modules

        return zoo_from_modules(modules, out, metadata, model_ids, probes, layers, factory, overwrite)

    @classmethod
    def open(cls, path: str | Path, strict: bool = True, trust_code: bool = False) -> "Zoo":
        """Open a zoo directory. ``strict=False`` skips corrupt shards (listed in ``.corrupt``).

        Opening reads data only. ``trust_code=True`` allows running the zoo's models with code the
        zoo names (see "Trust model" in ``docs/zoo-format.md``); without it that is refused.
        """
        p = Path(path)
        if not (p / MANIFEST).exists():
            if not p.exists():
                raise UserError(f"zoo '{p}' does not exist")
            raise UserError(f"'{p}' is not a zoo (no {MANIFEST})")
        manifest = read_manifest(p)
        version = manifest["schema_version"]
        if version > SCHEMA_VERSION:
            raise CorruptFileError(f"zoo '{p}' has schema version {version}; this basin-fingerprint reads up to {SCHEMA_VERSION}")
        shards, corrupt = [], []
        planned_in = {m["model_id"]: m["shard"] for m in manifest["planned"]}
        for f in sorted((p / "shards").glob("*.h5")):
            try:
                sh = Shard(f)
                stray = next((str(m) for m in sh.table["model_id"] if planned_in.get(str(m), f.stem) != f.stem), None)
                if stray is not None:  # e.g. one shard file copied over another
                    raise CorruptFileError(f"zoo shard '{f}' holds model '{stray}', which the manifest plans in shard "
                                           f"'{planned_in[stray]}'")
                shards.append(sh)
            except CorruptFileError as e:
                if strict:
                    raise
                corrupt.append((f, str(e)))
                warnings.warn(str(e), stacklevel=2)
        zoo = cls(p, manifest, shards, corrupt)
        zoo.trust_code = bool(trust_code)
        return zoo

    # -- population ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.model_ids)

    @property
    def n_models(self) -> int:
        return len(self.model_ids)

    @property
    def config(self) -> dict:
        return self.manifest.get("config", {})

    @property
    def task_name(self) -> str | None:
        return self.manifest.get("task", {}).get("name")

    @property
    def task_params(self) -> dict:
        return self.manifest.get("task", {}).get("params", {})

    @property
    def family_spec(self) -> dict:
        return self.manifest.get("family", {})

    @property
    def steps(self) -> list[int]:
        """Every stored checkpoint step (a model may lack some: see :meth:`models_at`)."""
        return sorted({s for sh in self.shards for s in sh.steps})

    @property
    def common_steps(self) -> list[int]:
        """Checkpoint steps that every model has."""
        common: set[int] | None = None
        for sh in self.shards:
            for r in range(sh.n_models):
                have = {s for s in sh.steps if sh.present[s][r]}
                common = have if common is None else common & have
        return sorted(common or [])

    def models_at(self, step: int) -> list[str]:
        """Ids of the models that have a checkpoint at ``step``, in ``model_ids`` order."""
        return [mid for mid, (si, r) in zip(self.model_ids, self._loc)
                if step in self.shards[si].present and self.shards[si].present[step][r]]

    @property
    def n_params(self) -> int:
        """Parameters per model (0 for an empty zoo)."""
        if not self.shards:
            return 0
        return int(sum(math.prod(shape[1:]) for shape in self.shards[0].param_shapes.values()))

    def index(self, model_ids: Sequence[str]) -> np.ndarray:
        try:
            return np.asarray([self._index[m] for m in model_ids], dtype=int)
        except KeyError as e:
            raise UserError(f"unknown model id {e.args[0]!r} in zoo '{self.path}'") from None

    def params(self, step: int | None = None, model_ids: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        """Stacked parameters ``{name: [n_models, ...]}`` at ``step`` (each model's final step by default)."""
        ids = self.model_ids if model_ids is None else list(model_ids)
        idx = self.index(ids)
        loc = np.asarray(self._loc, dtype=np.int64).reshape(-1, 2)[idx]  # [n, (shard, row)]
        steps = np.asarray(self.models["final_step"], dtype=np.int64)[idx] if step is None else np.full(len(idx), int(step))
        out: dict[str, np.ndarray] = {}
        first, first_shapes = None, None  # the shard whose parameter shapes `out` was allocated from
        for si, s in sorted(set(zip(loc[:, 0].tolist(), steps.tolist()))):
            pos = np.flatnonzero((loc[:, 0] == si) & (steps == s))
            rows = loc[pos, 1]
            present = self.shards[si].present.get(s)
            missing = pos if present is None else pos[~np.asarray(present)[rows]]
            if len(missing):
                bad = ids[missing[0]]
                raise UserError(f"model '{bad}' has no checkpoint at step {s} (its steps: {self.model_steps(bad)})")
            shapes = {k: tuple(shape[1:]) for k, shape in self.shards[si].param_shapes.items()}
            if not out:
                out = {k: np.empty((len(ids), *shape), dtype=np.float32) for k, shape in shapes.items()}
                first, first_shapes = self.shards[si].path.name, shapes
            elif shapes != first_shapes:
                raise CorruptFileError(f"the models of shards '{first}' and '{self.shards[si].path.name}' of zoo '{self.path}' have "
                                       f"different parameter shapes ({first_shapes} vs {shapes}): one is corrupt, or they cannot be stacked")
            self.shards[si].read_params(s, rows, out=out, pos=pos)
        return {k: torch.from_numpy(v) for k, v in out.items()}

    def optimizer_state(self, step: int, model_ids: Sequence[str]) -> dict[str, torch.Tensor]:
        """Optimiser buffers ``{"<param>/<buffer>": [n, ...], "step": scalar}`` saved at ``step``.

        Present only for sweeps trained with ``train.save_optimizer_state = true``.
        """
        idx = self.index(model_ids)
        parts: list[tuple[list[int], dict[str, np.ndarray]]] = []
        for si in sorted({self._loc[i][0] for i in idx}):
            pos = [p for p, i in enumerate(idx) if self._loc[i][0] == si]
            rows = np.asarray([self._loc[idx[p]][1] for p in pos])
            st = self.shards[si].read_optimizer_state(step, rows) if step in self.shards[si].present else None
            if st is None:
                raise UserError(f"zoo '{self.path}' has no optimizer state at step {step} for model '{model_ids[pos[0]]}' "
                                "(train with train.save_optimizer_state = true)")
            parts.append((pos, st))
        out: dict[str, np.ndarray] = {}
        for pos, st in parts:
            for k, v in st.items():
                if k == "step":
                    out[k] = v
                    continue
                if k not in out:
                    out[k] = np.empty((len(idx), *v.shape[1:]), dtype=v.dtype)
                out[k][pos] = v
        return {k: torch.as_tensor(v) for k, v in out.items()}

    def model_steps(self, model_id: str) -> list[int]:
        si, r = self._loc[self.index([model_id])[0]]
        sh = self.shards[si]
        return [s for s in sh.steps if sh.present[s][r]]

    def iter_chunks(self, chunk_size: int = 256, step: int | None = None, model_ids: Sequence[str] | None = None
                    ) -> Iterator[tuple[list[str], dict[str, torch.Tensor]]]:
        """Stream ``(model_ids, params)`` in chunks of at most ``chunk_size`` models."""
        ids = self.model_ids if model_ids is None else list(model_ids)
        for i in range(0, len(ids), chunk_size):
            chunk = ids[i : i + chunk_size]
            yield chunk, self.params(step, chunk)

    def metrics(self, step: int) -> ModelTable:
        """Per-checkpoint metrics and diagnostics of every model at ``step`` (NaN / '' where absent)."""
        cols: dict[str, list[Any]] = {}
        per_shard = {si: (self.shards[si].read_metrics(step) if step in self.shards[si].present else {}) for si in range(len(self.shards))}
        names = list(dict.fromkeys(c for m in per_shard.values() for c in m))
        for si, r in self._loc:
            m = per_shard[si]
            present = step in self.shards[si].present and self.shards[si].present[step][r]
            for c in names:
                v = m[c][r] if (c in m and present) else None
                cols.setdefault(c, []).append(v)
        out = {"model_id": np.asarray(self.model_ids, dtype=object)}
        for c, v in cols.items():
            if all(x is None or isinstance(x, (str, bytes)) for x in v):
                out[c] = np.asarray(["" if x is None else _py(x) for x in v], dtype=object)
            else:
                out[c] = np.asarray([np.nan if x is None else float(x) for x in v])
        return ModelTable(out)

    # -- fingerprints cache ----------------------------------------------------------------------
    def model_set_hash(self, model_ids: Sequence[str] | None = None) -> str:
        ids = self.model_ids if model_ids is None else model_ids
        return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]

    def save_fingerprint(self, key: str, values: np.ndarray, model_ids: Sequence[str], meta: dict[str, Any],
                         extra: dict[str, np.ndarray] | None = None) -> Path:
        """Store a fingerprint ``values`` ``[n_models, d]`` (features) or ``[n_models, n_models]`` (distances)."""
        path = self.path / "fingerprints" / f"{key}.h5"
        with atomic_path(path, cache=True) as tmp:
            with h5py.File(tmp, "w") as f:
                f.attrs["format"] = FINGERPRINT_FORMAT
                f.attrs["schema_version"] = SCHEMA_VERSION
                f.attrs["meta"] = json.dumps({**meta, "key": key, "model_set": self.model_set_hash(model_ids), "created": time.time()}, default=_json_default)
                f.create_dataset("values", data=np.asarray(values, dtype=np.float32))
                f.create_dataset("model_ids", data=np.asarray(list(model_ids), dtype=object), dtype=_STR)
                for k, v in (extra or {}).items():
                    f.create_dataset(f"extra/{k}", data=np.asarray(v))
        return path

    def load_fingerprint(self, key: str) -> tuple[np.ndarray, list[str], dict[str, Any]] | None:
        """``(values, model_ids, meta)`` or ``None`` when not cached (or cached for other models)."""
        path = self.path / "fingerprints" / f"{key}.h5"
        if not path.exists():
            return None
        try:
            with h5py.File(path, "r") as f:
                meta = json.loads(f.attrs["meta"])
                ids = [str(s) for s in f["model_ids"].asstr()[()]]
                values = f["values"][()]
                if "extra" in f:
                    meta["extra"] = {k: ds[()] for k, ds in f["extra"].items()}
        except (OSError, KeyError, ValueError) as e:
            warnings.warn(f"fingerprint cache '{path}' is unreadable ({e}); it will be recomputed", stacklevel=2)
            return None
        return values, ids, meta

    def list_fingerprints(self) -> list[dict[str, Any]]:
        out = []
        for path in sorted((self.path / "fingerprints").glob("*.h5")):
            try:
                with h5py.File(path, "r") as f:
                    meta = json.loads(f.attrs["meta"])
                    meta["shape"] = list(f["values"].shape)
                out.append(meta)
            except (OSError, KeyError, ValueError):
                out.append({"key": path.stem, "error": "unreadable"})
        return out

    # -- analysis results ------------------------------------------------------------------------
    def save_result(self, name: str, obj: Any) -> Path:
        path = self.path / "results" / f"{name}.json"
        write_json(path, obj)
        return path

    def load_result(self, name: str) -> Any | None:
        path = self.path / "results" / f"{name}.json"
        return read_json(path) if path.exists() else None

    def list_results(self) -> list[str]:
        return sorted(p.stem for p in (self.path / "results").glob("*.json"))


def _as_array(values: list[Any]) -> np.ndarray:
    if all(isinstance(v, (str, bytes)) for v in values):
        return np.asarray([_py(v) for v in values], dtype=object)
    return np.asarray(values)


def _missing(col: str, shards: list[Shard]) -> Any:
    for sh in shards:
        if col in sh.table:
            return "" if sh.table[col].dtype == object else np.nan
    return None


# -- probe sets of imported zoos -----------------------------------------------------------------------
PROBES = "probes.h5"


def write_probes(zoo_dir: Path, probes: dict[str, torch.Tensor]) -> Path:
    """Store named probe sets ``{name: [n_probes, *input_shape]}`` in ``ZOO/probes.h5``."""
    path = Path(zoo_dir) / PROBES
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = "basin-fingerprint/probes"
            f.attrs["schema_version"] = SCHEMA_VERSION
            for name, t in probes.items():
                arr = t.detach().cpu().numpy()
                f.create_dataset(name, data=arr)
    return path


def read_probes(zoo_dir: Path) -> dict[str, torch.Tensor]:
    path = Path(zoo_dir) / PROBES
    if not path.exists():
        return {}
    try:
        with h5py.File(path, "r") as f:
            return {k: torch.from_numpy(ds[()]) for k, ds in f.items()}
    except (OSError, KeyError) as e:
        raise CorruptFileError(f"probe file '{path}' is corrupt or truncated ({e})") from None


# -- manifests -------------------------------------------------------------------------------------
def read_manifest(zoo_dir: Path) -> dict:
    path = Path(zoo_dir) / MANIFEST
    manifest = read_json(path)
    check_manifest(manifest, path)
    return manifest


def check_manifest(manifest: Any, path: Path) -> None:
    """The keys every reader relies on, with their JSON types; a :class:`CorruptFileError` naming
    ``path`` and the key otherwise."""
    def bad(what: str) -> CorruptFileError:
        return CorruptFileError(f"zoo manifest '{path}' is corrupt: {what}")

    if not isinstance(manifest, dict):
        raise bad(f"expected a JSON object, found {type(manifest).__name__}")
    if not isinstance(manifest.get("schema_version"), int) or isinstance(manifest.get("schema_version"), bool):
        raise bad(f"'schema_version' must be an integer, found {manifest.get('schema_version')!r}")
    planned = manifest.get("planned")
    if not isinstance(planned, list) or not all(isinstance(m, dict) and "model_id" in m and "shard" in m for m in planned):
        raise bad("'planned' must be a list of {\"model_id\", \"shard\", ...} objects")
    if not isinstance(manifest.get("shards", []), list):
        raise bad("'shards' must be a list")
    for key in ("config", "task", "family"):
        if key in manifest and not isinstance(manifest[key], dict):
            raise bad(f"'{key}' must be a JSON object")
    if manifest.get("source", "sweep") in ("sweep", "continue") and "config" not in manifest:
        raise bad("it has no 'config' (the sweep config it was trained from)")


def write_manifest(zoo_dir: Path, manifest: dict) -> None:
    manifest = {**manifest, "schema_version": SCHEMA_VERSION, "package_version": package_version()}
    write_json(Path(zoo_dir) / MANIFEST, manifest)


def completed_shards(zoo_dir: Path) -> dict[str, Path]:
    """Shard name -> path for complete, readable shard files; removes leftover temporaries."""
    d = Path(zoo_dir) / "shards"
    if not d.exists():
        return {}
    for tmp in d.glob(".*.tmp"):
        tmp.unlink()
    done = {}
    for f in sorted(d.glob("*.h5")):
        try:
            Shard(f)
        except CorruptFileError as e:
            warnings.warn(f"{e}; it will be retrained", stacklevel=2)
            f.unlink()
            continue
        done[f.stem] = f
    return done
