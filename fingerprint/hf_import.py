"""``fingerprint import SRC --hf``: a directory of Hugging Face ``save_pretrained`` causal LMs -> a zoo.

``SRC`` holds one subdirectory per model (``config.json``, ``model.safetensors`` or its shards, the
tokenizer's files); model ids are the subdirectory names, which ``--metadata`` joins on. All
models share one architecture (their ``config.json`` agree on everything but bookkeeping keys) and
one tokenizer. Prompt files (one prompt a line) are tokenized with that tokenizer and left-padded
to one length with its pad id, and stored as probe sets; so is ``anomalous_tokens``: generic rare
tokens, each repeated over the whole prompt (embedding rows the tokenizer never produces, then the
tokenizer's last-learned, rarest, ordinary tokens). Weights are read from safetensors (a
``pytorch_model.bin`` only with ``weights_only=True``), checked against the architecture and
stored as float32. Nothing is written before everything is checked; the zoo stores the config as
data (see :mod:`fingerprint.hf_family` for how its models run, and the trust rule).
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from fingerprint.extractors.behavioural import RARE_TOKENS
from fingerprint.hf_family import (
    READOUTS,
    HFFamily,
    build_config,
    build_model,
    require_transformers,
)
from fingerprint.import_checks import check_name, load_state_dict, read_metadata
from fingerprint.import_history import (
    find_history,
    history_naming,
    short_runs_note,
    unmatched_note,
)
from fingerprint.import_notes import shared_order_note
from fingerprint.importer import ReadAgain, privileged_sets, write_imported_zoo
from fingerprint.tables import check_parents
from training.core.errors import UserError
from training.core.outputs import check_output

RARE_SET = RARE_TOKENS  # the anomalous-inputs extractor reads its token rows from this probe set
N_RARE = 64
NO_PROMPT_T = 8  # the length of the rare-token rows when no prompts are given
# config.json keys that say how a checkpoint was saved or generates, not what the network computes
BOOKKEEPING = {"_name_or_path", "transformers_version", "torch_dtype", "dtype", "architectures", "use_cache",
               "_commit_hash", "task_specific_params", "output_hidden_states", "output_attentions", "return_dict",
               "bos_token_id", "eos_token_id", "pad_token_id", "tokenizer_class", "id2label", "label2id",
               "_attn_implementation_autoset", "auto_map", "finetuning_task", "problem_type"}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "merges.txt", "tokenizer_config.json",
                   "special_tokens_map.json", "added_tokens.json")


def parse_probe_specs(specs: Sequence[str]) -> dict[str, Path]:
    """``--probes-text`` values: ``FILE`` (the set ``in_dist``) or ``NAME=FILE`` -> ``{name: path}``."""
    out: dict[str, Path] = {}
    for s in specs:
        name, sep, file = s.partition("=")
        if not sep or Path(s).exists():
            name, file = "in_dist", s
        why = check_name(name)
        if why or name == RARE_SET:
            raise UserError(f"--probes-text '{s}': '{name}' cannot name a probe set: {why or 'the importer adds that set itself'}")
        if name in out:
            raise UserError(f"--probes-text names probe set '{name}' twice ('{out[name]}' and '{file}')")
        if not Path(file).is_file():
            raise UserError(f"--probes-text '{s}': prompt file '{file}' not found")
        out[name] = Path(file)
    return out


def read_prompts(name: str, path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"prompt file '{path}' (probe set '{name}') cannot be read as UTF-8 text: {e}") from None
    prompts = [line for line in lines if line.strip()]
    if not prompts:
        raise UserError(f"prompt file '{path}' (probe set '{name}') has no prompts (one per line; blank lines are skipped)")
    return prompts


def model_dirs(src: Path) -> list[Path]:
    if not src.is_dir():
        raise UserError(f"model directory '{src}' " + ("is a file: give the directory that holds one subdirectory per model"
                                                       if src.exists() else "does not exist"))
    dirs = sorted(p for p in src.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not dirs:
        raise UserError(f"no model directories in '{src}' (--hf wants one save_pretrained directory per model)")
    for d in dirs:
        if not (d / "config.json").is_file():
            raise UserError(f"'{d}' has no config.json: each subdirectory of '{src}' must be a save_pretrained directory")
        if not d.name.isprintable() or not d.name.strip():
            raise UserError(f"model directory name {d.name!r} in '{src}' cannot be a model id; rename it")
    return dirs


def read_config(d: Path) -> dict[str, Any]:
    try:
        cfg = json.loads((d / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"'{d / 'config.json'}' is not a readable JSON config: {e}") from None
    if not isinstance(cfg, dict):
        raise UserError(f"'{d / 'config.json'}' is not a JSON object")
    return cfg


def check_one_architecture(ids: list[str], configs: list[dict[str, Any]]) -> int:
    """Index of a model whose config the most models share; a model that departs from it is a
    one-line error naming it and the first key that differs."""
    def shape(c: dict[str, Any]) -> str:
        return json.dumps({k: v for k, v in c.items() if k not in BOOKKEEPING}, sort_keys=True, default=str)

    sigs = [shape(c) for c in configs]
    common = Counter(sigs).most_common(1)[0][0]
    ref = sigs.index(common)
    odd = next((i for i, s in enumerate(sigs) if s != common), None)
    if odd is None:
        return ref
    a, b = configs[ref], configs[odd]
    if a.get("model_type") != b.get("model_type"):
        raise UserError(f"model '{ids[odd]}' is a {b.get('model_type')} model, '{ids[ref]}' (and the most models) "
                        f"{a.get('model_type')}: all models of one import share an architecture")
    key = next(k for k in sorted(set(a) | set(b)) if k not in BOOKKEEPING and a.get(k) != b.get(k))
    raise UserError(f"model '{ids[odd]}' has config {key} = {b.get(key, '(absent)')!r}, '{ids[ref]}' (and the most models) "
                    f"{a.get(key, '(absent)')!r}: all models of one import share an architecture")


def _digest(d: Path) -> str | None:
    files = [d / f for f in TOKENIZER_FILES if (d / f).is_file()]
    if not files:
        return None
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def load_tokenizer(dirs: list[Path], ids: list[str]) -> tuple[Any, str]:
    """The one tokenizer of the population (``AutoTokenizer``, no remote code) and the model it is read from.

    Models without tokenizer files use it; a model whose tokenizer differs (another vocabulary) is an error.
    """
    tf = require_transformers()
    digests = [_digest(d) for d in dirs]
    have = [i for i, g in enumerate(digests) if g is not None]
    if not have:
        raise UserError(f"no model in '{dirs[0].parent}' has tokenizer files ({', '.join(TOKENIZER_FILES[:4])}, ...): "
                        "save the tokenizer with save_pretrained into at least one model directory")

    def load(i: int) -> Any:
        try:
            return tf.AutoTokenizer.from_pretrained(str(dirs[i]), trust_remote_code=False)
        except Exception as e:  # noqa: BLE001 - transformers raises many kinds for a broken tokenizer
            raise UserError(f"tokenizer of model '{ids[i]}' cannot be loaded: {type(e).__name__}: {str(e)[:200]}") from None

    first = have[0]
    tok = load(first)
    vocab = tok.get_vocab()
    for i in have[1:]:
        if digests[i] != digests[first] and load(i).get_vocab() != vocab:
            raise UserError(f"model '{ids[i]}' has another tokenizer than '{ids[first]}' (their vocabularies differ): "
                            "all models of one import share a tokenizer")
    return tok, ids[first]


def pad_id_of(tok: Any) -> int:
    for v in (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id):
        if v is not None:
            return int(v)
    return 0


def tokenize(tok: Any, sets: dict[str, list[str]], pad: int, max_len: int | None, vocab: int) -> dict[str, torch.Tensor]:
    """Left-padded token ids ``{name: [n_prompts, T]}``, one ``T`` (the longest prompt) for every set."""
    ids = {name: [list(tok(p)["input_ids"]) for p in prompts] for name, prompts in sets.items()}
    for name, rows in ids.items():
        for i, r in enumerate(rows):
            if not r:
                raise UserError(f"prompt {i + 1} of probe set '{name}' has no tokens")
            if r[0] == pad:
                raise UserError(f"prompt {i + 1} of probe set '{name}' starts with the pad token (id {pad}), which "
                                "would read as padding; remove it from the prompt")
            if max(r) >= vocab:
                raise UserError(f"prompt {i + 1} of probe set '{name}' has token id {max(r)}, beyond the model's "
                                f"{vocab} embedding rows: the tokenizer does not belong to these models")
    T = max((len(r) for rows in ids.values() for r in rows), default=NO_PROMPT_T)
    if max_len is not None and T > max_len:
        name, i = next((n, i) for n, rows in ids.items() for i, r in enumerate(rows) if len(r) == T)
        raise UserError(f"prompt {i + 1} of probe set '{name}' is {T} tokens long; the models take at most {max_len}")
    return {name: torch.tensor([[pad] * (T - len(r)) + r for r in rows], dtype=torch.long) for name, rows in ids.items()}


def prompt_notes(tok: Any, probes: dict[str, torch.Tensor], pad: int) -> list[str]:
    """Lines for prompts that probe nothing (outside audit 123): none given, or prompts whose every token is the
    tokenizer's unknown token (English prompts for a model of another vocabulary, or a wrong tokenizer)."""
    if not probes:
        return ["no --probes-text: only the rare-token set is imported, and the default fingerprints that read prompts "
                "(probe-outputs, ood-outputs, disagreement, ...) will be left out; give prompts in the models' own "
                "language with --probes-text FILE (and ood=FILE)"]
    unk = getattr(tok, "unk_token_id", None)
    if unk is None:
        return []
    out = []
    for name, x in probes.items():
        real = x != pad
        empty = int(((x == unk) | ~real).all(1).sum())
        if empty:
            out.append(f"probe set '{name}': {empty} of its {len(x)} prompts are only the unknown token (id {unk}) to the "
                       "models' tokenizer, so they probe nothing: use the models' own vocabulary")
    return out


