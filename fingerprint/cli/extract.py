"""``fingerprint extract``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import List, Optional

import typer

from fingerprint.cli import app, console, err_console, esc, interrupt_said, open_zoo
from fingerprint.cli import options as o
from fingerprint.cli.display import RichProgress
from training.core.errors import UserError


@app.command()
def extract(
    zoo_path: Path = typer.Argument(..., metavar="ZOO"),
    fp: Optional[List[str]] = typer.Option(None, "--fp", help="Extractor spec NAME[:key=value,...] (repeatable; module:function[:key=value] for plugins). Default: the standard set that applies to this zoo."),
    step: Optional[str] = typer.Option(None, "--step", help="Checkpoint step, 'final' (default) or 'all'."),
    force: bool = typer.Option(False, "--force", help="Recompute even when cached."),
    label: Optional[str] = typer.Option(None, "--label", help="Model column with labels for supervised extractors (e.g. deep_label)."),
    plugin: Optional[List[str]] = o.PLUGIN,
    chunk_size: Optional[int] = typer.Option(None, min=1, help="Models per chunk for streaming extractors (default: as many as 64 MB of weights hold, at most 4096; at most 256 with --executor ray)."),
    executor: str = typer.Option("local", help="local | ray: where chunks of streaming extractors run."),
    address: Optional[str] = typer.Option(None, help="Ray cluster address (auto or HOST:PORT); default a local instance."),
    device: str = typer.Option("cpu", help="cpu | cuda | cuda:N"),
    trust_code: bool = o.TRUST_OPTION,
    arch: Optional[str] = o.ARCH_OPTION,
    forget_failed: bool = typer.Option(False, "--forget-failed", help="Drop the zoo's record of fingerprints whose extraction failed (a later report names them as missing), e.g. a spec written wrong; with no --fp, do nothing else."),
):
    """Compute fingerprints for a zoo (cached in the zoo)."""
    from fingerprint import pipeline  # deferred for start-up time (torch)
    from fingerprint.parallel import get_runner  # deferred for start-up time
    from training.sweep import check_device  # deferred for start-up time

    o.add_cwd_to_path()  # also for --fp module:function without --plugin
    o.load_plugin_options(plugin)
    if forget_failed:
        dropped = pipeline.forget_failures(open_zoo(zoo_path))
        console.print(f"dropped the record of {len(dropped)} failed extraction{'' if len(dropped) == 1 else 's'}"
                      + (f": {esc(', '.join(dropped))}" if dropped else ""), highlight=False, soft_wrap=True)
        if not fp:
            return
    zoo = o.open_for_models(zoo_path, trust_code, arch)
    if label is not None and label not in zoo.models:
        raise UserError(f"unknown model column '{label}' (valid: {', '.join(zoo.models.names())})")
    check_device(device)
    runner = get_runner(executor, address)
    skipped = {} if fp else pipeline.skipped_defaults(zoo)
    if skipped:  # the standard set, less what this import cannot give: say so, once
        console.print(esc(pipeline.skipped_text(skipped)), highlight=False, soft_wrap=True)
    unread = "" if fp else pipeline.unread_probe_sets(zoo)
    if unread:
        console.print(esc(unread), highlight=False, soft_wrap=True)
    specs = list(fp or pipeline.default_fingerprints(zoo, skipped))
    started = time.time()  # an interrupted run names the entries it saved (their meta's `created`), not a scan made ahead
    with RichProgress() as progress:
        try:
            results = pipeline.compute(zoo, specs, step, force, label, chunk_size, runner, device, progress)
        except KeyboardInterrupt:  # click would exit 130 silently: say what is kept
            progress.close()
            new = [m for m in zoo.list_fingerprints() if float(m.get("created") or 0.0) >= started]
            names = ", ".join(str(m.get("spec") or m.get("extractor")) for m in new)
            err_console.print(f"interrupted; {len(new)} fingerprint{'' if len(new) == 1 else 's'} computed by this run "
                              f"{'are' if len(new) != 1 else 'is'} cached{': ' + esc(names) if new else ''}; the same "
                              "command computes the rest (nothing half-written is kept)", highlight=False, soft_wrap=True)
            interrupt_said()
            raise typer.Exit(130) from None
    if any(r.error for r in results):  # each said in its own line; the exit status: fingerprint.cli's convention
        raise typer.Exit(2 if all(r.error for r in results) else 1)
