"""The zoo: a population of trained models on disk. This module alone touches the zoo's files.

A zoo is a directory (schema in ``docs/zoo-format.md``)::

    ZOO/manifest.json            config, schema version, package version, planned models, shards
    ZOO/shards/<shard>.h5        one HDF5 file per trained batch: model table + stacked checkpoints
    ZOO/fingerprints/<key>.h5    cached fingerprints, keyed by extractor, version, params and step
    ZOO/results/<name>.json      clusters, scorecards and other analysis results
    ZOO/probes.h5                probe sets of imported zoos (sweeps get theirs from the task)

Every file is written under a temporary name and renamed into place when complete, so a crash
leaves either the old state or the new, never half a file; HDF5 files are built in memory and
written by Python, so a full disk is one error, not a crash inside HDF5. Every dataset carries
xxh3 checksums, one per model row, verified when it is read: a file that fails them, or that HDF5
cannot parse, is a :class:`CorruptFileError` naming it. Readers see the union of the shards as one
population, in the manifest's planned order, and can stream parameters in chunks of models.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import math
import mmap
import os
import re
import shutil
import socket
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
import xxhash

from fingerprint.errors import CorruptFileError, DiskFullError, UserError, choices

# 2: every dataset carries xxh3 checksums (version-1 zoos, without them, are still read)
SCHEMA_VERSION = 2
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
# A temporary is named after its writer, ``.<name>.<host>-<pid>.<random>.tmp``, so that a later
# writer can tell an orphan (its process is gone: killed with kill -9) from a file another process
# on this machine is still writing.
_HOST = re.sub(r"[^A-Za-z0-9]", "_", socket.gethostname()) or "host"
_TMP_NAME = re.compile(r"^\.(?P<name>.+?)\.(?:(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+)\.)?[^.]+\.tmp$")
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def _tmp_prefix(path: Path) -> str:
    return f".{path.name}.{_HOST}-{os.getpid()}."


@contextmanager
def atomic_path(path: Path, cache: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    Readers see the old file or the complete new one, never a partial one. ``cache=True`` (for
    recomputable files) removes an existing ``path`` before the rename instead of renaming over it:
    a reader may briefly see no file (a cache miss), but ext4 flushes a file's data to disk when it
    is renamed over another one, which costs ~1.5 ms per fingerprint recomputed. A full disk (or
    quota) is a :class:`DiskFullError` naming ``path``, with the temporary removed.
    """
    tmp_path: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=_tmp_prefix(path), suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        yield tmp_path
        publish_mode(tmp_path)
        if cache:
            path.unlink(missing_ok=True)
        try:
            os.replace(tmp_path, path)
        except OSError as e:  # e.g. ``path`` is a directory: name it, not the temporary file
            raise type(e)(e.errno, e.strerror, str(path)) from e
    except OSError as e:
        if e.errno in _NO_SPACE:
            raise DiskFullError(f"no space left writing '{path}' ({e.strerror})") from None
        raise
    finally:
        if tmp_path is not None and tmp_path.exists():
            tmp_path.unlink()


def staging_dir(out: Path) -> Path:
    """A new temporary sibling directory of ``out`` to build a whole zoo in before renaming it onto
    ``out``; the ones killed writers left for ``out`` are removed first."""
    out.parent.mkdir(parents=True, exist_ok=True)
    clean_orphans(out.parent, only=out.name, legacy=False)  # the user's own directory: only what we named
    return Path(tempfile.mkdtemp(prefix=_tmp_prefix(out), suffix=".tmp", dir=out.parent))


def _writer_alive(host: str | None, pid: str | None, legacy: bool) -> bool:
    """Whether the process that named a temporary may still be writing it (so: leave it alone)."""
    if host is None:  # named before writers put themselves in the name: only a killed writer left it
        return not legacy
    if host != _HOST:  # another machine's (a shared file system): nothing here can tell
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


def clean_orphans(directory: Path, only: str | None = None, legacy: bool = True) -> list[Path]:
    """Remove the temporaries (files or directories) in ``directory`` whose writer was killed;
    ``only``: just those for the file or directory of that name; ``legacy``: also those named
    without a writer (before writers named themselves). Returns what was removed."""
    removed = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for e in entries:
        m = _TMP_NAME.match(e.name)
        if m is None or (only is not None and m["name"] != only) or _writer_alive(m["host"], m["pid"], legacy):
            continue
        try:
            if e.is_dir(follow_symlinks=False):
                shutil.rmtree(e.path)
            else:
                os.unlink(e.path)
            removed.append(Path(e.path))
        except FileNotFoundError:  # another writer cleaned it first
            pass
    return removed


