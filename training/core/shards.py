"""Shards: one HDF5 file per trained batch (model table + stacked checkpoints), and its reader.
"""

from __future__ import annotations

import json
import mmap
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
import xxhash

from training.core.errors import CorruptFileError, UserError, choices
from training.core.files import clean_zoo_orphans, package_version
from training.core.integrity import (
    ATTRS_CHECKSUM,
    CHECKSUMS,
    MAP_MIN,
    SCHEMA_VERSION,
    SHARD_FORMAT,
    VERIFY_BLOCK,
    Checks,
    digest_seed,
    h5_writer,
    open_checks,
    reading,
    step_key,
)

# Columns every shard's model table has (others: metrics and task diagnostics).
CORE_COLUMNS = ("model_id", "kind", "group", "task", "arch", "init_seed", "data_seed", "parent_id",
                "spawn_step", "variant", "final_step", "diverged", "diverged_step")


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
        return {k: to_python(v[i]) for k, v in self.columns.items()}

    def names(self) -> list[str]:
        return list(self.columns)

    def select(self, idx: np.ndarray | Sequence[int]) -> "ModelTable":
        idx = np.asarray(idx, dtype=int)
        return ModelTable({k: v[idx] for k, v in self.columns.items()})


def to_python(v: Any) -> Any:
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


def column_from_h5(ds: h5py.Dataset) -> np.ndarray:
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
    clean_zoo_orphans(zoo_dir)
    n = len(data.table["model_id"])
    with h5_writer(path) as w:
        f = w.file
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
            w.put(g, col, arr)
        w.put(f, "steps", np.asarray(sorted(data.checkpoints), dtype=np.int64))
        cg = f.create_group("checkpoints")
        for step, params in sorted(data.checkpoints.items()):
            sg = cg.create_group(step_key(step))
            present = np.ones(n, dtype=bool) if data.present is None else data.present.get(step, np.ones(n, bool))
            w.put(sg, "present", np.asarray(present, dtype=bool))
            pg = sg.create_group("params")
            for name, t in params.items():
                w.put(pg, name, t.detach().cpu().numpy().astype(np.float32))
            ostate = (data.optimizer_states or {}).get(step)
            if ostate:
                og = sg.create_group("optim")
                for key, t in ostate.items():
                    w.put(og, key.replace("/", ":"), t.detach().cpu().numpy())
            mg = sg.create_group("metrics")
            for col, values in ((data.metrics or {}).get(step) or {}).items():
                w.put(mg, col, _column_to_h5(values))
    return path


