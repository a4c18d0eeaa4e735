"""``fingerprint transfer``: does a basin classifier fit on small models work on larger ones?"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from fingerprint.cli import app, console, esc
from fingerprint.cli import options as o
from training.core.outputs import check_output


@app.command("transfer")
def transfer_cmd(
    zoo_path: Path = typer.Argument(..., metavar="ZOO"),
    fp: str = typer.Option("probe-outputs", "--fp", help="Fingerprint to classify with: one whose columns mean the same at every scale (outputs on the probe set)."),
    fit: str = typer.Option(..., "--fit", help="The models to fit on, by their group setting: KEY=VALUE[,KEY=VALUE] (e.g. model.width=16)."),
    label: Optional[str] = typer.Option(None, "--label", help="Basin column (default: deep_label)."),
    lineage_column: str = typer.Option("init_seed", "--lineage", help="Init-family column: folds and intervals keep a family together."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the per-scale table as JSON."),
    trust_code: bool = o.TRUST_OPTION,
    arch: Optional[str] = o.ARCH_OPTION,
):
    """Fit a basin classifier on one scale's models; AUROC, accuracy and basin shares at every scale."""
    from rich.table import Table

    from fingerprint.transfer import transfer  # deferred for start-up time (torch)
    from training.core.store import write_json  # deferred for start-up time

    if json_out:
        check_output(json_out, {"zoo": zoo_path}, option="--json", kind="file")
    zoo = o.open_for_models(zoo_path, trust_code, arch)
    with console.status(f"extracting {fp} and fitting on {fit}"):
        r = transfer(zoo, fp, fit, label, lineage_column)
    t = Table(title=f"{esc(r['label'])} classifier on {esc(r['fingerprint'])}, fit on {esc(r['fit_on'])}")
    for col in ("scale", "models", "AUROC", "95% CI", "accuracy", "true shares", "predicted shares"):
        # the scale whole (outside audit 124: every row read `model.wid…` in 80 columns); the shares may wrap
        t.add_column(col, justify="left" if col in ("scale", "true shares", "predicted shares") else "right",
                     no_wrap=col == "scale", min_width=max((len(str(s["scale"])) for s in r["scales"]), default=5)
                     if col == "scale" else None)
    f = lambda v: "–" if v is None else f"{v:.2f}"
    shares = lambda d: " ".join(f"{k} {100 * v:.0f}%" for k, v in d.items()) or "–"
    for s in r["scales"]:
        ci = f"{s['auroc_ci'][0]:.2f}-{s['auroc_ci'][1]:.2f}" if s["auroc_ci"] else "–"
        t.add_row(esc(s["scale"]) + (" (fit, cross-validated)" if s["fit"] else ""), str(s["n_models"]), f(s["auroc"]), ci,
                  f(s["accuracy"]) + (f" ({s['accuracy_ci'][0]:.2f}-{s['accuracy_ci'][1]:.2f})" if s.get("accuracy_ci") else ""),
                  esc(shares(s["basin_shares"])), esc(shares(s["predicted_shares"])))
    console.print(t)
    if json_out:
        write_json(json_out, r)
        console.print(f"wrote [bold]{esc(json_out)}[/]")