_CLEANED: set[str] = set()


def clean_zoo_orphans(zoo_dir: Path) -> None:
    """Before a process first writes into a zoo: remove the temporaries killed writers left in it
    (a sweep's shards, an extraction's fingerprints, results, the manifest) and beside it (an
    import's staging directory)."""
    zoo_dir = Path(zoo_dir)
    key = os.path.abspath(zoo_dir)
    if key in _CLEANED:
        return
    _CLEANED.add(key)
    for d in (zoo_dir, zoo_dir / "shards", zoo_dir / "fingerprints", zoo_dir / "results"):
        clean_orphans(d)
    clean_orphans(zoo_dir.parent, only=zoo_dir.name, legacy=False)


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


# -- integrity: checksums, reading, and the in-memory HDF5 writer ---------------------------------
# Every dataset is covered twice by xxh3-64 digests: its attribute CHECKSUM holds one per row (axis 0,
# a model in a stacked dataset, so reading some models checks just those; one for a scalar), and
# the root attribute CHECKSUMS maps every dataset's path to one digest of all its values (a read of
# every row checks that, hashing blocks as they arrive while they are still in the CPU's cache; it
# is read once per file, where an attribute read per dataset would cost ~60 us each).
CHECKSUM = "xxh3"
CHECKSUMS = "xxh3_datasets"
# Root attribute: digest of the other root attributes (format, schema version, task, CHECKSUMS, ...),
# which HDF5 keeps outside its own checksummed headers.
ATTRS_CHECKSUM = "xxh3_attrs"
# HDF5's 1.8 file format: its object headers (names, types, shapes, attributes) carry checksums that
# HDF5 verifies itself, and attributes may exceed 64 KB (the row digests of a large shard).
LIBVER = ("v108", "v110")
_VERIFY_BLOCK = 1 << 20  # bytes read, then hashed, at a time: fits the L2 cache of current x86 cores
_MAP_MIN = 4 << 20  # datasets at least this large are read through a memory map when verified (_copy_mapped)


def _canonical(a: np.ndarray) -> np.ndarray:
    """Values as hashed: C order and little-endian, whatever byte order the file declares (a flipped
    byte-order bit then changes the bytes hashed instead of going unnoticed)."""
    if a.dtype == object:
        return a
    return np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))


_SEEDS: dict[str, int] = {}


def _seed(kind: str) -> int:
    """Digests are seeded with the values' type: the same bytes read back as another type fail."""
    if kind not in _SEEDS:
        _SEEDS[kind] = xxhash.xxh3_64_intdigest(kind.encode())
    return _SEEDS[kind]


def row_digests(values: np.ndarray | Sequence[Any]) -> np.ndarray:
    """xxh3-64 digests ``uint64 [n]`` of the rows of ``values`` (``[1]`` for a scalar); strings are
    hashed as UTF-8."""
    a = _canonical(np.asarray(values))
    n = len(a) if a.ndim else 1
    if a.dtype == object:
        seed = _seed("str")
        return np.fromiter((xxhash.xxh3_64_intdigest(str(v).encode(), seed) for v in a.reshape(n)), np.uint64, n)
    seed, width = _seed(a.dtype.str), a.itemsize * (math.prod(a.shape[1:]) if a.ndim else 1)
    flat = memoryview(a.reshape(-1).view(np.uint8))  # slicing a memoryview is cheaper than a numpy row view
    return np.fromiter((xxhash.xxh3_64_intdigest(flat[o : o + width], seed) for o in range(0, n * width, width)) if width
                       else (xxhash.xxh3_64_intdigest(b"", seed) for _ in range(n)), np.uint64, n)


def digest_all(values: np.ndarray | Sequence[Any]) -> int:
    """The xxh3-64 digest of all of ``values``: of their bytes (little-endian, C order), or for
    strings of their row digests."""
    a = _canonical(np.asarray(values))
    if a.dtype == object:
        return xxhash.xxh3_64_intdigest(memoryview(row_digests(a).astype("<u8").view(np.uint8)), _seed("str"))
    return xxhash.xxh3_64_intdigest(memoryview(a.reshape(-1).view(np.uint8)), _seed(a.dtype.str))


