"""``fingerprint probe-search``: look for the inputs that split the population into camps of families."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from fingerprint.cli import app, console, esc
from fingerprint.cli import options as o


@app.command("probe-search")
def probe_search(
    zoo_path: Path = typer.Argument(..., metavar="ZOO"),
    from_set: str = typer.Option("ood", "--from", help="Probe set the candidate inputs are generated from."),
    lineage: str = typer.Option("init_seed", "--lineage", help="Model column of init families (never a label)."),
    n_candidates: int = typer.Option(2048, "--n-candidates", min=64, help="Candidate inputs generated and scored."),
    keep: int = typer.Option(16, "--keep", min=1, help="Top inputs selected on each half of the families."),
    seed: int = typer.Option(0, "--seed", help="Seed of the candidates, the family halves and the null."),
    trust_code: bool = o.TRUST_OPTION,
    arch: Optional[str] = o.ARCH_OPTION,
):
    """Search for inputs whose outputs split the models into camps of init families that replicate on
    held-out families; cache the kept inputs' outputs as the 'probe-search' fingerprint."""
    from analysis.errors import AnalysisError  # deferred for start-up time
    from fingerprint.probesearch import search  # deferred for start-up time (torch)
    from training.core.errors import UserError  # deferred for start-up time

    zoo = o.open_for_models(zoo_path, trust_code, arch)
    try:
        res = search(zoo, from_set, lineage, n_candidates, keep, seed)
    except AnalysisError as e:
        raise UserError(str(e)) from None
    s = res.summary
    console.print(f"{s['candidates_scored']} candidates from '{esc(from_set)}', {s['n_models']} models in "
                  f"{s['n_families']} families of '{esc(lineage)}'", highlight=False)
    console.print(esc(s["message"]), highlight=False)
    for k in s["kept"][:5]:
        console.print(f"  input {k['candidate']}: score {k['score']:.2f}, q {k['q']:.3g}, camps of "
                      f"{len(k['camps'][0])} and {len(k['camps'][1])} families", highlight=False)
    if res.key:
        console.print(f"next: fingerprint cluster {esc(zoo_path)} --fp probe-search", highlight=False)
