"""Checkpoint histories for ``fingerprint import --history``: each model's checkpoints along training.

A template relative to the import's directory names them, with a ``{model_id}`` and a ``{step}``
placeholder: ``{model_id}/step_{step}.pt`` (a directory per model), ``step_{step}/{model_id}.pt``
(a directory per step), ``{model_id}-{step}.safetensors`` (one directory). Each model's highest step
is its final checkpoint (what is fingerprinted by default, and health-checked as a plain import's
one checkpoint); the earlier ones are what ``fingerprint forecast`` and the history forest of
``fingerprint lineage`` read. Models may have different steps (the zoo's presence masks say which).
With ``--hf`` the template names ``save_pretrained`` directories, as a transformers ``Trainer`` saves
them: ``{model_id}/checkpoint-{step}``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from training.core.errors import UserError

PLACEHOLDERS = ("{model_id}", "{step}")
EXAMPLE = "'{model_id}/step_{step}.pt'"
HF_EXAMPLE = "'{model_id}/checkpoint-{step}'"  # a transformers Trainer's output_dir of each model


def template_pattern(template: str, suffixes: Sequence[str]) -> re.Pattern[str]:
    """The regular expression a ``--history`` template stands for: ``{model_id}`` any run of
    characters within one path component, ``{step}`` a run of digits; the rest literally."""
    for p in PLACEHOLDERS:
        if template.count(p) != 1:
            raise UserError(f"--history '{template}' needs {p} exactly once (e.g. {EXAMPLE}, relative to the checkpoint directory)")
    rest = template.replace(PLACEHOLDERS[0], "").replace(PLACEHOLDERS[1], "")
    if "{" in rest or "}" in rest:
        raise UserError(f"--history '{template}' has a placeholder other than {{model_id}} and {{step}} (e.g. {EXAMPLE})")
    for a, b in (PLACEHOLDERS, PLACEHOLDERS[::-1]):
        if a + b in template:  # an audit (75): run1 + 100 and run11 + 00 read as one model 'run' with steps 1100, ...
            fixed = template.replace(a + b, f"{a}_{b}")
            raise UserError(f"--history '{template}' has nothing between {a} and {b}: a model id and a step that meet "
                            f"cannot be told apart (run1 at step 100 is also run11 at step 00); put a separator "
                            f"between them, in the template and the file names (e.g. '{fixed}')")
    if Path(template).is_absolute() or ".." in Path(template).parts or "\\" in template:
        raise UserError(f"--history '{template}' must be a path relative to the checkpoint directory, with / between "
                        f"directories (e.g. {EXAMPLE})")
    if suffixes and not template.endswith(tuple(suffixes)):
        raise UserError(f"--history '{template}' must end in a checkpoint suffix ({', '.join(suffixes)})")
    if not suffixes and template.endswith((".pt", ".pth", ".bin", ".safetensors", "/")):
        raise UserError(f"--history '{template}' with --hf names save_pretrained directories, not files (e.g. "
                        f"{HF_EXAMPLE}, relative to the model directory)")
    parts = re.split(r"(\{model_id\}|\{step\})", template)
    return re.compile("".join("(?P<model_id>[^/]+?)" if p == PLACEHOLDERS[0] else "(?P<step>[0-9]+)" if p == PLACEHOLDERS[1]
                              else re.escape(p) for p in parts))


def find_history(src: Path, template: str, suffixes: Sequence[str]) -> tuple[dict[str, dict[int, Path]], list[str]]:
    """``({model_id: {step: file}}, unmatched)``: every checkpoint file under ``src`` the template
    matches, and the relative paths of those it does not (a note: they are not imported). Two files
    of one model at one step (``step_10`` and ``step_010``) are refused, naming both. No ``suffixes``
    (``import --hf``): the checkpoints are ``save_pretrained`` directories, those holding a
    ``config.json`` (a Trainer's ``checkpoint-500``)."""
    pattern = template_pattern(template, suffixes)
    found: dict[str, dict[int, Path]] = {}
    unmatched: list[str] = []
    candidates = (sorted(p for p in Path(src).rglob("*") if p.suffix in suffixes and p.is_file()) if suffixes else
                  sorted(p.parent for p in Path(src).rglob("config.json") if p.is_file() and p.parent != Path(src)))
    for path in candidates:
        rel = path.relative_to(src).as_posix()
        m = pattern.fullmatch(rel)
        if m is None:
            unmatched.append(rel)
            continue
        mid, step = m["model_id"], int(m["step"])
        if not mid.strip() or not mid.isprintable():
            raise UserError(f"checkpoint '{path}' gives model id {mid!r} under --history '{template}', which cannot be a "
                            "model id (empty or with a control character); rename it")
        prev = found.setdefault(mid, {}).get(step)
        if prev is not None:
            raise UserError(f"checkpoints '{prev}' and '{path}' are both model '{mid}' at step {step} under --history "
                            f"'{template}'; remove one")
        found[mid][step] = path
    if not found:
        held = (f"; it holds e.g. '{unmatched[0]}'" if unmatched else f" (it holds no {', '.join('*' + s for s in suffixes)} file)"
                if suffixes else " (it holds no directory with a config.json)")
        raise UserError(f"no checkpoint under '{src}' matches --history '{template}'{held}")
    return dict(sorted(found.items())), unmatched


def unmatched_note(unmatched: list[str], template: str) -> str:
    """One line naming checkpoint files the template left out (say, a ``final.pt`` beside ``step_N.pt``)."""
    if not unmatched:
        return ""
    more = f" and {len(unmatched) - 1} more" if len(unmatched) > 1 else ""
    return (f"{len(unmatched)} checkpoint file{'s' if len(unmatched) > 1 else ''} under the directory match{'' if len(unmatched) > 1 else 'es'} "
            f"no --history '{template}' and {'are' if len(unmatched) > 1 else 'is'} not imported ('{unmatched[0]}'{more}): "
            "a final checkpoint needs its step in the name too")


def common_end(finals: Sequence[int]) -> int:
    """The most common final step (of ties the latest): the forecast's and a selection's fractions are of it,
    and the import names the models that end elsewhere (:func:`short_runs_note`)."""
    ends, count = np.unique(np.asarray(finals), return_counts=True)
    return int(ends[count == count.max()].max())


def history_naming(history: str | None, plain: str) -> str:
    """What names an imported model, for a metadata row that names none: ``plain`` (a file stem, a model
    directory), or the ``{model_id}`` of a ``--history`` template."""
    return plain if history is None else f"the {{model_id}} of --history '{history}'"


def short_runs_note(ids: Sequence[str], final_steps: Sequence[int]) -> str:
    """One line naming the models whose last checkpoint is not at the most common last step, else ``""``:
    a lost final file reads as a shorter run (an outside audit, 75: only ``forecast`` said so), and each
    model is fingerprinted at its own last step."""
    if len(set(final_steps)) < 2:
        return ""
    common = common_end(final_steps)
    odd = [f"'{m}' ({s})" for m, s in zip(ids, final_steps) if s != common]
    more = f" and {len(odd) - 3} more" if len(odd) > 3 else ""
    return (f"{len(odd)} of {len(ids)} models end at another step than the most common end, {common}: {', '.join(odd[:3])}"
            f"{more}; each is fingerprinted at its own last step (a run of another length, or a final checkpoint file missing?)")


def stack_history(finals: Sequence[dict[str, torch.Tensor]], final_steps: Sequence[int], earlier: Sequence[dict[int, Path]],
                  load: Callable[[Path], dict[str, torch.Tensor]]) -> tuple[dict[int, dict[str, torch.Tensor]], dict[int, np.ndarray]]:
    """One shard's checkpoints ``{step: {name: [k, ...]}}`` and presence masks ``{step: bool [k]}``:
    each model's final state dict at its final step, its earlier ones read with ``load`` (zeros where
    a model has no checkpoint at a step; the mask says so)."""
    k = len(finals)
    ckpts: dict[int, dict[str, torch.Tensor]] = {}
    present: dict[int, np.ndarray] = {}
    for s in sorted(set(final_steps) | {s for h in earlier for s in h}):
        rows = [finals[j] if final_steps[j] == s else load(earlier[j][s]) if s in earlier[j] else None for j in range(k)]
        present[s] = np.asarray([r is not None for r in rows])
        ckpts[s] = {n: torch.stack([(r[n] if r is not None else torch.zeros(t.shape)).float() for r in rows])
                    for n, t in finals[0].items()}
    return ckpts, present