def rare_tokens(tok: Any, vocab: int, n: int) -> list[int]:
    """Generic rare tokens: embedding rows beyond the tokenizer (never produced, so never trained),
    then the tokenizer's highest ordinary ids (a BPE vocabulary's last merges, its rarest tokens)."""
    special = set(getattr(tok, "all_special_ids", []) or []) | {pad_id_of(tok)}  # a row of pads would read as padding
    beyond = list(range(len(tok), vocab))
    ordinary = [i for i in range(min(len(tok), vocab) - 1, -1, -1) if i not in special]
    return (beyond + ordinary)[:n]


def load_weights(d: Path, mid: str, cfg: Any, shapes: dict[str, tuple[int, ...]], step: int | None = None
                 ) -> dict[str, torch.Tensor]:
    """One model's parameters ``{name: float32 tensor}`` (the names of :func:`param_names`), read by
    transformers (which knows its own renamed keys) from safetensors, or, with none, from a
    ``pytorch_model*.bin`` that first loads here with ``weights_only=True``; checked against the
    architecture: a missing or mis-shaped weight is an error, never a random one. ``step``: an earlier
    checkpoint of ``--history``, named in the errors."""
    who = f"model '{mid}'" + ("" if step is None else f" at step {step}")
    tf = require_transformers()
    safe = sorted(d.glob("*.safetensors"))
    if not safe:
        bins = sorted(d.glob("pytorch_model*.bin"))
        if not bins:
            raise UserError(f"{who} has no weights in '{d}' (looked for *.safetensors, then pytorch_model*.bin)")
        for f in bins:  # a pickle that would run code is refused here, with our message, before transformers reads it
            load_state_dict(f, f"weights of {who}")
    try:
        with warnings.catch_warnings(), torch.random.fork_rng(devices=[]):
            warnings.simplefilter("ignore")
            model, info = tf.AutoModelForCausalLM.from_pretrained(
                str(d), config=cfg, trust_remote_code=False, use_safetensors=bool(safe), weights_only=True,
                output_loading_info=True, attn_implementation="eager", dtype=torch.float32)
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 - corrupt files, shape mismatches: transformers raises many kinds
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise UserError(f"{who} ('{d}') cannot be loaded: {type(e).__name__}: {msg[:200]}") from None
    missing = [k for k in info.get("missing_keys", ()) if k in shapes]
    if missing:
        raise UserError(f"{who} ('{d}') is missing weight '{missing[0]}' for its architecture"
                        f"{f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''}")
    bad = list(info.get("mismatched_keys", ()))
    if bad:
        raise UserError(f"{who} weight {bad[0][0] if isinstance(bad[0], tuple) else bad[0]!r} has another shape "
                        "than its architecture's")
    extra = list(info.get("unexpected_keys", ()))
    if extra:
        warnings.warn(f"{who}: {len(extra)} weights the architecture does not use were ignored (e.g. '{extra[0]}')",
                      stacklevel=3)
    out = {n: p.detach().float() for n, p in model.named_parameters()}
    if {n: tuple(t.shape) for n, t in out.items()} != shapes:
        raise UserError(f"{who} ('{d}') does not have the parameters of '{cfg.model_type}' models of this config")
    odd = next((n for n, t in out.items() if not bool(torch.isfinite(t).all())), None)
    if odd is not None:
        raise UserError(f"{who} weight '{odd}' holds NaN or inf")
    return out


