"""``fingerprint cluster``, ``report``, ``run`` and ``demo``: argument parsing over :mod:`fingerprint.pipeline`.

The pipeline (and what it imports: torch, scikit-learn) is imported inside each command, so that
``fingerprint --help`` starts in a fraction of a second.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import List, Optional

import typer

from fingerprint.cli import (
    app,
    console,
    err_console,
    esc,
    interrupt_said,
    print_warning,
)
from fingerprint.cli import options as o
from fingerprint.cli.display import (
    RichProgress,
    missing_line,
    print_basins,
    print_scorecard,
)
from training.core.outputs import check_output


def _analysis(zoo_path, fp, trust_code, arch, **overrides):
    """Open the zoo, resolve its analysis options and the fingerprints to analyse."""
    from fingerprint import pipeline  # deferred for start-up time

    zoo = o.open_for_models(zoo_path, trust_code, arch)
    combine, strata, covariate = overrides.pop("combine"), overrides.pop("strata"), overrides.pop("covariate")
    opts = pipeline.options_for(zoo, combine=[c.split("+") for c in combine] if combine else None,
                                strata=list(strata) if strata else None,
                                covariates=list(covariate) if covariate else None,
                                exclude=o.exclude_ids(overrides.pop("exclude")), **overrides)
    with RichProgress() as progress:
        inputs = pipeline.inputs_for(zoo, fp, opts.label, progress)
    return zoo, opts, inputs


@app.command("cluster")
def cluster_cmd(
    zoo_path: Path = typer.Argument(..., metavar="ZOO"),
    fp: Optional[List[str]] = typer.Option(None, "--fp", help="Fingerprint (spec, extractor name or cache key; defaults merged, computed if not cached). Default: every cached one."),
    method: Optional[str] = o.METHOD, label: Optional[str] = o.LABEL, lineage: Optional[str] = o.LINEAGE,
    k: Optional[int] = o.K, k_max: Optional[int] = o.K_MAX, n_boot: Optional[int] = o.N_BOOT,
    embedding: Optional[str] = o.EMBEDDING, seed: Optional[int] = o.SEED, combine: Optional[List[str]] = o.COMBINE,
    n_perm: Optional[int] = o.N_PERM, alpha: Optional[float] = o.ALPHA, strata: Optional[List[str]] = o.STRATA,
    covariate: Optional[List[str]] = o.COVARIATE, exclude: Optional[List[str]] = o.EXCLUDE,
    trust_code: bool = o.TRUST_OPTION, arch: Optional[str] = o.ARCH_OPTION,
    plugin: Optional[List[str]] = o.PLUGIN,
):
    """Cluster fingerprints into basins, score them, and store the result in the zoo."""
    from fingerprint import pipeline  # deferred for start-up time

    o.load_plugin_options(plugin)

    zoo, opts, inputs = _analysis(zoo_path, fp, trust_code, arch, method=method, label=label, lineage=lineage, k=k,
                                  k_max=k_max, n_boot=n_boot, embedding=embedding, seed=seed, combine=combine,
                                  n_perm=n_perm, alpha=alpha, strata=strata,
                                  covariate=covariate, exclude=exclude)
    with RichProgress() as progress:
        result = pipeline.analyze(zoo, inputs, opts, progress)
    print_basins(zoo, scorecard=False)
    print_scorecard(result, zoo)
    console.print(f"stored in [bold]{esc(str(zoo.path / 'results' / 'basins.json'))}[/]")
    if any(r.error for r in result.scorecard):
        raise typer.Exit(1)


@app.command()
def report(
    zoo_path: Path = typer.Argument(..., metavar="ZOO"),
    out: Path = typer.Option(Path("report.html"), "--out", "-o", help="HTML file to write."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write summary.json here."),
    fp: Optional[List[str]] = typer.Option(None, "--fp", help="Fingerprints (default: every cached one)."),
    method: Optional[str] = o.METHOD, label: Optional[str] = o.LABEL, lineage: Optional[str] = o.LINEAGE,
    k: Optional[int] = o.K, k_max: Optional[int] = o.K_MAX, n_boot: Optional[int] = o.N_BOOT,
    embedding: Optional[str] = o.EMBEDDING, seed: Optional[int] = o.SEED, combine: Optional[List[str]] = o.COMBINE,
    n_perm: Optional[int] = o.N_PERM, alpha: Optional[float] = o.ALPHA, strata: Optional[List[str]] = o.STRATA,
    covariate: Optional[List[str]] = o.COVARIATE, exclude: Optional[List[str]] = o.EXCLUDE,
    trust_code: bool = o.TRUST_OPTION, arch: Optional[str] = o.ARCH_OPTION,
    plugin: Optional[List[str]] = o.PLUGIN,
):
    """Write the self-contained HTML report (and summary.json); reuses the stored clusters when current.

    Neither file may be written inside the zoo (nor be the same file as the other)."""
    from fingerprint import pipeline  # deferred for start-up time

    o.load_plugin_options(plugin)

    check_output(out, {"zoo": zoo_path}, option="-o", kind="file", others={"--json": json_out})
    pipeline.check_figures_dir(pipeline.figures_dir(out), zoo_path, json_out)  # the figures' PNG and PDF, before any analysis
    if json_out:
        check_output(json_out, {"zoo": zoo_path}, option="--json", kind="file")
    zoo, opts, inputs = _analysis(zoo_path, fp, trust_code, arch, method=method, label=label, lineage=lineage, k=k,
                                  k_max=k_max, n_boot=n_boot, embedding=embedding, seed=seed, combine=combine,
                                  n_perm=n_perm, alpha=alpha, strata=strata,
                                  covariate=covariate, exclude=exclude)
    missing = [] if fp else pipeline.not_in_report(zoo, inputs)  # every cached one: say which failed to extract
    with contextlib.ExitStack() as stack:
        with RichProgress() as progress:  # the fingerprints' figures drawn meanwhile, in a second process
            result, drawn = stack.enter_context(pipeline.report_analysis(zoo, inputs, opts, progress))
        pipeline.write_report(zoo, result, inputs, out, json_out, drawn=drawn, missing=missing)
    print_scorecard(result, zoo)
    if missing:
        print_warning(missing_line(missing))
    console.print(f"report: [bold]{esc(str(out))}[/] (figures in {esc(pipeline.figures_dir(out))})"
                  + (f"  summary: [bold]{esc(str(json_out))}[/]" if json_out else ""))
    if any(r.error for r in result.scorecard):  # done in part, as cluster: the rest is written (an outside audit, 70)
        raise typer.Exit(1)


def run_pipeline(config: str, out: Path, resume: bool = False, overwrite: bool = False, device: str = "cpu",
                 executor: str = "local", models_per_batch: Optional[int] = None, address: Optional[str] = None,
                 max_gb: Optional[float] = None) -> dict:
    """:func:`fingerprint.pipeline.run` with bars, the scorecard printed, and Ctrl-C explained."""
    import time

    from fingerprint import pipeline  # deferred for start-up time

    t0 = time.time()
    with RichProgress() as progress:
        try:
            result = pipeline.run(config, out, resume, overwrite, device, executor, models_per_batch, address, max_gb, progress)
        except KeyboardInterrupt:  # click would exit 130 silently
            if not progress.in_sweep:
                raise
            progress.close()
            err_console.print(f"interrupted; finished shards are kept: rerun with --resume to train the rest into "
                              f"{esc(Path(out) / 'zoo')}", highlight=False, soft_wrap=True)
            interrupt_said()
            raise typer.Exit(130) from None
    print_scorecard(result)
    from training.core.store import Zoo  # deferred for start-up time

    for s in pipeline.selections(Zoo.open(Path(out) / "zoo")):
        pct = lambda v: "–" if v is None or v != v else f"{100 * v:.0f}%"  # noqa: E731
        console.print(f"selection: {s['n_selected']} of {s['n_pool']} seeds forecast for '{esc(s['basin'])}' at step "
                      f"{s['at_step']} ({pct(s['fraction'])} of training): purity {pct(s['purity'])}"
                      + (f" [{pct(s['purity_ci'][0])}, {pct(s['purity_ci'][1])}]" if s.get("purity_ci") else
                         " (no interval: under 4 init families)" if s.get("n_selected") else "")
                      + f" (base rate {pct(s['base_rate'])}), compute saved {pct(s['compute_saved'])}")
    console.print(f"report: [bold]{esc(Path(out) / 'report.html')}[/] (figures in {esc(Path(out) / 'figures')})  "
                  f"summary: [bold]{esc(Path(out) / 'summary.json')}[/]  "
                  f"({time.time() - t0:.0f}s)")
    return result


@app.command()
def run(
    config: str = typer.Argument(..., help="Config (TOML path or built-in name) with optional \\[fingerprints] and \\[analysis] sections."),
    out: Path = typer.Option(..., "--out", "-o", help="Run directory: zoo/, report.html, figures/, summary.json (and selected/)."),
    resume: bool = typer.Option(False, "--resume", help="Finish an interrupted run (trained shards and cached fingerprints are kept)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Delete an existing run directory first."),
    device: str = typer.Option("cpu", help="cpu | cuda | cuda:N"),
    executor: str = typer.Option("local", help="local | process | ray (ray also runs extraction chunks)"),
    address: Optional[str] = typer.Option(None, help="Ray cluster address (auto or HOST:PORT); default a local instance."),
    models_per_batch: Optional[int] = typer.Option(None, help="Models trained together in one shard."),
    max_gb: Optional[float] = o.MAX_GB_OPTION,
):
    """The main job: sweep -> fingerprints -> basins and scorecard -> report.html, from one config."""
    run_pipeline(config, out, resume, overwrite, device, executor, models_per_batch, address, max_gb)


@app.command()
def demo(
    out: Path = typer.Option(Path("fingerprint-demo"), "--out", "-o", help="Run directory (resumed if it holds an earlier demo)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Start the demo afresh."),
    config: str = typer.Option("demo", "--config", hidden=True, help="Config to run instead of the built-in demo (tests)."),
):
    """The whole procedure on a built-in quick config (xor-cues): basins, a forecast, a selection; ~2 minutes on 2 CPU cores."""
    resume = not overwrite and (out / "zoo" / "manifest.json").exists()
    console.print(f"demo: {'resuming' if resume else 'writing'} [bold]{esc(out)}[/] (zoo/, selected/, report.html, "
                  "figures/, summary.json)")
    run_pipeline(config, out, resume=resume, overwrite=overwrite)
