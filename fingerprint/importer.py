"""Bring your own models: build a zoo from checkpoints (or modules) trained elsewhere.

``import_checkpoints`` reads a directory of ``*.safetensors`` / ``*.pt`` / ``*.pth`` state dicts
(torch files strictly with ``weights_only=True``: a pickle that would run code is refused), checks
every tensor against the user's architecture (``module:factory``), optionally joins a metadata CSV
(lineage, labels to score against, free columns) and probe sets, and writes a zoo. Everything is
validated before anything is written, and the zoo is built in a temporary directory that is renamed
into place only when complete. The checks live in :mod:`fingerprint.import_checks`; importing the
user's code in :mod:`fingerprint.usercode` (``resolve``, ``resolve_factory`` and ``build_template``
are re-exported here for callers of the old names). Longer than ~400 lines: the one flow from files to
a zoo (checkpoints, their history, metadata, probes, labelled data), each refusal where its input is read.
"""

from __future__ import annotations

import atexit
import copy
import math
import os
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fingerprint import model_health
from fingerprint.declared import check_declared
from fingerprint.import_checks import (
    _check_columns,
    _check_forward,
    check_against,
    check_probes,
    load_data,
    load_probes,
    output_width,
    read_checkpoint,
    read_metadata,
    strip_wrapper_prefix,
)
from fingerprint.import_history import (
    find_history,
    history_naming,
    short_runs_note,
    stack_history,
    unmatched_note,
)
from fingerprint.import_notes import (
    duplicates_note,
    format_note,
    forward_notes,
    logits_note,
    shared_order_note,
    short_reason,
    skipped_note,
    weights_digest,
)
from fingerprint.tables import check_parents
from fingerprint.usercode import (
    TRUSTED_FACTORIES,
    build_template,
    factory_dir,
    resolve,
    resolve_factory,
)
from training.core import store as zoo_io
from training.core.errors import UserError
from training.core.outputs import check_output

CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth")
SHARD_SIZE = 256
SHARD_FLOATS = 1 << 26  # ... and at most this many weights a shard (256 MB of float32): big models, fewer a shard

__all__ = ["CHECKPOINT_SUFFIXES", "SHARD_SIZE", "TRUSTED_FACTORIES", "build_template", "factory_dir", "import_checkpoints",
           "load_probes", "read_metadata", "resolve", "resolve_factory", "write_imported_zoo", "zoo_from_modules"]


def check_unique_ids(model_ids: list[str], files: Sequence[Path] = ()) -> None:
    """Refuse two checkpoints with one model id (a file stem, or a directory name with --hf), naming both files."""
    seen: dict[str, int] = {}
    for i, m in enumerate(model_ids):
        if m in seen:
            if not files:  # Zoo.from_modules' model_ids (outside audit 117: the message spoke of files and --hf)
                raise UserError(f"model id '{m}' is given twice (models {seen[m]} and {i} of model_ids): each model needs "
                                "its own")
            raise UserError(f"two checkpoints map to model id '{m}' ({files[seen[m]].name}, {files[i].name}) (ids are "
                            "file stems, or directory names with --hf; rename one)")
        seen[m] = i


def read_checked(path: Path, expected: dict[str, torch.Tensor], state_key: str | None = None
                 ) -> tuple[dict[str, torch.Tensor], str | None, str]:
    """``(state_dict, key, prefix)`` of one checkpoint file, read and checked against the architecture:
    the state dict under a training checkpoint's ``key`` (:func:`read_checkpoint`), a wrapper's
    ``prefix`` stripped (:func:`strip_wrapper_prefix`), every key, shape and value checked
    (:func:`check_against`), in the architecture's key order. A final checkpoint and every earlier one
    of ``import --history`` are read this way."""
    sd, key = read_checkpoint(path, state_key)
    sd, prefix = strip_wrapper_prefix(sd, expected)
    check_against(sd, expected, path)
    return {k: sd[k] for k in expected}, key, prefix


