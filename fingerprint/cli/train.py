"""``fingerprint sweep``, ``inspect`` and ``list``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import numpy as np
import typer
from rich.table import Table

from fingerprint.cli import app, console, err_console, esc, interrupt_said
from fingerprint.cli import options as o
from fingerprint.cli.display import RichProgress, print_basins


@app.command()
def sweep(
    config: str = typer.Argument(..., help="Sweep config (TOML path, or a built-in config name: see `fingerprint list`)."),
    out: Path = typer.Option(..., "--out", "-o", help="Zoo directory to create."),
    executor: str = typer.Option("local", help="local | process | ray"),
    address: Optional[str] = typer.Option(None, help="Ray cluster address (auto | HOST:PORT); default: a local Ray instance."),
    models_per_batch: Optional[int] = typer.Option(None, help="Models trained together in one shard (default: from config, 256)."),
    device: str = typer.Option("cpu", help="cpu | cuda | cuda:N"),
    resume: bool = typer.Option(False, "--resume", help="Finish an interrupted sweep: train only missing shards."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Delete an existing zoo at --out first (only a zoo is ever deleted)."),
    max_gb: Optional[float] = o.MAX_GB_OPTION,
):
    """Train a seed sweep and store it as a zoo."""
    from fingerprint import pipeline  # deferred for start-up time

    cfg = pipeline.RunConfig.load(config)  # its [fingerprints] / [analysis] sections too, as `run` would
    with RichProgress() as progress:
        try:
            s = pipeline.sweep(cfg, out, executor, address, models_per_batch, device, resume, overwrite, max_gb=max_gb,
                               progress=progress)
        except KeyboardInterrupt:  # click would exit 130 silently
            progress.close()
            err_console.print(f"interrupted; finished shards are kept: rerun with --resume to train the rest into {esc(out)}",
                              highlight=False, soft_wrap=True)
            interrupt_said()
            raise typer.Exit(130) from None
    console.print(
        f"[green]done:[/] {s.n_planned} models in [bold]{esc(s.zoo)}[/] "
        f"({s.n_trained_now} trained now, {s.n_skipped} already done) in {s.seconds:.1f}s"
        + (f", {s.model_steps / max(s.seconds, 1e-9):,.0f} model-steps/s" if s.n_trained_now else "")
    )
    if s.diverged:
        console.print(f"[yellow]{len(s.diverged)} diverged:[/] {esc(', '.join(s.diverged[:10]))}{' ...' if len(s.diverged) > 10 else ''}")


def zoo_summary(zoo) -> dict:
    """The JSON that ``inspect --json`` prints."""
    from fingerprint.extraction import superseded  # deferred for start-up time (torch)
    from training.core.store import CORE_COLUMNS  # deferred for start-up time (torch)

    m = zoo.models
    cached = zoo.list_fingerprints()
    stale = superseded(cached)
    for f in cached:  # an earlier body of a plugin, with a newer entry beside it: no analysis uses it
        if f.get("key") in stale:
            f["superseded"] = True
    models = []
    for row in m:
        models.append({k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()})
    metric_cols = [c for c in m.names() if c not in CORE_COLUMNS]
    summary = {
        "zoo": str(zoo.path),
        "n_models": len(zoo),
        "n_planned": len(zoo.manifest.get("planned", [])),
        "task": zoo.task_name,
        "task_params": zoo.task_params,
        "family": zoo.family_spec,
        "steps": zoo.steps,
        "common_steps": zoo.common_steps,
        "n_diverged": int(np.sum(m["diverged"])) if len(m) else 0,
        "corrupt_shards": [str(p) for p, _ in zoo.corrupt],
        "columns": m.names(),
        "fingerprints": cached,
        "results": zoo.list_results(),
        "models": models,
    }
    if "deep_label" in m:
        labels, counts = np.unique(m["deep_label"].astype(str), return_counts=True)
        summary["deep_label_counts"] = {str(k): int(v) for k, v in zip(labels, counts)}
    numeric = [c for c in metric_cols if m[c].dtype != object and m[c].dtype.kind in "fiub"]
    # an integer column of more than two values is a family, an order, a seed or a count: its mean says
    # nothing ("mean family 14.5"), its distinct values and range do; 0/1 columns keep theirs (a share)
    levels = [c for c in numeric if m[c].dtype.kind in "iu" and len(np.unique(m[c])) > 2]
    # the mean of the finite values; a column with none reads nan, said by the table (not numpy's unattributed
    # "Mean of empty slice": an outside audit, 71, read it from a task plugin's all-NaN diagnostic)
    summary["metrics_mean"] = {c: float(np.mean(v[~np.isnan(v)])) if (~np.isnan(v)).any() else float("nan")
                               for c in numeric if c not in levels for v in [m[c].astype(float)]}
    summary["metrics_levels"] = {c: {"distinct": int(len(np.unique(m[c]))), "min": int(np.min(m[c])), "max": int(np.max(m[c]))}
                                 for c in levels}
    return summary


@app.command()
def inspect(
    zoo_path: Path = typer.Argument(..., metavar="ZOO"),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
):
    """Show a zoo: sizes, seeds, lineage, metrics, diverged models, checkpoints, fingerprints, basins."""
    from training.core.store import Zoo  # deferred for start-up time (torch)

    zoo = Zoo.open(zoo_path, strict=False)
    s = zoo_summary(zoo)
    if as_json:
        sys.stdout.write(json.dumps(s, default=str) + "\n")
        _exit_if_corrupt(s)
        return
    fam = s["family"]
    arch = f"{fam.get('arch')} ({fam['factory']})" if fam.get("factory") else str(fam.get("arch"))
    console.print(f"[bold]{esc(zoo.path)}[/]: {s['n_models']}/{s['n_planned']} models, task [bold]{esc(s['task'])}[/], "
                  f"arch {esc(arch)}")
    if s["corrupt_shards"]:
        console.print(f"[red]corrupt shards (skipped):[/] {esc(', '.join(s['corrupt_shards']))}")
    kinds, counts = np.unique(zoo.models["kind"].astype(str), return_counts=True) if len(zoo) else ([], [])
    t = Table(title="population")
    t.add_column("what")
    t.add_column("value")
    t.add_row("kinds", esc(", ".join(f"{k}: {c}" for k, c in zip(kinds, counts))))
    if len(zoo):
        t.add_row("init seeds", _seed_range(zoo.models["init_seed"]))
        t.add_row("data seeds", _seed_range(zoo.models["data_seed"]))
    t.add_row("checkpoint steps", ", ".join(map(str, s["steps"])))
    t.add_row("diverged", str(s["n_diverged"]))
    for c, v in s["metrics_mean"].items():
        t.add_row(f"mean {esc(c)}", f"{v:.4f}" if v == v else "none finite (NaN for every model)")
    for c, v in s["metrics_levels"].items():  # integer ids and levels: how many, not their mean
        t.add_row(f"{esc(c)} values", f"{v['distinct']} ({v['min']}..{v['max']})")
    if "deep_label_counts" in s:
        t.add_row("deep_label", esc(", ".join(f"{k}: {v}" for k, v in s["deep_label_counts"].items())))
    console.print(t)
    if s["fingerprints"]:
        ft = Table(title="cached fingerprints")
        for col in ("key", "extractor", "step", "shape"):
            ft.add_column(col)
        for f in s["fingerprints"]:
            name = esc(f.get("extractor", "")) + (" [yellow](superseded)[/]" if f.get("superseded") else "")
            ft.add_row(esc(f.get("key", "")), name, *(esc(f.get(c, "")) for c in ("step", "shape")))
        console.print(ft)
        if any(f.get("superseded") for f in s["fingerprints"]):
            console.print("superseded: computed by an earlier body of its plugin; a newer entry of the same fingerprint "
                          "replaces it in every analysis. Extraction removes such entries when it recomputes the plugin "
                          "(extract --force with the plugin loaded), or delete the file", style="yellow", highlight=False,
                          markup=False, soft_wrap=True)
    print_basins(zoo)
    _exit_if_corrupt(s)


def _exit_if_corrupt(s: dict) -> None:
    """Exit 1 after showing what is readable, when shards are corrupt (a script must notice)."""
    if s["corrupt_shards"]:
        err_console.print(f"error: {len(s['corrupt_shards'])} corrupt shard(s) skipped: {esc(s['corrupt_shards'][0])}"
                          + (" and more" if len(s["corrupt_shards"]) > 1 else ""), highlight=False, soft_wrap=True)
        raise typer.Exit(1)


def _seed_range(a) -> str:
    u = np.unique(a)
    return f"{len(u)} ({u.min()}..{u.max()})" if len(u) else "-"


@app.command("list")
def list_cmd(as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
             plugin: Optional[List[str]] = typer.Option(None, "--plugin", help="Also list these plugins' extractors and tasks (module, module:function or module:Class, repeatable).")):
    """List tasks, architectures, extractors and built-in configs."""
    from fingerprint.registry import (  # deferred for start-up time (torch)
        bound_text,
        list_extractors,  # deferred for start-up time (torch)
    )
    from training.config import builtin_configs  # deferred for start-up time
    from training.families import kernels, list_families  # deferred for start-up time
    from training.tasks import (  # deferred for start-up time
        list_tasks,
        task_param_specs,
    )
    from training.tasks.base import (  # deferred for start-up time
        named_task,
    )

    o.add_cwd_to_path()
    named: dict = {}  # module:Class tasks no name registers (a registered one is listed under its name, once)
    for p in plugin or []:
        cls = named_task(p) if ":" in p else None
        if cls is not None:
            if cls not in list_tasks().values():
                named[p] = cls
            continue
        o.load_plugin_module(p)
    tasks = {n: {"description": c.description, "deep_labels": list(c.deep_labels),
                 "privileged_probes": list(getattr(c, "privileged_probes", ())),
                 "params": {k: {"type": t, "default": d} for k, (t, d) in task_param_specs(c).items()}}
             for n, c in sorted({**list_tasks(), **named}.items())}
    archs = {n: {"description": (c.__doc__ or "").strip().splitlines()[0] if c.__doc__ else ""} for n, c in sorted(list_families().items())}
    extractors = {name: spec.describe() for name, spec in sorted(list_extractors().items())}

    data = {"tasks": tasks, "architectures": archs, "extractors": extractors, "configs": sorted(builtin_configs()),
            "cpu_kernels": kernels.status(build=False)}
    if as_json:
        sys.stdout.write(json.dumps(data, default=str) + "\n")
        return
    t = Table(title="tasks")
    t.add_column("name")
    t.add_column("deep labels")
    t.add_column("privileged probes")
    t.add_column("parameters (default)")
    for n, d in tasks.items():
        t.add_row(esc(n), esc(", ".join(d["deep_labels"])), esc(", ".join(d["privileged_probes"]) or "–"),
                  esc(", ".join(f"{k}={v['default']}" for k, v in d["params"].items())))
    console.print(t)
    a = Table(title="architectures")
    a.add_column("name")
    a.add_column("description")
    for n, d in archs.items():
        a.add_row(esc(n), esc(d["description"]))
    console.print(a)
    if extractors:
        e = Table(title="extractors")
        for col in ("name", "kind", "output", "version", "source", "parameters"):
            e.add_column(col)
        for n, d in extractors.items():
            bounds = d.get("bounds") or {}
            e.add_row(*(esc(v) for v in (n, d.get("kind"), d.get("output"), d.get("version"), d.get("source"))),
                      esc(", ".join(f"{k}={v}" + (f" ({bound_text(*bounds[k])})" if k in bounds else "")
                                       for k, v in (d.get("params") or {}).items())))
        console.print(e)
    console.print(f"built-in configs: {esc(', '.join(data['configs']) or '(none)')}")
    console.print(f"fused CPU kernels for ReLU MLP training: {esc(data['cpu_kernels'])}")
