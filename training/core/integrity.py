"""Integrity of zoo files: xxh3 row and dataset digests, the in-memory HDF5 writer, checked reads.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import xxhash

from training.core.errors import CorruptFileError, UserError
from training.core.files import atomic_path

SCHEMA_VERSION = 3

# Model-table columns whose meaning changed at a schema version, per task: a zoo written before
# that version holds the earlier meaning (docs/zoo-format.md, "Versions"). Opening one warns.
CHANGED_COLUMNS: dict[int, dict[str, tuple[tuple[str, ...], str]]] = {
    3: {"modadd": (("deep_label", "gradient_symmetricity", "distance_irrelevance"),
                   "the clock/pizza diagnostics follow Zhong et al. (2023): numpy's std, a random output class")},
}
SHARD_FORMAT = "basin-fingerprint/zoo-shard"
FINGERPRINT_FORMAT = "basin-fingerprint/fingerprint"
MANIFEST = "manifest.json"
_STR = h5py.string_dtype("utf-8")


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
VERIFY_BLOCK = 1 << 20  # bytes read, then hashed, at a time: fits the L2 cache of current x86 cores
MAP_MIN = 4 << 20  # datasets at least this large are read through a memory map when verified (_copy_mapped)


def _canonical(a: np.ndarray) -> np.ndarray:
    """Values as hashed: C order and little-endian, whatever byte order the file declares (a flipped
    byte-order bit then changes the bytes hashed instead of going unnoticed)."""
    if a.dtype == object:
        return a
    return np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))


_SEEDS: dict[str, int] = {}


def digest_seed(kind: str) -> int:
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
        seed = digest_seed("str")
        return np.fromiter((xxhash.xxh3_64_intdigest(str(v).encode(), seed) for v in a.reshape(n)), np.uint64, n)
    seed, width = digest_seed(a.dtype.str), a.itemsize * (math.prod(a.shape[1:]) if a.ndim else 1)
    flat = memoryview(a.reshape(-1).view(np.uint8))  # slicing a memoryview is cheaper than a numpy row view
    return np.fromiter((xxhash.xxh3_64_intdigest(flat[o : o + width], seed) for o in range(0, n * width, width)) if width
                       else (xxhash.xxh3_64_intdigest(b"", seed) for _ in range(n)), np.uint64, n)


def digest_all(values: np.ndarray | Sequence[Any]) -> int:
    """The xxh3-64 digest of all of ``values``: of their bytes (little-endian, C order), or for
    strings of their row digests."""
    a = _canonical(np.asarray(values))
    if a.dtype == object:
        return xxhash.xxh3_64_intdigest(memoryview(row_digests(a).astype("<u8").view(np.uint8)), digest_seed("str"))
    return xxhash.xxh3_64_intdigest(memoryview(a.reshape(-1).view(np.uint8)), digest_seed(a.dtype.str))


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
def h5_writer(path: Path, cache: bool = False) -> Iterator[_Writer]:
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


class Checks:
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


def open_checks(f: h5py.File, label: str, fmt: str, what: str, verify: bool = True) -> Checks:
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
    return Checks(label, digests, required=version >= 2, enabled=verify)


@contextmanager
def reading(label: str) -> Iterator[None]:
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
