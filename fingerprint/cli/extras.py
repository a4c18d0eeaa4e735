"""``fingerprint import``: bring models trained elsewhere into a zoo."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from fingerprint.cli import app, console, esc
from fingerprint.cli import options as o
from training.core.errors import UserError
from training.core.outputs import check_output


@app.command("import")
def import_cmd(
    src: Path = typer.Argument(..., help="Directory of checkpoints (*.safetensors, *.pt or *.pth state_dicts); with --hf, of save_pretrained model directories."),
    arch: Optional[str] = typer.Option(None, "--arch", help="module:factory that builds your nn.Module (no arguments); not with --hf."),
    out: Path = typer.Option(..., "--out", "-o", help="Zoo directory to create."),
    metadata: Optional[Path] = typer.Option(None, "--metadata", help="CSV with a model_id column (= checkpoint file stem, or model directory name with --hf) and any others."),
    probes: Optional[str] = typer.Option(None, "--probes", help="module:function returning {name: inputs}, or a .pt/.safetensors file of named inputs."),
    layers: Optional[List[str]] = typer.Option(None, "--layers", help="Submodule names whose outputs extractors may read (repeatable)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing zoo at --out (only a zoo is ever deleted)."),
    strict: bool = typer.Option(False, "--strict", help="Refuse a --metadata CSV that does not cover every checkpoint (default: a warning)."),
    privileged: Optional[List[str]] = typer.Option(None, "--privileged", help="A probe set built from the ground truth (repeatable): fingerprints on it are marked privileged (not label-free evidence)."),
    hf: bool = typer.Option(False, "--hf", help="SRC holds Hugging Face causal LMs, one save_pretrained directory each (needs the 'hf' extra)."),
    probes_text: Optional[List[str]] = typer.Option(None, "--probes-text", help="With --hf: FILE of prompts, one per line (probe set in_dist), or NAME=FILE (repeatable)."),
    readout: str = typer.Option("last", "--readout", help="With --hf: logits at the last position of each prompt (last: one vocabulary-sized row per prompt) or at every position (all)."),
    data: Optional[str] = typer.Option(None, "--data", help="module:function returning labelled data (x, y) tensors (integer y: class indices; float y: regression targets), stored in the zoo for lmc-barrier and losses."),
    state_key: Optional[str] = typer.Option(None, "--state-key", help="Top-level key of training checkpoints that holds the state_dict (default: 'state_dict', else the only state_dict a checkpoint holds)."),
    history: Optional[str] = typer.Option(None, "--history", help="Checkpoints along training, as a path under SRC with {model_id} and {step} (e.g. '{model_id}/step_{step}.pt'; with --hf save_pretrained directories, '{model_id}/checkpoint-{step}'): each model's highest step is its final checkpoint; for fingerprint forecast and the history forest of fingerprint lineage."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Import the good checkpoints and leave out the refused ones (wrong keys or shapes, NaN/inf weights or outputs) and their CSV rows, named in one line; exit status 1 when any was left out."),
):
    """Import a population of checkpoints trained elsewhere as a zoo."""
    from rich.progress import Progress

    if hf:
        given = next((f for f, v in (("--arch", arch), ("--probes", probes), ("--layers", layers),
                                     ("--data", data), ("--state-key", state_key), ("--skip-bad", skip_bad)) if v), None)
        if given == "--skip-bad":  # outside audit 123: the reason given was --arch's
            raise UserError("--skip-bad is not for --hf imports: a model directory that cannot be read stops the import, "
                            "named; move it (or any folder that is not a save_pretrained directory) out of SRC")
        if given:
            raise UserError(f"{given} is not for --hf imports (their architecture is the models' config.json; prompts "
                            "come with --probes-text)")
        from fingerprint.hf_import import (  # deferred for start-up time (torch, transformers)
            import_hf,
        )
        from fingerprint.import_history import (  # deferred for start-up time (torch)
            find_history,
        )

        n = (0 if not src.is_dir() else len(find_history(src, history, ())[0]) if history
             else len([p for p in src.iterdir() if p.is_dir()]))
        with Progress(console=console, transient=True, disable=not console.is_terminal) as progress:
            task = progress.add_task("reading models", total=max(n, 1))
            path = import_hf(src, out, probes_text or [], metadata, readout, overwrite, strict,
                             on_model=lambda _m: progress.advance(task), history=history,
                             on_note=lambda m: console.print(m, highlight=False, markup=False, soft_wrap=True),
                             privileged=privileged or ())
    else:
        if probes_text:
            raise UserError("--probes-text is for --hf imports (prompts for language models); give --probes here")
        if not arch:
            raise UserError("fingerprint import needs --arch MODULE:FACTORY (your nn.Module), or --hf for Hugging Face models")
        from fingerprint.import_history import (  # deferred for start-up time (torch)
            find_history,
        )
        from fingerprint.importer import (  # deferred for start-up time (torch)
            CHECKPOINT_SUFFIXES,
            import_checkpoints,
        )

        o.add_cwd_to_path()  # let module:factory name a file in the working directory
        n = (0 if not src.is_dir() else len(find_history(src, history, CHECKPOINT_SUFFIXES)[0]) if history
             else len([p for p in src.iterdir() if p.suffix in CHECKPOINT_SUFFIXES]))
        with Progress(console=console, transient=True, disable=not console.is_terminal) as progress:
            task = progress.add_task("checking checkpoints", total=max(n, 1))
            path = import_checkpoints(src, arch, out, metadata, probes, layers or [], overwrite,
                                      on_file=lambda _f: progress.advance(task), strict=strict, privileged_probes=privileged or (),
                                      data=data, state_key=state_key, skip_bad=skip_bad, history=history,
                                      on_note=lambda m: console.print(m, highlight=False, markup=False, soft_wrap=True))
    from training.core.shards import CORE_COLUMNS  # deferred for start-up time (torch)
    from training.core.store import Zoo  # deferred for start-up time (torch)

    zoo = Zoo.open(path)
    partial = skip_bad and len(zoo) < n
    given = _csv_header(metadata)  # the zoo's own empty columns are not the user's (an outside audit: 7 of 12 listed)
    cols = ["model_id", *(c for c in zoo.models.names() if c != "model_id" and (c not in CORE_COLUMNS or c in given))]
    console.print(f"[green]imported[/] {len(zoo)} {'of ' + str(n) + ' ' if partial else ''}models into [bold]{esc(path)}[/] "
                  f"(columns: {esc(', '.join(cols))})")
    if partial:  # --skip-bad left some out: done in part (fingerprint.cli's exit statuses)
        raise typer.Exit(1)


def _csv_header(metadata: Path | None) -> set[str]:
    """The column names of a metadata CSV (already read and checked by the import), or none."""
    if metadata is None:
        return set()
    import csv

    with open(metadata, newline="", encoding="utf-8-sig") as f:
        return {c.strip() for c in next(csv.reader(f), [])}


@app.command("forecast")
def forecast_cmd(
    zoo_path: Path = typer.Argument(..., metavar="ZOO"),
    fp: List[str] = typer.Option(["ood-outputs"], "--fp", help="Fingerprints to forecast with (repeatable)."),
    label: Optional[str] = typer.Option(None, "--label", help="Final basin column (default deep_label; else the fingerprint's final clusters)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the forecast curve as JSON."),
    exclude_basin: List[str] = typer.Option([], "--exclude-basin", help="Leave out the models of this final basin, e.g. mixed (repeatable)."),
    lineage: Optional[str] = typer.Option(None, "--lineage", help="Model column of the init families that folds and intervals keep together (default: init_seed; an import's own family column)."),
    trust_code: bool = o.TRUST_OPTION,
    arch: Optional[str] = o.ARCH_OPTION,
    plugin: Optional[List[str]] = o.PLUGIN,
):
    """How well early fingerprints predict each model's final basin, step by step (accuracy with a 95% interval over init families)."""
    from rich.table import Table

    from analysis.forecast import no_accuracy  # deferred for start-up time
    from fingerprint.forecast import forecast  # deferred for start-up time (torch)
    from training.core.store import write_json  # deferred for start-up time

    o.load_plugin_options(plugin)

    if json_out:
        check_output(json_out, {"zoo": zoo_path}, option="--json", kind="file")
    zoo = o.open_for_models(zoo_path, trust_code, arch)
    with console.status("extracting fingerprints at every checkpoint and forecasting"):
        s = forecast(zoo, list(fp), label, list(exclude_basin), lineage)
    left_out = f"; without {', '.join(s['excluded_basins'])}" if s["excluded_basins"] else ""
    t = Table(title=f"forecast of {esc(s['target'])} ({s['n_models']} seeds in {s['n_families']} families by {esc(s['lineage'])}"
                    f"{esc(left_out)}, final step {s['final_step']})")
    for col in ("fingerprint", "step", "fraction", "n", "accuracy", "95% CI", "majority", "AUROC", "AMI"):
        t.add_column(col, justify="left" if col == "fingerprint" else "right")
    f = lambda v: "–" if v is None else f"{v:.2f}"
    for p in s["forecast"]:
        ci = "–" if p.get("accuracy_ci") is None else f"[{p['accuracy_ci'][0]:.2f}, {p['accuracy_ci'][1]:.2f}]"
        t.add_row(esc(p["fingerprint"]), str(p["step"]), f"{p['fraction']:.3f}", str(p["n_models"]), f(p["accuracy"]), ci,
                  f(p["majority"]), f(p["auroc"]), f(p["ami"]))
    console.print(t)
    for name, frac in s["earliest_90"].items():
        of = "" if s["targets"][name].get("deep") is not False else " (of its clusters: not a candidate basin)"
        why = no_accuracy(s["forecast"], name)
        if why:  # not measured, not a failure (an outside audit, 75)
            console.print(f"{esc(name)}: no accuracy at any step ({esc(why)}){of}", highlight=False)
            continue
        console.print(f"{esc(name)}: 90% accuracy, above the majority guess, "
                      f"{'from ' + format(frac, '.3f') + ' of training' if frac is not None else 'never reached'}{of}")
    if json_out:
        write_json(json_out, s)


