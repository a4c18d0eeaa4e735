"""Where a command may write: the one guard every writing command calls before anything runs.

A command's outputs must never destroy its inputs or anything that is not its own. So before a
sweep, run, select, import, report or forecast writes (or ``--overwrite`` deletes) anything,
:func:`check_output` refuses, in one line naming both paths:

* an output equal to, inside, or containing one of the command's inputs (the source zoo, the
  checkpoint directory, the config / metadata / probe file), compared as resolved real paths, so a
  symbolic link or a hard link to an input is that input;
* an output inside a zoo other than the zoo being written: a zoo's directory holds only the zoo's
  own files (``--overwrite`` of that zoo would delete whatever else is put there);
* ``--overwrite`` of anything that is not what the command itself writes: a zoo (a directory whose
  ``manifest.json`` has ``"kind": "zoo"``), a ``fingerprint run`` directory, or an empty directory;
  never a symbolic link, a file, or a directory that holds the working directory.

A floor module (``training.core``): it imports nothing above the floor, so ``training`` may call it too.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from training.core.errors import UserError
from training.core.integrity import MANIFEST

# What `fingerprint run` puts in its directory (dot-files: temporaries of atomic writes).
RUN_FILES = frozenset({"zoo", "report.html", "summary.json", "figures", "selected"})
KINDS = ("zoo", "run", "file")


def real(path: str | Path) -> Path:
    """The resolved absolute path (symbolic links followed as far as the path exists)."""
    return Path(os.path.realpath(os.path.abspath(path)))


def _shown(path: str | Path) -> str:
    """``'path'``, plus the real path when a link or ``..`` makes them differ."""
    r = real(path)
    return f"'{path}'" if Path(os.path.abspath(path)) == r else f"'{path}' (= '{r}')"


def _inside(child: Path, parent: Path) -> bool:
    return child != parent and child.is_relative_to(parent)


def _same(a: Path, b: Path) -> bool:
    if real(a) == real(b):
        return True
    try:  # a hard link, a bind mount: the same file under another name
        return os.path.samefile(a, b)
    except OSError:
        return False


def is_zoo(path: Path) -> bool:
    """A directory whose manifest says it is a zoo (unreadable manifests do not count)."""
    try:
        manifest = json.loads((Path(path) / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("kind") == "zoo"


def enclosing_zoo(path: Path) -> Path | None:
    """The nearest zoo strictly above ``path`` (by real path), if any."""
    for parent in real(path).parents:
        if is_zoo(parent):
            return parent
    return None


def _not_replaceable(out: Path, kind: str) -> str | None:
    """Why ``--overwrite`` may not delete ``out`` (None: it may)."""
    if not out.is_dir():
        return "it is a file, not a directory"
    entries = sorted(p.name for p in out.iterdir())
    if not entries:
        return None
    if out.is_symlink():  # deleting through a link would surprise; the link itself is not a zoo
        return f"it is a symbolic link (to '{real(out)}'); name the directory itself"
    cwd = real(Path.cwd())
    if real(out) == cwd or _inside(cwd, real(out)):
        return f"it holds the working directory '{cwd}'"
    if kind == "zoo":
        return None if is_zoo(out) else f"it is not a zoo (no {MANIFEST} of kind 'zoo'); only a zoo or an empty directory is replaced"
    strays = [n for n in entries if n not in RUN_FILES and not n.startswith(".")]
    zoo = out / "zoo"  # a zoo, or still empty when the run stopped before its manifest was written
    if strays or not (is_zoo(zoo) or zoo.is_dir() and not zoo.is_symlink() and not any(zoo.iterdir())):
        found = f"; it holds '{strays[0]}'" if strays else ""
        return f"it is not a `fingerprint run` directory (only zoo/, selected/, figures/, report.html and summary.json{found})"
    return None


def check_output(out: str | Path, inputs: Mapping[str, str | Path | None] | None = None, *, option: str = "--out",
                 kind: str = "zoo", overwrite: bool = False, others: Mapping[str, str | Path | None] | None = None) -> None:
    """Refuse (a :class:`UserError`) to write ``out`` where it would destroy an input or what is not ours.

    ``inputs``: ``{what: path}`` the command reads (``None`` entries are skipped), e.g.
    ``{"source zoo": zoo}``. ``kind``: ``"zoo"`` (a zoo directory), ``"run"`` (a ``fingerprint run``
    directory) or ``"file"`` (one file, replaced if it exists). ``overwrite``: the command will delete
    an existing ``out`` first. ``others``: ``{option: path}`` of the same command's other outputs,
    which must not overlap ``out`` either.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    out = Path(out)
    r_out = real(out)
    for what, path in [*(inputs or {}).items(), *((f"{k} output", v) for k, v in (others or {}).items())]:
        if path is None:
            continue
        r_in = real(path)
        relation = ("is" if _same(out, Path(path)) else "is inside" if _inside(r_out, r_in)
                    else "contains" if _inside(r_in, r_out) else None)
        if relation:
            raise UserError(f"refusing to write {option} {_shown(out)}: it {relation} the {what} {_shown(path)} "
                            "(an output may not be, contain or lie inside an input or another output)")
    zoo = enclosing_zoo(out)
    if zoo is not None:
        raise UserError(f"refusing to write {option} {_shown(out)} inside the zoo '{zoo}' (a zoo's directory holds "
                        "only the zoo's own files): write it next to the zoo")
    if kind == "file":
        if out.is_dir():
            raise UserError(f"refusing to write {option} {_shown(out)}: it is a directory, not a file")
        return
    if out.exists() and not out.is_dir():
        raise UserError(f"refusing to write {option} {_shown(out)}: it is a file, not a directory")
    if overwrite and out.exists():
        why = _not_replaceable(out, kind)
        if why:
            raise UserError(f"refusing to --overwrite {_shown(out)}: {why}")
