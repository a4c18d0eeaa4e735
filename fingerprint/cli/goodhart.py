"""``fingerprint goodhart``: a basin detector under selection pressure and under optimization pressure."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from fingerprint.cli import app, console, esc
from fingerprint.cli import options as o
from training.core.outputs import check_output


def _numbers(text: Optional[str], option: str) -> Optional[list[float]]:
    """``"0,0.1,1"`` -> ``[0.0, 0.1, 1.0]`` (None: the default)."""
    from training.core.errors import UserError  # deferred for start-up time

    if text is None:
        return None
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"{option} must be comma-separated numbers, got {text!r}") from None


@app.command("goodhart")
def goodhart_cmd(
    zoo_path: Path = typer.Argument(..., metavar="ZOO"),
    fp: str = typer.Option("ood-outputs", "--fp", help="Fingerprint of the detector: one computed from the models' outputs on fixed inputs (probe-outputs, ood-outputs, recombined-outputs, anomalous-inputs)."),
    basin: str = typer.Option(..., "--basin", help="The wanted basin (a value of --label, e.g. rule_a or clean)."),
    label: Optional[str] = typer.Option(None, "--label", help="Basin column (default: deep_label)."),
    lineage_column: str = typer.Option("init_seed", "--lineage", help="Init-family column: the split and the bootstrap keep a family together."),
    lambdas: Optional[str] = typer.Option(None, "--lambdas", help="Penalty weights to train at, comma-separated (default 0,0.001,0.003,0.01,0.03,0.1,0.3,1,3)."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Training steps at every lambda (default: a quarter of the sweep's, at most 200)."),
    keeps: Optional[str] = typer.Option(None, "--keep", help="Selection fractions, comma-separated (default 0.5,0.2,0.05,0.01 and finer ones the zoo allows)."),
    fit_fraction: float = typer.Option(0.5, "--fit-fraction", help="Share of the init families the detector is fit on; the rest are selected from and trained."),
    n_boot: int = typer.Option(200, "--n-boot", help="Family-bootstrap replicates of each interval."),
    seed: int = typer.Option(0, "--seed", help="random_state of the family split, the folds and the bootstrap."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the selection and optimization curves as JSON."),
    trust_code: bool = o.TRUST_OPTION,
    plugin: Optional[List[str]] = o.PLUGIN,
):
    """Select by a basin detector, and train against it: the true basin and the detector's verdict under each pressure."""
    o.load_plugin_options(plugin)
    from rich.table import Table

    from fingerprint.goodhart import goodhart  # deferred for start-up time (torch)
    from training.core.store import write_json  # deferred for start-up time

    if json_out:
        check_output(json_out, {"zoo": zoo_path}, option="--json", kind="file")
    lams = _numbers(lambdas, "--lambdas")
    kps = _numbers(keeps, "--keep")
    zoo = o.open_for_models(zoo_path, trust_code, None)
    with console.status(f"fitting the '{esc(basin)}' detector on {esc(fp)} and training against it"):
        r = goodhart(zoo, fp, basin, label, lineage_column, lams, steps, kps, fit_fraction, n_boot, seed)
    d = r["detector"]
    f = lambda v: "–" if v is None else f"{100 * v:.0f}%"  # noqa: E731
    ci = lambda c: "" if not c else f" [{100 * c[0]:.0f}, {100 * c[1]:.0f}]"  # noqa: E731
    auc = lambda v: "–" if v is None else f"{v:.2f}"  # noqa: E731
    console.print(f"detector of '{esc(basin)}' on {esc(fp)}: fit on {r['fit_families']} families ({r['n_fit']} models), "
                  f"AUROC {auc(d['cv_auroc'])} cross-validated, {auc(d['heldout_auroc'])} on the {r['n_heldout']} held-out "
                  f"models ({r['heldout_families']} families, {f(d['base_rate'])} in '{esc(basin)}')")
    t = Table(title="selection pressure: keep the held-out models the detector finds most B-like")
    for col in ("keep", "models", "detector says B", "truly B (purity)", "looks B only"):
        t.add_column(col, justify="right")
    for s in r["selection"]:
        t.add_row(f"{100 * s['keep']:g}%", str(s["n_selected"]), f(s["detector_says"]), f(s["purity"]) + ci(s["purity_ci"]),
                  f(s["looks_only"]) + ci(s["looks_only_ci"]))
    console.print(t)
    t = Table(title=f"optimization pressure: {r['settings']['steps']} training steps with penalty lambda * -log p(B)")
    for col in ("lambda", "models", "detector says B", "truly B", "evasion (says B, not B)"):
        t.add_column(col, justify="right")
    for p in r["optimization"]:
        t.add_row(f"{p['lambda']:g}", f"{p['n_models']}" + (f" (+{p['n_diverged']} diverged)" if p["n_diverged"] else ""),
                  f(p["detector_says"]) + ci(p["detector_says_ci"]), f(p["truly"]) + ci(p["truly_ci"]),
                  f(p["evasion"]) + ci(p["evasion_ci"]))
    console.print(t)
    console.print("stored in the zoo (results/goodhart.json): `fingerprint report` draws both curves")
    if json_out:
        write_json(json_out, r)
        console.print(f"wrote [bold]{esc(json_out)}[/]")