class Shard:
    """A read handle on one shard file (opened per read; h5py handles are not kept open).

    Opening reads and verifies the model table, steps and presence masks; parameters, optimizer
    state and metrics are verified as they are read (``verify=False`` skips the checksums).
    """

    def __init__(self, path: Path, verify: bool = True):
        self.path = Path(path)
        self.label = f"zoo shard '{self.path}'"
        with reading(self.label), h5py.File(self.path, "r") as f:
            self.checks = check = open_checks(f, self.label, SHARD_FORMAT, "shard", verify)
            self.table = {k: column_from_h5(ds) for k, ds in f["models"].items()}
            steps = f["steps"][()]
            self.steps = [int(s) for s in steps]
            self.present = {s: f[self._present(s)][()] for s in self.steps}
            pg = f["checkpoints"][step_key(self.steps[-1])]["params"]
            # {name: (rows, ...)} of the stacked parameters (the same at every stored step)
            self.param_shapes = {k: tuple(ds.shape) for k, ds in pg.items()}
            self.attrs = {k: _maybe_json(v) for k, v in f.attrs.items() if k not in (CHECKSUMS, ATTRS_CHECKSUM)}
            self._check_rows()  # (first: a column cut short is better named so than as a checksum mismatch)
            for k, values in self.table.items():
                check(f["models"][k], values, path=f"/models/{k}")
            check(f["steps"], steps, path="/steps")
            for s, values in self.present.items():
                check(f[self._present(s)], values, path=self._present(s))
            check.ids = self.table["model_id"]

    @staticmethod
    def _present(step: int) -> str:
        return f"/checkpoints/{step_key(step)}/present"

    def _check_rows(self) -> None:
        """Every table column, presence mask and stacked parameter has one row per model."""
        if "model_id" not in self.table:
            raise CorruptFileError(f"{self.label} is corrupt: its model table has no 'model_id' column")
        n = len(self.table["model_id"])
        rows = {f"models/{k}": len(v) for k, v in self.table.items()}
        rows.update({f"{step_key(s)}/present": len(v) for s, v in self.present.items()})
        rows.update({f"params/{k}": shape[0] if shape else 0 for k, shape in self.param_shapes.items()})
        bad = next((k for k, r in rows.items() if r != n), None)
        if bad is not None:
            raise CorruptFileError(f"{self.label} is corrupt: '{bad}' has {rows[bad]} rows for {n} models")

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
        with reading(self.label), h5py.File(self.path, "r") as f:
            base = f"checkpoints/{step_key(step)}/params/"
            names = self.param_names if out is None else list(out)
            result: dict[str, np.ndarray] = {}
            for k in names:
                # the low-level open: h5py's path lookup f[...] costs ~70 us per dataset
                ds = h5py.Dataset(h5py.h5d.open(f.id, (base + k).encode()))
                if tuple(ds.shape) != self.param_shapes[k]:  # a read into `out` trusts the shape
                    raise CorruptFileError(f"{self.label} is corrupt: parameter '{k}' at step {step} has shape "
                                           f"{tuple(ds.shape)}, not {self.param_shapes[k]} as at its last step")
                a = _read_rows(ds, "/" + base + k, rows, None if out is None else out[k], pos, self.checks, self.path)
                if a is not None:
                    result[k] = a
            return result

    def read_optimizer_state(self, step: int, rows: np.ndarray) -> dict[str, np.ndarray] | None:
        with reading(self.label), h5py.File(self.path, "r") as f:
            sg = f["checkpoints"][step_key(step)]
            if "optim" not in sg:
                return None
            out = {}
            rows = np.asarray(rows)
            for k, ds in sg["optim"].items():
                if ds.ndim == 0:
                    out[k.replace(":", "/")] = self.checks(ds, ds[()])
                else:
                    a = self.checks(ds, ds[np.sort(rows)], np.sort(rows), models=True)  # (the rows are unique)
                    out[k.replace(":", "/")] = a[np.argsort(np.argsort(rows))]
            return out

    def read_metrics(self, step: int) -> dict[str, np.ndarray]:
        with reading(self.label), h5py.File(self.path, "r") as f:
            g = f["checkpoints"][step_key(step)]["metrics"]
            return {k: self.checks(ds, column_from_h5(ds), models=True) for k, ds in g.items()}

    def verify(self) -> None:
        """Read and verify everything the shard holds (what ``--resume`` does before trusting it)."""
        for s in self.steps:
            self.read_params(s)
            self.read_metrics(s)
            self.read_optimizer_state(s, np.arange(self.n_models))


def _as_range(idx: np.ndarray) -> tuple[int, int] | None:
    """``(lo, hi)`` when ``idx`` is exactly ``lo, lo + 1, ..., hi - 1``."""
    if len(idx) and int(idx[-1]) - int(idx[0]) == len(idx) - 1 and (len(idx) == 1 or bool((np.diff(idx) == 1).all())):
        return int(idx[0]), int(idx[-1]) + 1
    return None


def _read_rows(ds: "h5py.Dataset", path: str, rows: np.ndarray | slice | None, dest: np.ndarray | None,
               pos: np.ndarray | None, check: Checks, file: Path) -> np.ndarray | None:
    """``ds[rows]`` (``ds`` is dataset ``path`` of ``file``), or with ``dest``, ``dest[pos] = ds[rows]``
    (then returns None); what is read is verified against its checksums."""
    dst = None if dest is None or pos is None else _as_range(np.asarray(pos))
    if rows is None or isinstance(rows, slice):
        sl = slice(None) if rows is None else rows
        a = ds[sl]
        check(ds, a, None if sl == slice(None) else sl, models=True, path=path)
    else:
        rows = np.asarray(rows)
        span = _as_range(rows) if len(rows) else None
        if span is not None and dst is not None and dest.flags.c_contiguous:
            _read_span(ds, path, span, dest[dst[0] : dst[1]], check, file)
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
        check(ds, a, None if span == (0, len(ds)) else rows, models=True, path=path)
    if dest is None:
        return a
    dest[slice(*dst) if dst else pos] = a  # (h5py's read_direct builds selections slower than this copy)
    return None