class ReadAgain(Sequence):
    """Checkpoints read from their ``paths`` by ``read`` when asked for, a slice at a time:
    ``fingerprint import`` checks every file once and writes a shard at a time from this, so memory
    holds a shard's weights, not the population's."""

    def __init__(self, paths: Sequence[Path], read: Callable[[Path], dict[str, torch.Tensor]]):
        self.paths, self.read = list(paths), read

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i):  # an index: one state dict; a slice: a list of them
        return [self.read(p) for p in self.paths[i]] if isinstance(i, slice) else self.read(self.paths[i])


def write_imported_zoo(out: Path, model_ids: list[str], state_dicts: list[dict[str, torch.Tensor]],
                       family: dict[str, Any], metadata: dict[str, np.ndarray] | None, probes: dict[str, torch.Tensor],
                       source: str, overwrite: bool = False, data: tuple[torch.Tensor, torch.Tensor, str] | None = None,
                       history: tuple[list[int], list[dict[int, Path]], Callable] | None = None,
                       refused: list[dict[str, str]] | None = None) -> Path:
    """Write the zoo into a temporary sibling directory, then rename it onto ``out``. ``data``: the
    checked ``(x, y, loss)`` of :func:`~fingerprint.import_checks.load_data`, stored in ``data.h5``.
    ``history``: ``(final_steps, earlier, load)``, each model's final step, its earlier checkpoint files
    by step and their reader (:mod:`fingerprint.import_history`); without it every model is one
    checkpoint at step 0. ``refused``: the checkpoints ``--skip-bad`` left out, ``{"model", "reason"}``
    each, recorded in the manifest so that the report can name them."""
    out = Path(out)
    check_output(out, overwrite=overwrite)  # --overwrite replaces only a zoo (the caller checked its inputs)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise UserError(f"output '{out}' already exists; pass --overwrite to replace it")
    check_unique_ids(model_ids)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = zoo_io.staging_dir(out)  # named after this process, so a later import can remove it if it is killed
    try:
        n = len(model_ids)
        # with histories, a shard holds about SHARD_SIZE checkpoints in memory, as without
        size = SHARD_SIZE if history is None else max(1, SHARD_SIZE // max(len(h) + 1 for h in history[1]))
        size = min(size, max(1, SHARD_FLOATS // max(1, int(family.get("n_params") or 1))))
        shards, planned = [], []
        for s0 in range(0, n, size):
            ids = model_ids[s0 : s0 + size]
            sds = state_dicts[s0 : s0 + size]
            k = len(ids)
            table: dict[str, Any] = {
                "model_id": ids, "kind": ["imported"] * k, "group": [""] * k, "task": [""] * k,
                "arch": [str(family.get("arch", "module"))] * k,
                "init_seed": np.full(k, -1, np.int64), "data_seed": np.full(k, -1, np.int64), "parent_id": [""] * k,
                "spawn_step": np.full(k, -1, np.int64), "variant": np.zeros(k, np.int64), "final_step": np.zeros(k, np.int64),
                "diverged": np.zeros(k, bool), "diverged_step": np.full(k, -1, np.int64),
            }
            for c, v in (metadata or {}).items():
                table[c] = v[s0 : s0 + size]
            if history is None:
                ckpts, present = {0: {name: torch.stack([sd[name].float() for sd in sds]) for name in sds[0]}}, None
            else:
                table["final_step"] = np.asarray(history[0][s0 : s0 + size], np.int64)
                ckpts, present = stack_history(sds, history[0][s0 : s0 + size], history[1][s0 : s0 + size], history[2])
            name = f"import-{s0 // size:04d}"
            zoo_io.write_shard(tmp, zoo_io.ShardData(shard=name, table=table, checkpoints=ckpts, present=present,
                                                     attrs={"family": family, "kind": "imported"}))
            shards.append({"name": name, "phase": 0, "n_models": k})
            planned += [{"model_id": m, "shard": name, "kind": "imported"} for m in ids]
        if probes:
            zoo_io.write_probes(tmp, probes)
        if data is not None:
            zoo_io.write_data(tmp, *data)
        zoo_io.write_manifest(tmp, {
            "kind": "zoo", "source": source, "created": time.time(), "config": {},
            "task": {"name": None, "params": {}}, "family": family,
            "planned": planned, "shards": shards, "models_per_batch": size, **({"refused": refused} if refused else {}),
        })
        zoo_io.publish_mode(tmp)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out


def import_checkpoints(src: str | Path, arch: str, out: str | Path, metadata: str | Path | None = None,
                       probes: str | Path | None = None, layers: Sequence[str] = (), overwrite: bool = False,
                       on_file: Callable[[Path], None] | None = None, strict: bool = False,
                       privileged_probes: Sequence[str] = (), data: str | None = None, state_key: str | None = None,
                       on_note: Callable[[str], None] | None = None, skip_bad: bool = False, history: str | None = None) -> Path:
    """``fingerprint import``: a directory of checkpoints + ``module:factory`` -> a zoo.

    ``strict`` refuses a metadata CSV that does not cover every checkpoint (else a warning).
    ``data`` (``module:function`` returning ``(x, y)``) gives the zoo labelled data, so that losses,
    loss gradients and ``lmc-barrier`` work on it. A training checkpoint's state_dict is read from
    the top-level key ``state_key`` (default: ``state_dict``, else the only state_dict it holds), and
    a wrapper's key prefix (``module.``, ``_orig_mod.``) is stripped when every key carries it and
    the rest match exactly (:func:`~fingerprint.import_checks.read_checkpoint`,
    :func:`~fingerprint.import_checks.strip_wrapper_prefix`); ``on_note`` gets one line saying so
    (default: a warning).

    Every checkpoint that passes those checks runs the first inputs of each probe set (else of
    ``data``) (:func:`fingerprint.model_health.run_probes`): NaN/inf outputs refuse the model by
    name; a largest weight or output far above the population's is a note (a warning). Refused
    checkpoints are all named in one :class:`UserError`; with ``skip_bad`` the others are imported,
    the refused ones (and their metadata rows) left out, and one warning (``warnings.warn``, as the
    outlier note) names them with their reasons (docs/import.md, "Diverged models and --skip-bad").

    ``history`` (a template such as ``{model_id}/step_{step}.pt`` under ``src``) imports each model's
    checkpoints along training, its highest step the final one (:mod:`fingerprint.import_history`;
    docs/import.md, "Checkpoint histories"); every earlier checkpoint is read and checked as well.
    """
    src = Path(src)
    if not src.is_dir():
        raise UserError(f"checkpoint directory '{src}' " + ("is a file: give the directory that holds the checkpoints"
                                                            if src.exists() else "does not exist"))
    earlier: list[dict[int, Path]] | None = None  # with --history: each model's checkpoints before its final one
    if history is None:
        files = sorted(p for p in src.iterdir() if p.suffix in CHECKPOINT_SUFFIXES)
        if not files:
            raise UserError(f"no checkpoints in '{src}' (looked for {', '.join('*' + s for s in CHECKPOINT_SUFFIXES)})")
        ids = [model_id_of(f) for f in files]
        check_unique_ids(ids, files)  # before anything is read: the other checks would count the files as models
    else:
        found, unmatched = find_history(src, history, CHECKPOINT_SUFFIXES)
        ids, files = list(found), [h[max(h)] for h in found.values()]
        final_steps, earlier = [max(h) for h in found.values()], [{s: p for s, p in h.items() if s < max(h)} for h in found.values()]
    meta = read_metadata(Path(metadata), ids, strict, history_naming(history, "file stem")) if metadata else None  # before the slow part
    check_parents(meta, ids, metadata)
    factory = resolve(arch, "architecture factory")
    TRUSTED_FACTORIES.add(arch)  # the user named it: reading the zoo in this process may build it again
    module_file = getattr(sys.modules.get(arch.partition(":")[0]), "__file__", None)
    probe_file = Path(probes) if probes is not None and Path(probes).exists() else None
    # before any checkpoint is read or anything deleted: --out may not be, hold or sit in what is read
    check_output(Path(out), {"checkpoint directory": src, "metadata file": metadata, "probe file": probe_file,
                             "architecture module": module_file}, overwrite=overwrite)
    template = build_template(factory, arch)
    expected = template.state_dict()
    layers = list(dict.fromkeys(layers))
    probe_sets = load_probes(probes)
    try:
        n_out = _check_forward(template, probe_sets, layers, arch)
    except UserError as probe_error:  # checkpoints of another architecture are the mistake to name first (audit 103)
        if str(probe_error).startswith("probe set "):  # (not an unknown --layers name: review 104)
            try:
                read_checked(files[0], expected, state_key)
            except UserError as e:
                raise UserError(f"{e} (nor do the probes run through '{arch}': is it the checkpoints' architecture?)") from None
        raise probe_error from None
    labelled = load_data(data, template, arch, _input_shape(probe_sets))
    inputs = dict(probe_sets) if probe_sets else ({"data": labelled[0]} if labelled is not None else {})
    # each checkpoint is checked, run and hashed as it is read, then let go: written, it is read again a shard at
    # a time (an outside audit, 72: 16 models of 8.5M parameters, all held at once, peaked at 2.3 GB)
    digests: list[str] = []
    healths: list[model_health.Health] = []
    kept: list[int] = []  # indices into files / ids of the checkpoints that passed
    unwrapped: dict[str, int] = {}
    stripped: dict[str, int] = {}
    bad: list[tuple[int, str, str]] = []  # (index, message, short reason): every refused checkpoint named at once
    for i, f in enumerate(files):
        at = f  # the file being read: a refusal names it
        try:
            sd, key, prefix = read_checked(f, expected, state_key)
            for at in (earlier[i].values() if earlier else ()):  # each read again when written: a shard's worth in memory
                read_checked(at, expected, state_key)
        except UserError as e:
            bad.append((i, str(e), short_reason(str(e), at) if at == f else f"{at.relative_to(src)} {short_reason(str(e), at)}"))
            continue
        healths.append(model_health.run_probes(template, [sd], inputs))
        if not kept:  # the module's declared symmetries, tried on the first model that passed (audit 112)
            check_declared(template, sd, inputs, arch)
        digests.append(weights_digest(sd))
        del sd
        kept.append(i)
        if key is not None:
            unwrapped[key] = unwrapped.get(key, 0) + 1
        if prefix:
            stripped[prefix] = stripped.get(prefix, 0) + 1
        if on_file:
            on_file(f)
    health = model_health.joined(healths)
    for j, why in sorted(health.nonfinite.items()):
        bad.append((kept[j], model_health.refusal(ids[kept[j]], health, j), why.split(":")[0]))
    bad.sort()
    shown = [f.name for f in files] if earlier is None else list(ids)  # with --history a file's name is a step
    if bad and (not skip_bad or len(bad) == len(files)):
        more = bad[1:]
        names = ", ".join(shown[i] for i, _, _ in more[:3]) + (", ..." if len(more) > 3 else "")
        hint = ("every checkpoint was refused" if len(bad) == len(files) else
                f"or pass --skip-bad to import the other {len(files) - len(bad)} (their CSV rows are then ignored)")
        raise UserError(bad[0][1] + (f" (and {len(more)} more checkpoint{'s' if len(more) > 1 else ''} refused: {names})"
                                     if more else "") + f"; {hint}")
    outlier = model_health.outlier_note([ids[i] for i in kept], health)
    n_read = len(kept)  # the checkpoints read (before --skip-bad drops those whose outputs are not finite)
    if bad:  # skip_bad: leave the refused models (and their metadata rows) out
        drop = {i for i, _, _ in bad}
        good = [j for j, i in enumerate(kept) if i not in drop]
        digests = [digests[j] for j in good]
        kept = [kept[j] for j in good]
        meta = {c: v[kept] for c, v in meta.items()} if meta else meta
        ids = [ids[i] for i in kept]
    if earlier is not None:
        final_steps, earlier = [final_steps[i] for i in kept], [earlier[i] for i in kept]
    skipped = skipped_note([(shown[i], why) for i, _, why in bad], len(files), "checkpoints" if earlier is None else "models")
    note = "\n".join(n for n in (format_note(unwrapped, stripped, n_read), duplicates_note(ids, digests),  # a line each
                                 shared_order_note(meta), logits_note(n_out, labelled), *forward_notes(template, probe_sets),
                                 *((unmatched_note(unmatched, history),
                                 short_runs_note(ids, final_steps)) if history else ())) if n)
    family = {"arch": "module", "factory": arch, "layers": layers, "input_shape": _input_shape(probe_sets, labelled) or [],
              "n_out": _n_out(n_out, template, labelled), "privileged_probes": privileged_sets(privileged_probes, probe_sets),
              "n_params": int(sum(math.prod(t.shape) for t in expected.values())), "factory_dir": factory_dir(arch),
              **_data_spec(labelled, data)}
    read = lambda p: read_checked(p, expected, state_key)[0]  # noqa: E731 - each file again, a shard at a time
    path = write_imported_zoo(Path(out), ids, ReadAgain([files[i] for i in kept], read), family, meta, probe_sets, "import",
                              overwrite, labelled, None if earlier is None else (final_steps, earlier, read),
                              [{"model": str(shown[i]), "reason": why} for i, _, why in bad])
    for w in (skipped, outlier):  # warnings: the CLI prints each as one 'warning: ...' line
        if w:
            warnings.warn(w, stacklevel=2)
    if note:
        (on_note or (lambda m: warnings.warn(m, stacklevel=3)))(note)
    return path


def _input_shape(probe_sets: dict[str, torch.Tensor], labelled: Any = None) -> list[int] | None:
    """The models' input shape: the probe sets', else the labelled data's (``None`` before data is read)."""
    if probe_sets:
        return list(next(iter(probe_sets.values())).shape[1:])
    return list(labelled[0].shape[1:]) if labelled is not None else None


def _n_out(n_out: int, template: nn.Module, labelled: Any) -> int:
    """Outputs per input: from the probes' forward pass, else from the data's."""
    if n_out >= 0 or labelled is None:
        return n_out
    with torch.no_grad():
        return output_width(template.eval()(labelled[0][:2]), "module")


def _data_spec(labelled: Any, source: Any) -> dict[str, Any]:
    """The manifest's note on ``data.h5``: ``{"data": {"n", "loss", "source"}}``, or nothing."""
    if labelled is None:
        return {}
    return {"data": {"n": int(len(labelled[0])), "loss": labelled[2], "source": source if isinstance(source, str) else "in memory"}}


def model_id_of(path: Path) -> str:
    """A checkpoint's model id (its file stem), which the zoo stores as UTF-8 and prints in one-line messages."""
    try:
        path.name.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes in the name come back as surrogates
        raise UserError(f"checkpoint file name {os.fsencode(path.name)!r} in '{path.parent}' is not valid UTF-8; "
                        "rename it (model ids are file stems)") from None
    if not path.stem.isprintable() or not path.stem.strip():
        raise UserError(f"checkpoint file name {path.name!r} in '{path.parent}' cannot be a model id (empty or with a "
                        "control character); rename it")
    return path.stem


def privileged_sets(names: Sequence[str], probe_sets: dict[str, Any]) -> list[str]:
    """The probe sets declared as built from the ground truth (checked to be among ``probe_sets``)."""
    names = list(dict.fromkeys(names))
    bad = next((n for n in names if n not in probe_sets), None)
    if bad is not None:
        raise UserError(f"privileged probe set '{bad}' is not among the probe sets (valid: {', '.join(probe_sets) or '(none)'})")
    return names


def zoo_from_modules(modules: Sequence[nn.Module], out: str | Path | None = None, metadata: dict[str, Sequence[Any]] | None = None,
                     model_ids: Sequence[str] | None = None, probes: dict[str, torch.Tensor] | None = None,
                     layers: Sequence[str] = (), factory: str | Callable[[], nn.Module] | None = None, overwrite: bool = False,
                     privileged_probes: Sequence[str] = (), data: Any = None):
    """``Zoo.from_modules``: a list of same-architecture modules -> an opened :class:`~fingerprint.Zoo`."""
    if not modules:
        raise UserError("Zoo.from_modules needs at least one module")
    ids = list(model_ids) if model_ids is not None else [f"m{i}" for i in range(len(modules))]
    if len(ids) != len(modules):
        raise UserError(f"{len(ids)} model_ids for {len(modules)} modules")
    odd = next((m for m in ids if not isinstance(m, str) or not m.strip() or not m.isprintable()), None)
    if odd is not None or any(not isinstance(m, str) for m in ids):
        raise UserError(f"model id {odd!r} cannot be a model id: ids are non-empty printable strings")
    template = copy.deepcopy(modules[0]).cpu().eval()
    cast = sorted(set().union(*(_not_float32(m) for m in modules)))
    if cast:  # as `fingerprint import` reads float16 / bfloat16 / float64 checkpoints: the models run in float32
        template = template.float()
        warnings.warn(f"Zoo.from_modules: the modules' {', '.join(cast)} weights are stored and run as float32 (as "
                      "`fingerprint import` does); probes are float32 too", stacklevel=3)
    expected = template.state_dict()
    sds = []
    for mid, m in zip(ids, modules):
        sd = {k: _as_float32(v.detach().cpu()) for k, v in m.state_dict().items()}
        check_against(sd, expected, Path(f"<module {mid}>"))
        sds.append(sd)
    meta = None
    if metadata:
        meta = {}
        _check_columns("Zoo.from_modules metadata", ["model_id", *metadata])
        for c, v in metadata.items():
            if len(v) != len(ids):
                raise UserError(f"metadata column '{c}' has {len(v)} values for {len(ids)} modules")
            meta[c] = np.asarray(list(v), dtype=object) if any(isinstance(x, str) for x in v) else np.asarray(list(v))
    probe_sets = check_probes(probes, "Zoo.from_modules probes") if probes else {}
    if isinstance(factory, str):
        TRUSTED_FACTORIES.add(factory)  # the user named it for these modules
    label = factory if isinstance(factory, str) else f"{type(template).__module__}:{type(template).__qualname__}"
    layers = list(dict.fromkeys(layers))
    n_out = _check_forward(template, probe_sets, layers, label)
    labelled = load_data(data, template, label, _input_shape(probe_sets))
    family = {"arch": "module", "factory": factory if isinstance(factory, str) else None, "class": label, "layers": layers,
              "input_shape": _input_shape(probe_sets, labelled) or [], "n_out": _n_out(n_out, template, labelled),
              "privileged_probes": privileged_sets(privileged_probes, probe_sets), **_data_spec(labelled, data)}
    if out is None:  # a scratch zoo for this session: removed when the interpreter exits
        target = Path(tempfile.mkdtemp(prefix="zoo-"))
        atexit.register(shutil.rmtree, target, ignore_errors=True)
    else:
        target = Path(out)
    write_imported_zoo(target, ids, sds, family, meta, probe_sets, "modules", overwrite or out is None, labelled)
    # the notes `fingerprint import` prints that flag a likely problem, as warnings: copies of one model, children
    # without their data order, positions and attention in the forward (not the outputs read as logits: the
    # docstring says how data= makes them a regression's, and a warning on every classifier would be noise)
    for note in (duplicates_note(ids, [weights_digest(sd) for sd in sds]), shared_order_note(meta),
                 *forward_notes(template, probe_sets)):
        if note:
            warnings.warn(f"Zoo.from_modules: {note}", stacklevel=3)
    z = zoo_io.Zoo.open(target)
    z.module_factory = factory if callable(factory) else (lambda: copy.deepcopy(template))
    return z


def _not_float32(module: nn.Module) -> set[str]:
    """The floating dtypes other than float32 among ``module``'s parameters and buffers (``{"float16"}``)."""
    return {str(t.dtype).replace("torch.", "") for t in [*module.parameters(), *module.buffers()]
            if t.is_floating_point() and t.dtype != torch.float32}


def _as_float32(t: torch.Tensor) -> torch.Tensor:
    """A floating tensor as float32 (an integer buffer, a norm's step counter, as it is)."""
    return t.float() if t.is_floating_point() and t.dtype != torch.float32 else t