@app.command("select")
def select_cmd(
    zoo_path: Path = typer.Argument(..., metavar="ZOO"),
    basin: str = typer.Option(..., "--basin", help="The wanted basin: a value of the label column (e.g. rule_a), or 'cluster N'."),
    at_step: int = typer.Option(..., "--at-step", help="Checkpoint step to forecast at."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="New zoo for the continued models (not for an imported zoo, whose seeds are picked and measured, not continued)."),
    fp: str = typer.Option("ood-outputs", "--fp", help="Fingerprint to forecast with."),
    label: Optional[str] = typer.Option(None, "--label", help="Model column whose value names the wanted basin (default deep_label; else the fingerprint's final clusters)."),
    budget: Optional[int] = typer.Option(None, "--budget", help="Continue at most N seeds."),
    calibration: float = typer.Option(0.25, help="Fraction of seeds trained to the end to fit the forecaster."),
    threshold: float = typer.Option(0.5, help="Minimum forecast probability of the wanted basin."),
    executor: str = typer.Option("local", help="local | process | ray: where the continued models train."),
    device: str = typer.Option("cpu", help="cpu | cuda | cuda:N"),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out zoo."),
    resume: bool = typer.Option(False, "--resume", help="Finish an interrupted continuation into --out (the same selection)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the selection (the picks, every pool seed's forecast probability, purity, intervals) to this file."),
    lineage: Optional[str] = typer.Option(None, "--lineage", help="Model column of the init families: the calibration takes whole families, and the intervals keep them together (default: init_seed; an import's own family column)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the calibration's draw of init families (and the forecaster's)."),
    trust_code: bool = o.TRUST_OPTION,
    plugin: Optional[List[str]] = o.PLUGIN,
):
    """Forecast early, keep the seeds bound for one basin, continue only those; report purity and compute."""
    o.load_plugin_options(plugin)
    from fingerprint.forecast import check_out  # deferred: start-up
    from fingerprint.population import check_code  # deferred for start-up time
    from fingerprint.selection import select_and_continue  # deferred: start-up
    from training.core.store import (  # deferred for start-up time (torch)
        Zoo,
        write_json,
    )
    from training.sweep import get_executor  # deferred for start-up time (torch)

    if out is not None:
        check_output(out, {"source zoo": zoo_path}, overwrite=overwrite)  # before anything is extracted or trained
    elif overwrite or resume:
        raise UserError(f"{'--overwrite' if overwrite else '--resume'} applies to --out NEW_ZOO, which is not given")
    if json_out:
        check_output(json_out, {"source zoo": zoo_path}, option="--json", kind="file", others={"--out": out})
    check_out(Zoo.open(zoo_path), out)  # before asking for --trust-code it could not use
    zoo = o.open_for_models(zoo_path, trust_code)
    if out is not None:
        check_code(zoo)  # it trains the zoo's task further: refused before anything runs when that is code the user did not allow
    r = select_and_continue(zoo, basin, at_step, out, fp, label, budget, calibration, threshold,
                            executor=get_executor(executor), device=device, overwrite=overwrite, resume=resume,
                            lineage=lineage, seed=seed)
    pct = lambda v: "–" if v is None or v != v else f"{100 * v:.1f}%"
    k = r["n_calibration_families"]
    fams = f" of {k} init famil{'y' if k == 1 else 'ies'} by {esc(r['lineage'])}"
    cal = f"calibration seeds{fams} trained to the end" if r["continued"] else f"calibration seeds{fams} whose final basins fit the forecaster"
    if r.get("without_checkpoint"):
        gone = r["without_checkpoint"]
        console.print(f"{len(gone)} seed{'s' if len(gone) != 1 else ''} without a checkpoint at step {r['at_step']} sit out: "
                      f"{esc(', '.join(gone[:5]))}{', ...' if len(gone) > 5 else ''}", style="yellow", highlight=False)
    console.print(f"forecast at step {r['at_step']} ({pct(r['fraction'])} of training) with {esc(r['fingerprint'])}: "
                  f"selected {r['n_selected']} of {r['n_pool']} seeds (+{r['n_calibration']} {cal})")
    def ci(key: str) -> str:  # as run's line; none below 4 init families, said (audit 124)
        share = r.get(key.removesuffix("_ci"))
        if r.get(key):
            return f" [{pct(r[key][0])}, {pct(r[key][1])}]"
        return "" if share is None or share != share else " (no interval: under 4 init families)"

    where = "" if r["continued"] else " (on the final checkpoints the zoo holds: what this selection would have kept)"
    if r.get("exact") is False and not r.get("purity_from_source"):  # not the source's own models: both (audit 124)
        where = f" (of the continued models; {pct(r['purity_source'])} on the source's own final models)"
    elif r.get("purity_from_source"):  # the continued models carry no basin column (review 126)
        where = " (on the source's final models: the continued ones carry no basin column)"
    console.print(f"purity {pct(r['purity'])}{ci('purity_ci')} in basin '{esc(r['basin'])}'{where} (base rate {pct(r['base_rate'])}"
                  f"{ci('base_rate_ci')}, recall {pct(r['recall'])}{ci('recall_ci')}; 95% intervals over init families); "
                  f"compute {r['model_steps_used']:,} model-steps vs {r['model_steps_baseline']:,} to train every seed "
                  f"({pct(r['compute_saved'])} saved{'' if r['continued'] else ', had the others stopped at step ' + str(r['at_step'])}); "
                  + ("no seed reached the threshold: nothing continued, no zoo written" if not r["n_selected"] else
                     f"new zoo: [bold]{esc(r['out'])}[/]" if r["continued"] else
                     f"picked: {esc(', '.join(r['selected'][:8]))}{', ...' if r['n_selected'] > 8 else ''}"
                     + ("" if json_out else " (--json FILE: all of them, with every pool seed's probability)")))
    if json_out:
        write_json(json_out, r)
        console.print(f"wrote [bold]{esc(json_out)}[/]")