def _attrs_digest(attrs: h5py.AttributeManager) -> int:
    def plain(v: Any) -> Any:
        v = v.tolist() if isinstance(v, (np.ndarray, np.generic)) else v
        return v.decode(errors="replace") if isinstance(v, bytes) else v

    items = sorted((k, plain(v)) for k, v in attrs.items() if k != ATTRS_CHECKSUM)
    return xxhash.xxh3_64_intdigest(json.dumps(items, default=repr).encode())


class _Writer:
    """An HDF5 file being built (``file``); :meth:`put` creates each dataset with its checksums."""

    def __init__(self, f: h5py.File):
        self.file = f
        self.digests: dict[str, int] = {}

    def put(self, g: h5py.Group, name: str, values: np.ndarray | Sequence[Any]) -> h5py.Dataset:
        values = np.asarray(values)
        ds = g.create_dataset(name, data=values, dtype=_STR if values.dtype == object else values.dtype)
        ds.attrs[CHECKSUM] = row_digests(values)
        self.digests[ds.name] = digest_all(values)
        return ds

    def seal(self) -> None:
        """Store the datasets' digests, then the digest of the root attributes."""
        self.file.attrs[CHECKSUMS] = json.dumps(self.digests)
        self.file.attrs[ATTRS_CHECKSUM] = np.uint64(_attrs_digest(self.file.attrs))


@contextmanager
def _h5_writer(path: Path, cache: bool = False) -> Iterator[_Writer]:
    """An HDF5 file built in memory, written to ``path`` (atomically, see :func:`atomic_path`) with
    one plain write when the block succeeds.

    HDF5 does not survive failing writes: a full disk made h5py print hundreds of tracebacks and
    segfault. Here it only ever writes to memory; Python writes the file, so a full disk is one
    :class:`DiskFullError` naming ``path`` and nothing is left behind.
    """
    buf = io.BytesIO()
    with h5py.File(buf, "w", libver=LIBVER) as f:
        w = _Writer(f)
        yield w
        w.seal()
    with atomic_path(path, cache) as tmp, open(tmp, "wb") as out:
        out.write(buf.getbuffer())


class _Checks:
    """Verifies the datasets of one open file against their checksums.

    ``digests``: the file's CHECKSUMS (dataset path -> digest of all its values); ``required``: its
    schema version promises checksums (a dataset without them is corrupt); ``enabled=False`` skips
    verification (to measure its cost). ``ids`` name the models of a failing row.
    """

    def __init__(self, label: str, digests: dict[str, int] | None, required: bool, enabled: bool = True):
        self.label, self.digests, self.required, self.enabled = label, digests, required, enabled
        self.ids: np.ndarray | None = None

    def whole(self, path: str) -> int | None:
        """The digest of all of dataset ``path`` (None: nothing to check against)."""
        if not self.enabled:
            return None
        d = (self.digests or {}).get(path)
        if d is None and self.required:
            raise CorruptFileError(f"{self.label} is corrupt: dataset '{path}' has no checksum")
        return d

    def rows(self, ds: h5py.Dataset, path: str) -> np.ndarray | None:
        """The per-row digests of ``ds`` (None: nothing to check against)."""
        if not self.enabled:
            return None
        try:  # the low-level attribute read: h5py's ds.attrs[...] costs ~0.2 ms
            aid = h5py.h5a.open(ds.id, CHECKSUM.encode())
        except KeyError:
            if self.required:
                raise CorruptFileError(f"{self.label} is corrupt: dataset '{path}' has no row checksums") from None
            return None
        n = ds.shape[0] if ds.shape else 1
        if aid.shape != (n,):
            raise CorruptFileError(f"{self.label} is corrupt: dataset '{path}' has {aid.shape} row checksums for {n} rows")
        stored = np.empty(n, dtype=np.uint64)
        aid.read(stored)
        return stored

    def __call__(self, ds: h5py.Dataset, values: np.ndarray, rows: np.ndarray | slice | None = None,
                 models: bool = False, path: str | None = None) -> np.ndarray:
        """``values`` as read from ``ds``, returned unchanged if they match their digests: all rows
        (``rows=None``), or row ``j`` is the file's row ``rows[j]``. ``models``: a row is a model."""
        if not self.enabled:
            return values
        path = path or ds.name
        if rows is None:
            want = self.whole(path)
            if want is not None and digest_all(values) != want:
                self.mismatch(ds, values, slice(None), models, path)
            return values
        stored = self.rows(ds, path)
        if stored is not None:
            want = stored[rows if isinstance(rows, slice) else np.asarray(rows, dtype=np.int64)]
            got = row_digests(values)
            if len(got) != len(want) or not np.array_equal(got, want):
                self.mismatch(ds, values, rows, models, path, stored)
        return values

    def mismatch(self, ds: h5py.Dataset, values: np.ndarray, rows: np.ndarray | slice, models: bool, path: str,
                 stored: np.ndarray | None = None) -> None:
        """Raise the error for ``values`` that failed their digests, naming the first bad row (and
        its model) where the row digests can tell."""
        where = ""
        try:
            stored = self.rows(ds, path) if stored is None else stored
            index = np.arange(len(stored))[rows if isinstance(rows, slice) else np.asarray(rows, dtype=np.int64)]
            got = row_digests(values)
            bad = np.flatnonzero(got != stored[index]) if len(got) == len(index) else []
            if len(bad):
                r = int(index[bad[0]])
                who = f" (model '{self.ids[r]}')" if models and self.ids is not None and r < len(self.ids) else ""
                where = f" row {r}{who}"
        except Exception:  # noqa: BLE001 - the row digests are damaged too: the dataset is still named
            pass
        raise CorruptFileError(f"{self.label} is corrupt: checksum mismatch in '{path}'{where}")