def _read_span(ds: h5py.Dataset, path: str, span: tuple[int, int], target: np.ndarray, check: Checks, file: Path) -> None:
    """Rows ``lo:hi`` of ``ds`` (a dataset of ``file``) straight into ``target`` (C-contiguous), no
    temporary, then verified: every row against the dataset's digest, hashed block by block as the
    blocks arrive; some rows against their row digests."""
    lo, hi = span
    shape = ds.shape  # (h5py asks HDF5 again at every access)
    full = (lo, hi) == (0, shape[0]) and target.dtype.byteorder in "<|=" and sys.byteorder == "little"
    whole = check.whole(path) if full else None
    if whole is None:
        _read_blocks(ds, shape, lo, hi, target, hi - lo)
        check(ds, target, None if full else slice(lo, hi), models=True, path=path)  # (a no-op when off)
        return
    h = xxhash.xxh3_64(seed=digest_seed(target.dtype.newbyteorder("<").str))
    offset = _raw_offset(ds, target.dtype) if target.nbytes >= MAP_MIN else None
    if offset is not None:
        _copy_mapped(file, offset, target, h, check.label)
    else:
        _read_blocks(ds, shape, lo, hi, target, max(1, VERIFY_BLOCK // max(1, target[0].nbytes)), h)
    if h.intdigest() != whole:
        check.mismatch(ds, target, slice(lo, hi), True, path)


def _read_blocks(ds: h5py.Dataset, shape: tuple[int, ...], lo: int, hi: int, target: np.ndarray, block: int,
                 h: "xxhash.xxh3_64 | None" = None) -> None:
    """Rows ``lo:hi`` into ``target`` with hyperslab reads of ``block`` rows, each hashed into ``h``."""
    fspace, mtype = ds.id.get_space(), h5py.h5t.py_create(target.dtype)
    mspace, mcount = None, None  # (made once per block shape: h5py would redo both for every read, ~15 us)
    for a in range(lo, hi, block):
        b = min(a + block, hi)
        count = (b - a, *shape[1:])
        fspace.select_hyperslab((a,) + (0,) * (len(count) - 1), count)
        if count != mcount:
            mspace, mcount = h5py.h5s.create_simple(count), count
        part = target[a - lo : b - lo]
        ds.id.read(mspace, fspace, part, mtype)
        if h is not None:
            h.update(memoryview(part.reshape(-1).view(np.uint8)))


def _raw_offset(ds: h5py.Dataset, dtype: np.dtype) -> int | None:
    """Where the values of ``ds`` start in its file, when they are stored there as the plain C-order
    bytes of ``dtype`` (contiguous layout, no filters); None otherwise."""
    plist = ds.id.get_create_plist()
    if plist.get_layout() != h5py.h5d.CONTIGUOUS or plist.get_nfilters() or ds.id.dtype != dtype:
        return None
    return ds.id.get_offset()


def _copy_mapped(file: Path, offset: int, target: np.ndarray, h: "xxhash.xxh3_64", label: str) -> None:
    """Copy ``target.nbytes`` bytes at ``offset`` of ``file`` into ``target`` through a read-only
    memory map, 1 MB at a time, hashing each block into ``h`` while it is in cache.

    Why not HDF5's read: on the x86 hosts measured, the kernel's copy out of the page cache leaves
    the data out of the CPU's caches, so hashing it afterwards reads it from memory again and
    verification cost ~25% of a large read; copied here, the hashing costs ~10%. (Zoo files are
    replaced by renaming, never rewritten in place, so the map cannot shrink under the copy.)
    """
    dst = target.reshape(-1).view(np.uint8)
    n = dst.nbytes
    with open(file, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as m:
        if offset + n > len(m):
            raise CorruptFileError(f"{label} is truncated: a dataset ends at byte {offset + n} of {len(m)}")
        src = np.frombuffer(m, np.uint8, n, offset)
        try:
            for o in range(0, n, VERIFY_BLOCK):
                part = dst[o : o + VERIFY_BLOCK]
                part[...] = src[o : o + VERIFY_BLOCK]
                h.update(memoryview(part))
        finally:
            del src  # (the map cannot close while a view of it exists)


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

def as_array(values: list[Any]) -> np.ndarray:
    if all(isinstance(v, (str, bytes)) for v in values):
        return np.asarray([to_python(v) for v in values], dtype=object)
    return np.asarray(values)


def missing(col: str, shards: list[Shard]) -> Any:
    for sh in shards:
        if col in sh.table:
            return "" if sh.table[col].dtype == object else np.nan
    return None


# -- probe sets of imported zoos -----------------------------------------------------------------------
