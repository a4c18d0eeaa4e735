"""Files written whole or not at all: atomic renames, orphan clean-up, JSON.

Part of the zoo store (``training.core``), the floor every other package stands on.
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from training.core.errors import CorruptFileError, DiskFullError, UserError


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
    """Write ``obj`` as standard JSON: a NaN or infinite number (an interval that could not be
    computed, e.g. with fewer than 4 families) is written as ``null``, which every JSON reader
    accepts, instead of the ``NaN`` token Python would write and strict readers reject."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(finite_or_null(obj), indent=2, default=json_default, allow_nan=False) + "\n")


def finite_or_null(o: Any) -> Any:
    """``o`` with every non-finite float (Python's or numpy's, in dicts, lists, tuples and arrays)
    replaced by ``None``; everything else unchanged."""
    if isinstance(o, (float, np.floating)):
        return float(o) if math.isfinite(o) else None
    if isinstance(o, dict):
        return {k: finite_or_null(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [finite_or_null(v) for v in o]
    if isinstance(o, np.ndarray) and o.dtype.kind == "f":
        return finite_or_null(o.tolist())
    return o


def json_default(o: Any) -> Any:
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