def _open_checks(f: h5py.File, label: str, fmt: str, what: str, verify: bool = True) -> _Checks:
    """Check an open file's root: its schema version (first: a newer package may check differently),
    its attributes' checksum (before the format, so that damage to it is reported as damage) and
    its format."""
    version = int(f.attrs.get("schema_version", -1))
    if version > SCHEMA_VERSION:
        raise CorruptFileError(f"{label} has schema version {version}; this basin-fingerprint reads up to "
                               f"{SCHEMA_VERSION} (upgrade the package)")
    stored = f.attrs.get(ATTRS_CHECKSUM)
    if verify and stored is not None and int(stored) != _attrs_digest(f.attrs):
        raise CorruptFileError(f"{label} is corrupt: checksum mismatch in its attributes")
    if f.attrs.get("format") != fmt:
        raise CorruptFileError(f"{label} is not a basin-fingerprint {what}")
    if verify and stored is None and version >= 2:
        raise CorruptFileError(f"{label} is corrupt: its attributes have no checksum")
    digests = json.loads(f.attrs[CHECKSUMS]) if CHECKSUMS in f.attrs else None
    if digests is not None and not (isinstance(digests, dict) and all(isinstance(v, int) for v in digests.values())):
        raise CorruptFileError(f"{label} is corrupt: its '{CHECKSUMS}' attribute is not a map of digests")
    return _Checks(label, digests, required=version >= 2, enabled=verify)


@contextmanager
def _reading(label: str) -> Iterator[None]:
    """Anything that goes wrong while parsing a file becomes a one-line :class:`CorruptFileError`
    naming it: HDF5 reports damaged metadata as OSError, RuntimeError, KeyError, ValueError,
    TypeError, ... depending on where the damage is."""
    try:
        yield
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 - every failure to parse the file is its corruption
        detail = " ".join(str(e).split())[:300]
        raise CorruptFileError(f"{label} is corrupt or truncated ({type(e).__name__}: {detail})") from None


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
    clean_zoo_orphans(zoo_dir)
    n = len(data.table["model_id"])
    with _h5_writer(path) as w:
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
        with _reading(self.label), h5py.File(self.path, "r") as f:
            self.checks = check = _open_checks(f, self.label, SHARD_FORMAT, "shard", verify)
            self.table = {k: _column_from_h5(ds) for k, ds in f["models"].items()}
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
        with _reading(self.label), h5py.File(self.path, "r") as f:
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
        with _reading(self.label), h5py.File(self.path, "r") as f:
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
        with _reading(self.label), h5py.File(self.path, "r") as f:
            g = f["checkpoints"][step_key(step)]["metrics"]
            return {k: self.checks(ds, _column_from_h5(ds), models=True) for k, ds in g.items()}

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
               pos: np.ndarray | None, check: _Checks, file: Path) -> np.ndarray | None:
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