def history_dirs(src: Path, template: str) -> tuple[list[str], list[Path], list[int], list[dict[int, Path]], list[str]]:
    """``(ids, final dirs, final steps, earlier dirs by step, unmatched)`` of ``--hf --history TEMPLATE``:
    each model's ``save_pretrained`` directories along training (:func:`fingerprint.import_history.find_history`),
    its highest step the final one."""
    if not src.is_dir():
        raise UserError(f"model directory '{src}' " + ("is a file: give the directory that holds the models"
                                                       if src.exists() else "does not exist"))
    found, unmatched = find_history(src, template, ())
    ids = list(found)
    finals = [h[max(h)] for h in found.values()]
    return (ids, finals, [max(h) for h in found.values()],
            [{s: d for s, d in h.items() if s < max(h)} for h in found.values()], unmatched)


def tokenizer_dir(d: Path, src: Path) -> Path:
    """Where a ``--history`` model's tokenizer is: its final checkpoint's directory, else the nearest
    directory above it under ``src`` that holds tokenizer files (a Trainer writes them into
    ``checkpoint-N`` only when given the tokenizer; ``save_pretrained`` into the run's own directory
    is the usual place: found by review)."""
    for a in (d, *d.parents):
        if a == src or src not in a.parents:
            break
        if _digest(a) is not None:
            return a
    return d


