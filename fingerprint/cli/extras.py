"""``fingerprint import``: bring models trained elsewhere into a zoo."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from fingerprint.cli import app, console


@app.command("import")
def import_cmd(
    src: Path = typer.Argument(..., help="Directory of checkpoints: *.safetensors, *.pt or *.pth state_dicts."),
    arch: str = typer.Option(..., "--arch", help="module:factory that builds your nn.Module (no arguments)."),
    out: Path = typer.Option(..., "--out", "-o", help="Zoo directory to create."),
    metadata: Optional[Path] = typer.Option(None, "--metadata", help="CSV with a model_id column (= checkpoint file stem) and any others."),
    probes: Optional[str] = typer.Option(None, "--probes", help="module:function returning {name: inputs}, or a .pt/.safetensors file of named inputs."),
    layers: Optional[List[str]] = typer.Option(None, "--layers", help="Submodule names whose outputs extractors may read (repeatable)."),
    overwrite: bool = typer.Option(False, "--overwrite"),
):
    """Import a population of checkpoints trained elsewhere as a zoo."""
    import sys

    from rich.progress import Progress

    from fingerprint.importer import CHECKPOINT_SUFFIXES, import_checkpoints

    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))  # let module:factory name a file in the working directory
    n = len([p for p in src.iterdir() if p.suffix in CHECKPOINT_SUFFIXES]) if src.is_dir() else 0
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("checking checkpoints", total=max(n, 1))
        path = import_checkpoints(src, arch, out, metadata, probes, layers or [], overwrite,
                                  on_file=lambda _f: progress.advance(task))
    from fingerprint.zoo import Zoo

    zoo = Zoo.open(path)
    console.print(f"[green]imported[/] {len(zoo)} models into [bold]{path}[/] "
                  f"(columns: {', '.join(c for c in zoo.models.names() if c not in ('task', 'arch', 'group'))})")
