"""``fingerprint extract``."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from fingerprint.cli import app, console, esc, open_zoo, print_error
from training.core.errors import UserError

TRUST_HELP = ("Allow importing the code this zoo names to run its models (an imported zoo's architecture factory, a "
              "sweep's module:Class task). Only for zoos from a source you trust: a zoo is data, and without this "
              "flag no code it names is ever imported.")
ARCH_HELP = "module:factory that builds an imported zoo's nn.Module: your own code, used instead of the one the zoo names."


def open_for_models(zoo_path: Path, trust_code: bool = False, arch: Optional[str] = None):
    """``open_zoo`` for commands that may run the zoo's models: with the user's consent to import
    the code it names (``--trust-code``), or with their own architecture factory (``--arch``)."""
    from fingerprint.population import use_architecture

    add_cwd_to_path()
    zoo = open_zoo(zoo_path)
    zoo.trust_code = trust_code
    if arch:
        use_architecture(zoo, arch)
    return zoo


def add_cwd_to_path() -> None:
    """Let a ``module:function`` the user names live in the working directory. Appended, never
    prepended: a file there (in a zoo one has cd'ed into, say) must not shadow an installed module."""
    import sys

    if str(Path.cwd()) not in sys.path:
        sys.path.append(str(Path.cwd()))


def labels_from(zoo, column: Optional[str]):
    if column is None:
        return None
    return dict(zip(zoo.model_ids, zoo.models[column]))


def run_extract(zoo, specs: list[str], step=None, force: bool = False, label: Optional[str] = None, chunk_size: Optional[int] = None,
                runner=None, device: str = "cpu"):
    from fingerprint.extraction import extract

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("models"),
                  TimeElapsedColumn(), console=console, transient=True, disable=not console.is_terminal) as progress:
        tasks: dict[str, int] = {}

        def on_progress(spec: str, done: int, total: int) -> None:
            if spec not in tasks:
                tasks[spec] = progress.add_task(esc(spec), total=total)  # the description is markup
            progress.update(tasks[spec], completed=done)

        return extract(zoo, specs, step=step, force=force, labels=labels_from(zoo, label), on_progress=on_progress,
                       chunk_size=chunk_size, runner=runner, device=device)


def report_results(results) -> int:
    failures = 0
    for r in results:
        if r.error:
            failures += 1
            print_error(str(r.error))
        else:
            extra = f" held-out AUROC {r.meta['heldout_auroc']:.3f}" if "heldout_auroc" in r.meta else ""
            console.print(f"{'cached ' if r.cached else 'computed'} {esc(format(str(r.meta.get('spec', r.name)), '<28'))} "
                          f"step {str(r.meta.get('step')):>6} {esc(r.meta.get('output', ''))} {list(r.values.shape)}{extra}")
    return failures


@app.command()
def extract(
    zoo_path: Path = typer.Argument(..., metavar="ZOO"),
    fp: List[str] = typer.Option(..., "--fp", help="Extractor spec NAME[:key=value,...] (repeatable; module:function for plugins)."),
    step: Optional[str] = typer.Option(None, "--step", help="Checkpoint step, 'final' (default) or 'all'."),
    force: bool = typer.Option(False, "--force", help="Recompute even when cached."),
    label: Optional[str] = typer.Option(None, "--label", help="Model column with labels for supervised extractors (e.g. deep_label)."),
    plugin: Optional[List[str]] = typer.Option(None, "--plugin", help="Import module:function extractors (repeatable)."),
    chunk_size: Optional[int] = typer.Option(None, min=1, help="Models per chunk for streaming extractors (default: as many as 64 MB of weights hold, 256 to 4096; 256 with --executor ray)."),
    executor: str = typer.Option("local", help="local | ray: where chunks of streaming extractors run."),
    address: Optional[str] = typer.Option(None, help="Ray cluster address (auto or HOST:PORT); default a local instance."),
    device: str = typer.Option("cpu", help="cpu | cuda | cuda:N"),
    trust_code: bool = typer.Option(False, "--trust-code", help=TRUST_HELP),
    arch: Optional[str] = typer.Option(None, "--arch", help=ARCH_HELP),
):
    """Compute fingerprints for a zoo (cached in the zoo)."""
    from fingerprint.parallel import get_runner
    from fingerprint.registry import load_plugin
    from training.sweep import check_device

    add_cwd_to_path()
    for p in plugin or []:
        load_plugin(p)
    zoo = open_for_models(zoo_path, trust_code, arch)
    if label is not None and label not in zoo.models:
        raise UserError(f"unknown model column '{label}' (valid: {', '.join(zoo.models.names())})")
    check_device(device)
    runner = get_runner(executor, address)
    failures = report_results(run_extract(zoo, list(fp), step, force, label, chunk_size, runner, device))
    if failures:
        raise typer.Exit(1)