def _read_span(ds: h5py.Dataset, path: str, span: tuple[int, int], target: np.ndarray, check: _Checks, file: Path) -> None:
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
    h = xxhash.xxh3_64(seed=_seed(target.dtype.newbyteorder("<").str))
    offset = _raw_offset(ds, target.dtype) if target.nbytes >= _MAP_MIN else None
    if offset is not None:
        _copy_mapped(file, offset, target, h, check.label)
    else:
        _read_blocks(ds, shape, lo, hi, target, max(1, _VERIFY_BLOCK // max(1, target[0].nbytes)), h)
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
            for o in range(0, n, _VERIFY_BLOCK):
                part = dst[o : o + _VERIFY_BLOCK]
                part[...] = src[o : o + _VERIFY_BLOCK]
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
    def open(cls, path: str | Path, strict: bool = True, verify: bool = True, trust_code: bool = False) -> "Zoo":
        """Open a zoo directory. ``strict=False`` skips corrupt shards (listed in ``.corrupt``);
        ``verify=False`` skips checking shard data against its checksums (see docs/zoo-format.md).

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
                sh = Shard(f, verify)
                stray = next((str(m) for m in sh.table["model_id"] if planned_in.get(str(m), f.stem) != f.stem), None)
                if stray is not None:  # e.g. one shard file copied over another
                    raise CorruptFileError(f"zoo shard '{f}' holds model '{stray}', which the manifest plans in shard "
                                           f"'{planned_in[stray]}'")
            except CorruptFileError as e:
                if strict:
                    raise
                corrupt.append((f, str(e)))
                warnings.warn(str(e), stacklevel=2)
                continue
            unplanned = next((str(m) for m in sh.table["model_id"] if str(m) not in planned_in), None)
            if unplanned is not None:  # the manifest is the damaged file (e.g. `planned` cut short)
                raise CorruptFileError(f"zoo manifest '{p / MANIFEST}' is corrupt: shard '{f.name}' holds model "
                                       f"'{unplanned}', which its 'planned' list ({len(planned_in)} models) does not have")
            shards.append(sh)
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
        return model_set_hash(self.model_ids if model_ids is None else model_ids)

    def save_fingerprint(self, key: str, values: np.ndarray, model_ids: Sequence[str], meta: dict[str, Any],
                         extra: dict[str, np.ndarray] | None = None) -> Path:
        """Store a fingerprint ``values`` ``[n_models, d]`` (features) or ``[n_models, n_models]`` (distances)."""
        path = self.path / "fingerprints" / f"{key}.h5"
        clean_zoo_orphans(self.path)
        with _h5_writer(path, cache=True) as w:
            f = w.file
            f.attrs["format"] = FINGERPRINT_FORMAT
            f.attrs["schema_version"] = SCHEMA_VERSION
            f.attrs["meta"] = json.dumps({**meta, "key": key, "model_set": self.model_set_hash(model_ids), "created": time.time()}, default=_json_default)
            w.put(f, "values", np.asarray(values, dtype=np.float32))
            w.put(f, "model_ids", np.asarray([str(m) for m in model_ids], dtype=object))
            if extra:
                g = f.create_group("extra")
                for k, v in extra.items():
                    w.put(g, k, np.asarray(v))
        return path

    def load_fingerprint(self, key: str) -> tuple[np.ndarray, list[str], dict[str, Any]] | None:
        """``(values, model_ids, meta)``, or ``None`` when not cached. A cache file that cannot be read,
        fails its checksums or does not hold one row per model id is a :class:`CorruptFileError`."""
        path = self.path / "fingerprints" / f"{key}.h5"
        if not path.exists():
            return None
        label = f"fingerprint cache '{path}'"
        with _reading(label), h5py.File(path, "r") as f:
            meta, check = _cache_header(f, path, label)
            ids = [str(m) for m in check(f["model_ids"], _column_from_h5(f["model_ids"]))]
            values = check(f["values"], f["values"][()])
            if "extra" in f:
                meta["extra"] = {k: check(ds, _column_from_h5(ds)) for k, ds in f["extra"].items()}
        _check_cache_rows(values, ids, meta, label)
        return values, ids, meta

    def list_fingerprints(self) -> list[dict[str, Any]]:
        """The metadata of every cached fingerprint, with its ``shape``."""
        out = []
        for path in sorted((self.path / "fingerprints").glob("*.h5")):
            label = f"fingerprint cache '{path}'"
            with _reading(label), h5py.File(path, "r") as f:
                meta, _ = _cache_header(f, path, label)
                meta["shape"] = list(f["values"].shape)
            out.append(meta)
        return out

    # -- analysis results ------------------------------------------------------------------------
    def save_result(self, name: str, obj: Any) -> Path:
        path = self.path / "results" / f"{name}.json"
        clean_zoo_orphans(self.path)
        write_json(path, obj)
        return path

    def load_result(self, name: str) -> Any | None:
        """A stored result (None if there is none), checked against the structure its readers rely on
        (:data:`RESULT_SCHEMAS`)."""
        path = self.path / "results" / f"{name}.json"
        if not path.exists():
            return None
        obj = read_json(path)
        problem = _mismatch(obj, RESULT_SCHEMAS.get(name, object))
        if problem:
            raise CorruptFileError(f"result file '{path}' is corrupt: {problem}")
        return obj

    def list_results(self) -> list[str]:
        return sorted(p.stem for p in (self.path / "results").glob("*.json"))


# -- the structure of JSON files and cache metadata ----------------------------------------------
_NUMBER = (int, float)
# What readers of results/<name>.json rely on (other results are free-form): a schema is a type (or
# a tuple of types), ``[item]`` for a list, or ``{key: schema}`` for an object, where a key ending
# in "?" may be absent and keys not listed are free.
RESULT_SCHEMAS: dict[str, Any] = {
    "basins": {"fingerprints": [{"fingerprint": str}], "scorecard": [{"fingerprint": str}],
               "settings?": dict, "keys?": [str], "options?": dict},
    "scorecard": {"scorecard": [{"fingerprint": str}]},
    "forecast": {"forecast": [{"fingerprint": str, "step": int, "fraction": _NUMBER}], "earliest_90?": dict},
}
CACHE_META_SCHEMA = {"key": str, "model_set": str, "extractor": str, "output?": str, "params?": dict}


def _json_type(obj: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(obj), "a number" if isinstance(obj, _NUMBER) else type(obj).__name__)


def _mismatch(obj: Any, schema: Any, where: str = "") -> str | None:
    """Where ``obj`` departs from ``schema`` (see :data:`RESULT_SCHEMAS`), as a phrase; None if it conforms."""
    here = f"'{where}'" if where else "the top level"
    if isinstance(schema, dict):
        if not isinstance(obj, dict):
            return f"{here} must be an object, found {_json_type(obj)}"
        for key, sub in schema.items():
            name = key.rstrip("?")
            if name not in obj:
                if key.endswith("?"):
                    continue
                return f"'{where + '.' if where else ''}{name}' is missing"
            problem = _mismatch(obj[name], sub, f"{where + '.' if where else ''}{name}")
            if problem:
                return problem
        return None
    if isinstance(schema, list):
        if not isinstance(obj, list):
            return f"{here} must be a list, found {_json_type(obj)}"
        for i, item in enumerate(obj):
            problem = _mismatch(item, schema[0], f"{where}[{i}]")
            if problem:
                return problem
        return None
    types = schema if isinstance(schema, tuple) else (schema,)
    if isinstance(obj, bool) and bool not in types and object not in types:  # JSON true is not a number
        return f"{here} must be {_json_type(types[0]())}, found a boolean"
    if not isinstance(obj, types):
        return f"{here} must be {_json_type(types[0]())}, found {_json_type(obj)}"
    return None


def _cache_header(f: h5py.File, path: Path, label: str) -> tuple[dict[str, Any], _Checks]:
    """A fingerprint cache's checked metadata and the checks for its datasets."""
    check = _open_checks(f, label, FINGERPRINT_FORMAT, "fingerprint cache")
    try:
        meta = json.loads(f.attrs["meta"])
    except json.JSONDecodeError as e:
        raise CorruptFileError(f"{label} is corrupt: its 'meta' is not valid JSON ({e})") from None
    problem = _mismatch(meta, CACHE_META_SCHEMA, "meta")
    if problem:
        raise CorruptFileError(f"{label} is corrupt: {problem}")
    if meta["key"] != path.stem:
        raise CorruptFileError(f"{label} is corrupt: its meta names key '{meta['key']}', not '{path.stem}'")
    return meta, check


def model_set_hash(model_ids: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(model_ids).encode()).hexdigest()[:16]


def _check_cache_rows(values: np.ndarray, ids: list[str], meta: dict[str, Any], label: str) -> None:
    """One row of values per model id (and a square matrix for distances), for the model set named in meta."""
    n = len(ids)
    if values.ndim != 2 or values.shape[0] != n or (meta.get("output") == "distances" and values.shape[1] != n):
        raise CorruptFileError(f"{label} is corrupt: its values have shape {list(values.shape)} for {n} model ids")
    if model_set_hash(ids) != meta["model_set"]:
        raise CorruptFileError(f"{label} is corrupt: its {n} model ids are not the model set its meta names")


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
PROBES_FORMAT = "basin-fingerprint/probes"


def write_probes(zoo_dir: Path, probes: dict[str, torch.Tensor]) -> Path:
    """Store named probe sets ``{name: [n_probes, *input_shape]}`` in ``ZOO/probes.h5``."""
    path = Path(zoo_dir) / PROBES
    clean_zoo_orphans(zoo_dir)
    with _h5_writer(path) as w:
        f = w.file
        f.attrs["format"] = PROBES_FORMAT
        f.attrs["schema_version"] = SCHEMA_VERSION
        for name, t in probes.items():
            w.put(f, name, t.detach().cpu().numpy())
    return path


def read_probes(zoo_dir: Path) -> dict[str, torch.Tensor]:
    path = Path(zoo_dir) / PROBES
    if not path.exists():
        return {}
    label = f"probe file '{path}'"
    with _reading(label), h5py.File(path, "r") as f:
        check = _open_checks(f, label, PROBES_FORMAT, "probe file")
        return {k: torch.from_numpy(check(ds, ds[()])) for k, ds in f.items()}


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
    if not isinstance(planned, list) or not all(isinstance(m, dict) and isinstance(m.get("model_id"), str)
                                                and isinstance(m.get("shard"), str) for m in planned):
        raise bad("'planned' must be a list of {\"model_id\", \"shard\", ...} objects with string values")
    counts = Counter(m["model_id"] for m in planned)
    if len(counts) != len(planned):
        raise bad(f"'planned' lists model '{next(m for m, c in counts.items() if c > 1)}' twice")
    shards = manifest.get("shards", [])
    if not isinstance(shards, list) or not all(isinstance(s, dict) and isinstance(s.get("name"), str) for s in shards):
        raise bad("'shards' must be a list of {\"name\", ...} objects")
    mpb = manifest.get("models_per_batch")
    if "models_per_batch" in manifest and (not isinstance(mpb, int) or isinstance(mpb, bool) or mpb <= 0):
        raise bad(f"'models_per_batch' must be a positive integer, found {mpb!r}")
    for key in ("config", "task", "family"):
        if key in manifest and not isinstance(manifest[key], dict):
            raise bad(f"'{key}' must be a JSON object")
    if manifest.get("source", "sweep") in ("sweep", "continue") and "config" not in manifest:
        raise bad("it has no 'config' (the sweep config it was trained from)")


def write_manifest(zoo_dir: Path, manifest: dict) -> None:
    manifest = {**manifest, "schema_version": SCHEMA_VERSION, "package_version": package_version()}
    clean_zoo_orphans(zoo_dir)
    write_json(Path(zoo_dir) / MANIFEST, manifest)


def completed_shards(zoo_dir: Path) -> dict[str, Path]:
    """Shard name -> path of the complete shard files that read and verify in full.

    Removes the temporaries killed writers left. A shard that cannot be read or fails a checksum
    is moved aside (to ``<shard>.h5.corrupt``, replacing an earlier one) to be trained again.
    """
    d = Path(zoo_dir) / "shards"
    if not d.exists():
        return {}
    clean_orphans(d)
    done = {}
    for f in sorted(d.glob("*.h5")):
        try:
            Shard(f).verify()
        except CorruptFileError as e:
            aside = f.with_name(f.name + ".corrupt")
            os.replace(f, aside)
            warnings.warn(f"{e}; moved aside to '{aside.name}', it will be trained again", stacklevel=2)
            continue
        done[f.stem] = f
    return done