def check_history_configs(ids: list[str], earlier: list[dict[int, Path]], reference: dict[str, Any]) -> None:
    """Every earlier checkpoint of ``--history`` has the final checkpoints' architecture (its ``config.json``
    agrees but for bookkeeping keys), else a one-line error naming the model and step."""
    def shape(c: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in c.items() if k not in BOOKKEEPING}

    want = shape(reference)
    for mid, steps in zip(ids, earlier):
        for step, d in sorted(steps.items()):
            got = shape(read_config(d))
            if got != want:
                key = next(k for k in sorted(set(got) | set(want)) if got.get(k) != want.get(k))
                raise UserError(f"model '{mid}' at step {step} ('{d}') has config {key} = {got.get(key, '(absent)')!r}, its "
                                f"final checkpoint {want.get(key, '(absent)')!r}: a model's checkpoints share an architecture")


def import_hf(src: str | Path, out: str | Path, probes_text: Sequence[str] = (), metadata: str | Path | None = None,
              readout: str = "last", overwrite: bool = False, strict: bool = False, n_rare: int = N_RARE,
              on_model: Callable[[str], None] | None = None, history: str | None = None,
              on_note: Callable[[str], None] | None = None, privileged: Sequence[str] = ()) -> Path:
    """``fingerprint import SRC --hf``: HF causal-LM directories -> a zoo at ``out`` (returned). ``privileged``:
    prompt sets built from what the user knows of the models (a trigger's), marked so (outside audit 123).

    ``history`` (a template such as ``{model_id}/checkpoint-{step}`` under ``src``): each model's
    ``save_pretrained`` directories along training, its highest step the final one; every earlier
    one is read and checked before anything is written (:mod:`fingerprint.import_history`)."""
    require_transformers()
    if readout not in READOUTS:
        raise UserError(f"unknown readout '{readout}' (valid: {', '.join(READOUTS)})")
    src = Path(src)
    earlier: list[dict[int, Path]] | None = None
    if history is None:
        dirs = model_dirs(src)
        ids = [d.name for d in dirs]
    else:
        ids, dirs, final_steps, earlier, unmatched = history_dirs(src, history)
        for note in (unmatched_note(unmatched, history), short_runs_note(ids, final_steps)):
            if note and on_note:
                on_note(note)
    specs = parse_probe_specs(probes_text)
    privileged = privileged_sets(privileged, specs)
    meta = read_metadata(Path(metadata), ids, strict, history_naming(history, "model directory name")) if metadata else None
    check_parents(meta, ids, metadata)
    check_output(Path(out), {"model directory": src, "metadata file": metadata,
                             **{f"prompt file of '{n}'": p for n, p in specs.items()}}, overwrite=overwrite)
    prompts = {name: read_prompts(name, p) for name, p in specs.items()}
    configs = [read_config(d) for d in dirs]
    ref = check_one_architecture(ids, configs)
    config = configs[ref]
    if earlier:
        check_history_configs(ids, earlier, config)
    template = build_model(config, f"model '{ids[ref]}'")
    vocab = int(template.get_input_embeddings().weight.shape[0])
    cfg = build_config(config, f"model '{ids[ref]}'")
    max_len = getattr(cfg, "n_positions", None) or getattr(cfg, "max_position_embeddings", None)
    tok, tok_from = load_tokenizer(dirs if history is None else [tokenizer_dir(d, src) for d in dirs], ids)
    pad = pad_id_of(tok)
    probes = tokenize(tok, prompts, pad, max_len, vocab)
    for note in prompt_notes(tok, probes, pad):
        (on_note or (lambda m: warnings.warn(m, stacklevel=3)))(note)
    T = next(iter(probes.values())).shape[1] if probes else NO_PROMPT_T
    rare = rare_tokens(tok, vocab, n_rare)
    probes[RARE_SET] = torch.tensor(rare, dtype=torch.long)[:, None].expand(-1, T).clone()
    shapes = {n: tuple(p.shape) for n, p in template.named_parameters()}
    bars = require_transformers().utils.logging
    shown = bars.is_progress_bar_enabled()
    bars.disable_progress_bar()  # transformers' per-file bars; the CLI draws one for the whole import
    try:
        for i, (d, mid) in enumerate(zip(dirs, ids)):
            sd = load_weights(d, mid, cfg, shapes)  # checked now, read again when written: a shard at a time in memory
            if i == 0:
                first = sd  # the probes' run through the architecture, below
            for step, e in sorted((earlier[i] if earlier else {}).items()):  # read again when written: a shard at a time
                load_weights(e, mid, cfg, shapes, step)
            if on_model:
                on_model(mid)
    finally:
        if shown:
            bars.enable_progress_bar()
    sds = ReadAgain(list(zip(dirs, ids)), lambda dm: load_weights(dm[0], dm[1], cfg, shapes))
    family = {"arch": "hf", "model_type": config.get("model_type"), "config": config, "input_shape": [T], "n_out": vocab,
              "pad_id": pad, "readout": readout, "layers": [], "privileged_probes": privileged,
              "n_params": int(sum(p.numel() for p in template.parameters())),
              "tokenizer": {"from_model": tok_from, "class": type(tok).__name__, "size": len(tok), "pad_id": pad,
                            "padding": "left"},
              "probe_text": prompts, "rare_tokens": rare}
    fam = HFFamily(config=config, input_shape=(T,), n_out=vocab, pad_id=pad, readout=readout, _template=template)
    try:  # every set runs through the architecture before anything is written
        for name, x in probes.items():
            fam.forward({k: v[None] for k, v in first.items()}, x[:2])
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001
        raise UserError(f"probe set '{name}' does not run through model '{ids[0]}': {type(e).__name__}: {str(e)[:200]}") from None
    family["layers"] = fam.activation_names()
    if on_note and shared_order_note(meta):  # as the state-dict import says it (an outside audit, 78: --hf did not)
        on_note(shared_order_note(meta))  # once every input is checked: not just before an error
    steps = None if earlier is None else (final_steps, earlier, lambda d: load_weights(d, d.relative_to(src).as_posix(), cfg, shapes))
    bars.disable_progress_bar()  # the earlier checkpoints are read again, a shard at a time, as they are written
    try:
        return write_imported_zoo(Path(out), ids, sds, family, meta, probes, "import", overwrite, history=steps)
    finally:
        if shown:
            bars.enable_progress_bar()
