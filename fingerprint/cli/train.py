"""``fingerprint sweep``, ``inspect`` and ``list``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np
import typer
from rich.progress import (
    BarColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from fingerprint.cli import app, console, err_console, esc
from training.core.errors import UserError


def sweep_progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("models {task.fields[models]}/{task.fields[n_models]}"),
        TextColumn("{task.fields[rate]} model-steps/s"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


MAX_GB_OPTION = typer.Option(None, "--max-gb", envvar="FINGERPRINT_MAX_GB", show_envvar=True,
                             help="Refuse a plan whose checkpoints would take more than this many GB (default 20).")


def make_executor(name: str, address: Optional[str] = None):
    """Build an executor by name; ``--address`` only makes sense for Ray."""
    from training.sweep import get_executor

    if address and name != "ray":
        raise UserError(f"--address is for --executor ray, not '{name}'")
    return get_executor(name, **({"address": address} if address else {}))


def run_sweep_with_progress(config, out: Path, executor, models_per_batch: Optional[int], device: str,
                            resume: bool, overwrite: bool, inputs: Optional[dict] = None, max_gb: Optional[float] = None):
    import time

    from training.sweep import run_sweep

    with sweep_progress() as progress:
        state = {"task": None, "t0": time.time(), "steps": 0, "total": 0, "logged": None}

        def on_start(n_models, n_done, total_steps):
            state["task"] = progress.add_task("training", total=max(total_steps, 1), models=n_done, n_models=n_models, rate="-")
            state["total"] = total_steps
            if total_steps == 0:
                progress.update(state["task"], completed=1)

        def on_steps(n):
            state["steps"] += n
            rate = state["steps"] / max(time.time() - state["t0"], 1e-9)
            progress.update(state["task"], advance=n, rate=f"{rate:,.0f}")

        def on_done(sp):
            cur = next(t for t in progress.tasks if t.id == state["task"])
            models = cur.fields["models"] + sp.n_models
            progress.update(state["task"], models=models)
            if not console.is_terminal:  # no live bar in a log file: a plain line per shard, at most every 10 s
                now, last = time.time(), models == cur.fields["n_models"]
                if state["logged"] is None or last or now - state["logged"] >= 10:
                    state["logged"] = now
                    elapsed = now - state["t0"]
                    rate = state["steps"] / max(elapsed, 1e-9)
                    left = max(state["total"] - cur.completed, 0) / max(rate, 1e-9)
                    console.print(f"trained {models}/{cur.fields['n_models']} models ({rate:,.0f} model-steps/s, "
                                  f"{_clock(elapsed)} elapsed, ETA {_clock(left)})", highlight=False, soft_wrap=True)

        try:
            return run_sweep(config, out, executor=executor, models_per_batch=models_per_batch, device=device,
                             resume=resume, overwrite=overwrite, on_start=on_start, on_steps=on_steps, on_done=on_done,
                             inputs=inputs, max_gb=max_gb)
        except KeyboardInterrupt:  # click would exit 130 silently
            progress.stop()
            err_console.print(f"interrupted; finished shards are kept: rerun with --resume to train the rest into {esc(out)}",
                              highlight=False, soft_wrap=True)
            raise typer.Exit(130) from None


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
    max_gb: Optional[float] = MAX_GB_OPTION,
):
    """Train a seed sweep and store it as a zoo."""
    from fingerprint.cli.analyze import validate_run_config
    from training.config import config_file, load_config

    cfg = load_config(config)
    validate_run_config(cfg)  # its [fingerprints] / [analysis] sections too, as `run` would
    if models_per_batch is not None and models_per_batch <= 0:
        raise UserError(f"--models-per-batch must be > 0, got {models_per_batch}")
    s = run_sweep_with_progress(cfg, out, make_executor(executor, address), models_per_batch, device, resume, overwrite,
                                {"config file": config_file(config)}, max_gb)
    console.print(
        f"[green]done:[/] {s.n_planned} models in [bold]{esc(s.zoo)}[/] "
        f"({s.n_trained_now} trained now, {s.n_skipped} already done) in {s.seconds:.1f}s"
        + (f", {s.model_steps / max(s.seconds, 1e-9):,.0f} model-steps/s" if s.n_trained_now else "")
    )
    if s.diverged:
        console.print(f"[yellow]{len(s.diverged)} diverged:[/] {esc(', '.join(s.diverged[:10]))}{' ...' if len(s.diverged) > 10 else ''}")


def zoo_summary(zoo) -> dict:
    """The JSON that ``inspect --json`` prints."""
    from training.core.store import CORE_COLUMNS

    m = zoo.models
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
        "fingerprints": zoo.list_fingerprints(),
        "results": zoo.list_results(),
        "models": models,
    }
    if "deep_label" in m:
        labels, counts = np.unique(m["deep_label"].astype(str), return_counts=True)
        summary["deep_label_counts"] = {str(k): int(v) for k, v in zip(labels, counts)}
    summary["metrics_mean"] = {c: float(np.nanmean(m[c].astype(float))) for c in metric_cols
                               if m[c].dtype != object and m[c].dtype.kind in "fiub"}
    return summary


INSPECT_HOOKS: list = []  # later stages add sections (basins, scorecard): fn(zoo, console)


@app.command()
def inspect(
    zoo_path: Path = typer.Argument(..., metavar="ZOO"),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
):
    """Show a zoo: sizes, seeds, lineage, metrics, diverged models, checkpoints, fingerprints, basins."""
    from training.core.store import Zoo

    zoo = Zoo.open(zoo_path, strict=False)
    s = zoo_summary(zoo)
    if as_json:
        import sys

        sys.stdout.write(json.dumps(s, default=str) + "\n")
        return
    console.print(f"[bold]{esc(zoo.path)}[/]: {s['n_models']}/{s['n_planned']} models, task [bold]{esc(s['task'])}[/], "
                  f"arch {esc(s['family'].get('arch'))}")
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
        t.add_row(f"mean {esc(c)}", f"{v:.4f}")
    if "deep_label_counts" in s:
        t.add_row("deep_label", esc(", ".join(f"{k}: {v}" for k, v in s["deep_label_counts"].items())))
    console.print(t)
    if s["fingerprints"]:
        ft = Table(title="cached fingerprints")
        for col in ("key", "extractor", "step", "shape"):
            ft.add_column(col)
        for f in s["fingerprints"]:
            ft.add_row(*(esc(f.get(c, "")) for c in ("key", "extractor", "step", "shape")))
        console.print(ft)
    for hook in INSPECT_HOOKS:
        hook(zoo, console)


def _seed_range(a) -> str:
    u = np.unique(a)
    return f"{len(u)} ({u.min()}..{u.max()})" if len(u) else "-"


@app.command("list")
def list_cmd(as_json: bool = typer.Option(False, "--json")):
    """List tasks, architectures, extractors and built-in configs."""
    from training.config import builtin_configs
    from training.families import list_families
    from training.tasks import list_tasks, task_param_specs

    tasks = {n: {"description": c.description, "deep_labels": list(c.deep_labels),
                 "params": {k: {"type": t, "default": d} for k, (t, d) in task_param_specs(c).items()}}
             for n, c in sorted(list_tasks().items())}
    archs = {n: {"description": (c.__doc__ or "").strip().splitlines()[0] if c.__doc__ else ""} for n, c in sorted(list_families().items())}
    extractors = {}
    try:
        from fingerprint.registry import list_extractors
    except ImportError:
        list_extractors = None
    if list_extractors is not None:
        for name, spec in sorted(list_extractors().items()):
            extractors[name] = spec.describe()
    from training.families import kernels

    data = {"tasks": tasks, "architectures": archs, "extractors": extractors, "configs": sorted(builtin_configs()),
            "cpu_kernels": kernels.status(build=False)}
    if as_json:
        import sys

        sys.stdout.write(json.dumps(data, default=str) + "\n")
        return
    t = Table(title="tasks")
    t.add_column("name")
    t.add_column("deep labels")
    t.add_column("parameters (default)")
    for n, d in tasks.items():
        t.add_row(esc(n), esc(", ".join(d["deep_labels"])), esc(", ".join(f"{k}={v['default']}" for k, v in d["params"].items())))
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
        from fingerprint.registry import bound_text

        for n, d in extractors.items():
            bounds = d.get("bounds") or {}
            e.add_row(*(esc(v) for v in (n, d.get("kind"), d.get("output"), d.get("version"), d.get("source"))),
                      esc(", ".join(f"{k}={v}" + (f" ({bound_text(*bounds[k])})" if k in bounds else "")
                                       for k, v in (d.get("params") or {}).items())))
        console.print(e)
    console.print(f"built-in configs: {esc(', '.join(data['configs']) or '(none)')}")
    console.print(f"fused CPU kernels for ReLU MLP training: {esc(data['cpu_kernels'])}")
