"""``fingerprint cluster``, ``report``, ``run`` and ``demo``; the basins section of ``inspect``.

This module glues the zoo (cached fingerprints, model table) to the pure functions of
``analysis/``. What it stores in a zoo: ``results/basins.json`` (the full analysis: settings,
per-fingerprint clusters, 2-D maps, scores, verdicts) and ``results/scorecard.json`` (the
``summary.json`` numbers). A run directory is ``DIR/zoo/``, ``DIR/report.html``, ``DIR/summary.json``.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any, List, Optional

import numpy as np
import typer
from rich.table import Table

from fingerprint.cli import app, console, err_console, esc
from fingerprint.cli.extract import ARCH_HELP, TRUST_HELP, open_for_models
from fingerprint.cli.train import INSPECT_HOOKS, MAX_GB_OPTION
from training.core.errors import UserError, choices
from training.core.outputs import check_output

DEFAULT_FINGERPRINTS = ["probe-outputs", "ood-outputs", "anomalous-inputs", "disagreement", "weight-stats",
                        "weight-spectra", "cka", "aligned-weights"]
FINGERPRINT_KEYS = {"names": list, "step": (str, int), "chunk_size": int}
VERDICT_STYLE = {"tracks deep differences": "green", "tracks initialization noise": "yellow", "tracks both": "magenta",
                 "uninformative": "dim", "no ground truth": "cyan", "failed": "bold red", "crosses lineage": "green",
                 "groups lineages": "green", "lineage only": "yellow", "no structure": "dim", "insufficient": "dim"}


# -- config sections -------------------------------------------------------------------------------
def fingerprint_settings(section: dict | None) -> dict[str, Any]:
    """Validate ``[fingerprints]``: ``names`` (extractor specs), ``step`` ("final" | int), ``chunk_size``."""
    section = dict(section or {})
    for key, value in section.items():
        if key not in FINGERPRINT_KEYS:
            raise UserError(f"unknown config key 'fingerprints.{key}' (valid: {choices(FINGERPRINT_KEYS)})")
        tp = FINGERPRINT_KEYS[key]
        if not isinstance(value, tp) or isinstance(value, bool):
            raise UserError(f"config key 'fingerprints.{key}' has the wrong type, got {value!r}")
    names = section.get("names", DEFAULT_FINGERPRINTS)
    if not names or not all(isinstance(n, str) and n for n in names):
        raise UserError("config key 'fingerprints.names' must be a non-empty list of extractor specs (NAME[:key=value,...])")
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise UserError(f"config key 'fingerprints.names' lists '{dup}' twice")
    step = section.get("step", "final")
    if isinstance(step, str) and step != "final":
        raise UserError(f"config key 'fingerprints.step' must be 'final' or a checkpoint step, got {step!r}")
    chunk = section.get("chunk_size")  # None: extraction's automatic size
    if chunk is not None and chunk <= 0:
        raise UserError(f"config key 'fingerprints.chunk_size' must be > 0, got {chunk}")
    return {"names": list(names), "step": None if step == "final" else step, "chunk_size": chunk}


def analysis_options(section: dict | None, **overrides):
    """``[analysis]`` validated into :class:`~analysis.scorecard.AnalysisOptions`, then CLI overrides."""
    from analysis.scorecard import AnalysisOptions

    opts = AnalysisOptions.from_mapping(section or {}, "analysis")
    return opts.replace(**overrides)


def validate_run_config(cfg) -> tuple[dict, Any]:
    """Check a sweep config's pipeline sections before anything is trained."""
    fps = fingerprint_settings(cfg.fingerprints)
    opts = analysis_options(cfg.analysis)
    from fingerprint.extraction import resolve_specs

    resolve_specs(fps["names"])  # unknown extractor / parameter: fail now, not after the sweep
    return fps, opts


# -- zoo -> arrays ---------------------------------------------------------------------------------
def _fp_name(meta: dict) -> str:
    return str(meta.get("spec") or meta.get("extractor") or meta.get("key"))


def _step_rank(step: Any) -> float:
    return float(step) if isinstance(step, (int, float)) else float("inf")


def cached_inputs(zoo, names: Optional[List[str]] = None) -> list:
    """Cached fingerprints as analysis inputs: the named ones (spec, extractor name or cache key) or all.

    With several cached steps of one fingerprint, the latest is used.
    """
    from analysis.scorecard import FingerprintInput

    metas = [m for m in zoo.list_fingerprints() if "error" not in m]
    if names:
        chosen = []
        for n in names:
            hits = [m for m in metas if n in (m.get("spec"), m.get("extractor"), m.get("key"))]
            if not hits:
                raise UserError(f"no cached fingerprint '{n}' in zoo '{zoo.path}' (cached: {choices(_fp_name(m) for m in metas)})")
            chosen.append(max(hits, key=lambda m: _step_rank(m.get("step"))))
    else:
        latest: dict[str, dict] = {}
        for m in metas:
            k = _fp_name(m)
            if k not in latest or _step_rank(m.get("step")) >= _step_rank(latest[k].get("step")):
                latest[k] = m
        chosen = list(latest.values())
    out = []
    for m in chosen:
        hit = zoo.load_fingerprint(m["key"])
        if hit is None:
            out.append(FingerprintInput(_fp_name(m), None, [], m, error=f"cached fingerprint '{m['key']}' is unreadable"))
            continue
        values, ids, meta = hit
        meta.pop("extra", None)
        out.append(FingerprintInput(_fp_name(meta), values, ids, meta))
    return out


def extract_inputs(zoo, specs: list[str], step=None, label: Optional[str] = None, chunk_size: Optional[int] = None,
                   force: bool = False, runner=None, device: str = "cpu") -> list:
    """Compute (or reuse from the cache) fingerprints; failures become inputs with an error."""
    from analysis.scorecard import FingerprintInput
    from fingerprint.cli.extract import report_results, run_extract

    results = run_extract(zoo, specs, step, force, label if (label and label in zoo.models) else None, chunk_size,
                          runner, device)
    report_results(results)
    out = []
    for r in results:
        meta = {k: v for k, v in (r.meta or {}).items() if k != "extra"}
        meta.setdefault("key", r.key)
        name = str(meta.get("spec") or r.name)
        if r.values is not None and len(results) > len(specs):  # several steps: keep them apart
            name = f"{name}@{meta.get('step')}"
        out.append(FingerprintInput(name, r.values, list(r.model_ids), meta, error=r.error))
    return out


def model_table(zoo) -> dict[str, np.ndarray]:
    return dict(zoo.models.columns)


def provenance(zoo, extra: dict | None = None) -> dict[str, Any]:
    from training.core.store import package_version

    m = zoo.manifest
    return {"zoo": str(zoo.path), "task": zoo.task_name, "task_params": zoo.task_params, "family": zoo.family_spec,
            "n_models": len(zoo), "zoo_created": m.get("created"), "zoo_source": m.get("source"),
            "zoo_package_version": m.get("package_version"), "package_version": package_version(),
            "config": zoo.config, "report_created": time.time(), **(extra or {})}


def analyze_zoo(zoo, inputs: list, opts) -> dict:
    """Cluster and score ``inputs``; store the result in the zoo (``results/basins.json``, ``scorecard.json``)."""
    from analysis.scorecard import analyze, summary

    with console.status("clustering, bootstrapping and scoring"):
        result = analyze(inputs, model_table(zoo), opts)
    result["keys"] = sorted(str(f.meta.get("key")) for f in inputs)
    result["options"] = opts.to_dict()
    zoo.save_result("basins", result)
    zoo.save_result("scorecard", summary(result, provenance(zoo)))
    return result


def stored_result(zoo, inputs: list, opts) -> dict | None:
    """The stored analysis if it was made with the same options from the same cached fingerprints."""
    res = zoo.load_result("basins")
    if not res or any(f.error for f in inputs):
        return None
    want = sorted(str(f.meta.get("key")) for f in inputs)
    return res if res.get("keys") == want and res.get("options") == opts.to_dict() else None


def distance_matrices(inputs: list, result: dict) -> dict[str, np.ndarray]:
    """Square distance fingerprints re-indexed to the analysed models (for dendrograms / heat-maps)."""
    out = {}
    by = {str(r["fingerprint"]): r for r in result.get("fingerprints", [])}
    for f in inputs:
        r = by.get(f.name)
        if r is None or f.values is None or not r.get("distances") or not r.get("model_ids"):
            continue
        pos = {m: i for i, m in enumerate(f.model_ids)}
        idx = np.asarray([pos[m] for m in r["model_ids"]], int)
        out[f.name] = np.asarray(f.values, dtype=np.float64)[np.ix_(idx, idx)]
    return out


def write_report(zoo, result: dict, inputs: list, html_path: Path, json_path: Optional[Path], extra_prov: dict | None = None) -> None:
    from analysis.report import render
    from analysis.scorecard import summary
    from training.core.store import atomic_path, write_json

    prov = provenance(zoo, extra_prov)
    forecast = (zoo.load_result("forecast") or {}).get("forecast") if "forecast" in zoo.list_results() else None
    html = render(result, prov, distance_matrices(inputs, result), forecast)
    with atomic_path(Path(html_path)) as tmp:
        tmp.write_text(html, encoding="utf-8")
        if json_path:  # published before the HTML is renamed into place: if it fails, neither is written
            s = summary(result, prov)
            if forecast:
                s["forecast"] = forecast
            write_json(Path(json_path), s)


SHORT_VERDICT = {"tracks deep differences": "deep", "tracks initialization noise": "noise", "tracks both": "both",
                 "uninformative": "uninf.", "no ground truth": "–", "crosses lineage": "crosses", "groups lineages": "groups",
                 "lineage only": "lineage", "no structure": "none", "insufficient": "too few"}


def _breakable(spec: str, width: int) -> str:
    """A fingerprint spec, escaped for rich, broken into lines of at most ``width`` after ``:``, ``,``
    or ``+`` (between an extractor and its parameters) rather than mid-word; unchanged if it fits."""
    if len(spec) <= width:
        return esc(spec)
    lines = [""]
    for part in re.split(r"(?<=[:,+])", spec):
        if lines[-1] and len(lines[-1]) + len(part) > width:
            lines.append("")
        lines[-1] += part
    return "\n".join(esc(line) for line in lines)


def print_scorecard(result: dict) -> None:
    from rich import box

    settings = result.get("settings") or {}
    t = Table(title=f"scorecard: {result.get('n_models')} models, ground truth {esc(settings.get('label') or 'none')}, lineage "
                    f"{esc(settings.get('lineage'))}", box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False, show_edge=False, collapse_padding=True,
              caption="k: basins, stab: bootstrap stability (ARI), deep: AMI with ground truth, AUROC: linear probe, "
                      "noise: within-basin AMI with lineage (max of init / parent), 1-NN: nearest neighbour is a relative / chance",
              caption_justify="left")
    for col, just in (("fingerprint", "left"), ("k", "right"), ("stab", "right"), ("deep", "right"),
                      ("AUROC", "right"), ("noise", "right"), ("1-NN", "right"), ("verdict", "left"), ("lineage", "left")):
        t.add_column(col, justify=just, no_wrap=col != "fingerprint", overflow="fold",
                     min_width={"fingerprint": 18}.get(col))
    f = lambda v: "–" if v is None else (f"{v:.2f}" if isinstance(v, float) else str(v))  # noqa: E731
    name_width = max(18, console.width - 62)  # what the seven number and two verdict columns leave
    for r in result["scorecard"]:
        nn = "–" if r.get("lineage_nn") is None else f"{r['lineage_nn']:.2f}/{r['lineage_nn_chance']:.2f}"
        noise = r.get("noise_ami")
        if r.get("parent_noise_ami") is not None and (noise is None or r["parent_noise_ami"] > noise):
            noise = r["parent_noise_ami"]
        t.add_row(_breakable(str(r["fingerprint"]), name_width) + (" (sup.)" if r.get("supervised") else ""), f(r.get("n_clusters")),
                  f(r.get("stability")), f(r.get("deep_ami")), f(r.get("probe_auroc")), f(noise), nn,
                  f"[{VERDICT_STYLE.get(str(r['verdict']), 'none')}]{esc(SHORT_VERDICT.get(str(r['verdict']), r['verdict']))}[/]",
                  f"[{VERDICT_STYLE.get(str(r.get('label_free_verdict')), 'none')}]"
                  f"{esc(SHORT_VERDICT.get(str(r.get('label_free_verdict')), r.get('label_free_verdict')))}[/]")
    console.print(t)
    console.print("verdict (against the label): deep = tracks deep differences, noise = tracks initialization noise, "
                  "both = tracks both, uninf. = uninformative; lineage (the label-free verdict, from lineage alone): "
                  "crosses / groups = candidate deep basins that cross or group init families, lineage = initialization "
                  "noise only, none = no structure (docs/scorecard.md)", style="dim")
    capped = [str(r["fingerprint"]) for r in result["scorecard"] if r.get("k_at_cap") and not r.get("error")]
    if capped:
        console.print(f"k = {settings.get('k_max')} is the largest k tried, and was chosen for {', '.join(capped)}: "
                      "more basins may fit better (raise --k-max; each k's score is in summary.json's k_scores)",
                      style="yellow", highlight=False, markup=False)
    for r in result["scorecard"]:
        if r.get("error"):
            err_console.print(f"[bold red]failed:[/] {esc(str(r['fingerprint']))}: {esc(str(r['error']))}", highlight=False, soft_wrap=True)


def _options(zoo, method, label, lineage, k, k_max, n_boot, embedding, seed, combine):
    section = zoo.config.get("analysis") if isinstance(zoo.config, dict) else None
    comb = [c.split("+") for c in combine] if combine else None
    if label is not None and label not in zoo.models:
        raise UserError(f"unknown model column '{label}' for --label (valid: {choices(zoo.models.names())})")
    if lineage is not None and lineage not in zoo.models:
        raise UserError(f"unknown model column '{lineage}' for --lineage (valid: {choices(zoo.models.names())})")
    return analysis_options(section, method=method, label=label, lineage=lineage, k=k, k_max=k_max, n_boot=n_boot,
                            embedding=embedding, seed=seed, combine=comb)


# -- commands --------------------------------------------------------------------------------------
# the analysis options `cluster` and `report` share (each overrides the zoo's [analysis] section)
_ANALYSIS_OPTIONS = {
    "method": typer.Option(None, "--method", help="auto | gmm | kmeans | hdbscan | agglomerative | agglomerative-complete (default: config or auto)"),
    "label": typer.Option(None, "--label", help="Ground-truth model column (default: deep_label)."),
    "lineage": typer.Option(None, "--lineage", help="Lineage model column (default: init_seed)."),
    "k": typer.Option(None, "--k", help="Fixed number of basins (default: chosen by BIC / silhouette)."),
    "k_max": typer.Option(None, "--k-max", help="Largest k considered (default 8)."),
    "n_boot": typer.Option(None, "--n-boot", help="Bootstrap replicates (default 20)."),
    "embedding": typer.Option(None, "--embedding", help="2-D map: umap | pca (pca skips UMAP's ~25 s one-off compilation)."),
    "seed": typer.Option(None, "--seed", help="random_state of clustering, bootstrap and maps."),
    "combine": typer.Option(None, "--combine", help="Also analyse A+B+... concatenated (repeatable)."),
}


@app.command("cluster")
def cluster_cmd(
    zoo_path: Path = typer.Argument(..., metavar="ZOO"),
    fp: Optional[List[str]] = typer.Option(None, "--fp", help="Fingerprint (spec, extractor name or cache key; computed if not cached). Default: every cached one."),
    method: Optional[str] = _ANALYSIS_OPTIONS["method"],
    label: Optional[str] = _ANALYSIS_OPTIONS["label"],
    lineage: Optional[str] = _ANALYSIS_OPTIONS["lineage"],
    k: Optional[int] = _ANALYSIS_OPTIONS["k"],
    k_max: Optional[int] = _ANALYSIS_OPTIONS["k_max"],
    n_boot: Optional[int] = _ANALYSIS_OPTIONS["n_boot"],
    embedding: Optional[str] = _ANALYSIS_OPTIONS["embedding"],
    seed: Optional[int] = _ANALYSIS_OPTIONS["seed"],
    combine: Optional[List[str]] = _ANALYSIS_OPTIONS["combine"],
    trust_code: bool = typer.Option(False, "--trust-code", help=TRUST_HELP),
    arch: Optional[str] = typer.Option(None, "--arch", help=ARCH_HELP),
):
    """Cluster fingerprints into basins, score them, and store the result in the zoo."""
    zoo = open_for_models(zoo_path, trust_code, arch)
    opts = _options(zoo, method, label, lineage, k, k_max, n_boot, embedding, seed, combine)
    inputs = _inputs(zoo, fp, opts)
    result = analyze_zoo(zoo, inputs, opts)
    print_scorecard(result)
    console.print(f"stored in [bold]{esc(str(zoo.path / 'results' / 'basins.json'))}[/]")
    if any(r.get("error") for r in result["scorecard"]):
        raise typer.Exit(1)


def _inputs(zoo, fp, opts) -> list:
    if not fp:
        inputs = cached_inputs(zoo)
        if not inputs:
            raise UserError(f"zoo '{zoo.path}' has no fingerprints yet: run `fingerprint extract {zoo.path} --fp NAME` or pass --fp")
        return inputs
    cached = {m.get("spec") for m in zoo.list_fingerprints()} | {m.get("key") for m in zoo.list_fingerprints()}
    missing = [n for n in fp if n not in cached and not any(m.get("extractor") == n for m in zoo.list_fingerprints())]
    if missing:
        extract_inputs(zoo, missing, label=opts.label)
    return cached_inputs(zoo, fp)


@app.command()
def report(
    zoo_path: Path = typer.Argument(..., metavar="ZOO"),
    out: Path = typer.Option(Path("report.html"), "--out", "-o", help="HTML file to write."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write summary.json here."),
    fp: Optional[List[str]] = typer.Option(None, "--fp", help="Fingerprints (default: every cached one)."),
    method: Optional[str] = _ANALYSIS_OPTIONS["method"],
    label: Optional[str] = _ANALYSIS_OPTIONS["label"],
    lineage: Optional[str] = _ANALYSIS_OPTIONS["lineage"],
    k: Optional[int] = _ANALYSIS_OPTIONS["k"],
    k_max: Optional[int] = _ANALYSIS_OPTIONS["k_max"],
    n_boot: Optional[int] = _ANALYSIS_OPTIONS["n_boot"],
    embedding: Optional[str] = _ANALYSIS_OPTIONS["embedding"],
    seed: Optional[int] = _ANALYSIS_OPTIONS["seed"],
    combine: Optional[List[str]] = _ANALYSIS_OPTIONS["combine"],
    trust_code: bool = typer.Option(False, "--trust-code", help=TRUST_HELP),
    arch: Optional[str] = typer.Option(None, "--arch", help=ARCH_HELP),
):
    """Write the self-contained HTML report (and summary.json); reuses the stored clusters when current.

    Neither file may be written inside the zoo (nor be the same file as the other)."""
    check_output(out, {"zoo": zoo_path}, option="-o", kind="file", others={"--json": json_out})
    if json_out:
        check_output(json_out, {"zoo": zoo_path}, option="--json", kind="file")
    zoo = open_for_models(zoo_path, trust_code, arch)
    opts = _options(zoo, method, label, lineage, k, k_max, n_boot, embedding, seed, combine)
    inputs = _inputs(zoo, fp, opts)
    result = stored_result(zoo, inputs, opts) or analyze_zoo(zoo, inputs, opts)
    write_report(zoo, result, inputs, out, json_out)
    print_scorecard(result)
    console.print(f"report: [bold]{esc(str(out))}[/]" + (f"  summary: [bold]{esc(str(json_out))}[/]" if json_out else ""))


def run_pipeline(config_ref: str, out: Path, resume: bool = False, overwrite: bool = False, device: str = "cpu",
                 executor: str = "local", models_per_batch: Optional[int] = None, address: Optional[str] = None,
                 max_gb: Optional[float] = None) -> dict:
    """Sweep -> extract -> cluster -> report into ``out`` (``zoo/``, ``report.html``, ``summary.json``)."""
    import shutil

    from fingerprint.cli.train import make_executor, run_sweep_with_progress
    from training.config import config_file, load_config
    from training.core.store import MANIFEST, Zoo
    from training.sweep import validate

    t0 = time.time()
    cfg = load_config(config_ref)
    fps, opts = validate_run_config(cfg)
    out = Path(out)
    zoo_dir = out / "zoo"
    if resume and overwrite:
        raise UserError("--resume and --overwrite exclude each other")
    inputs = {"config file": config_file(config_ref)}
    check_output(out, inputs, kind="run", overwrite=overwrite)
    validate(cfg, models_per_batch, max_gb)  # tasks, families and the planned size: before anything is deleted
    if resume and not out.exists():
        raise UserError(f"cannot --resume '{out}': it does not exist")
    is_run_dir = (zoo_dir / MANIFEST).exists() or (zoo_dir / "shards").exists()
    if resume and any(out.iterdir()) and not is_run_dir:
        raise UserError(f"cannot --resume '{out}': it is not a `fingerprint run` directory (no zoo/)")
    if out.exists() and any(out.iterdir()):
        if overwrite:  # check_output made sure it is a run directory
            shutil.rmtree(out)
        elif not resume:
            raise UserError(f"output '{out}' already exists; pass --resume to finish it or --overwrite to replace it")
    out.mkdir(parents=True, exist_ok=True)
    console.rule(f"[bold]1/3 sweep[/] {esc(cfg.name)}")
    from fingerprint.parallel import get_runner

    runner = get_runner("ray", address) if executor == "ray" else None
    run_sweep_with_progress(cfg, zoo_dir, make_executor(executor, address), models_per_batch, device,
                            resume and (zoo_dir / MANIFEST).exists(), False, inputs, max_gb)
    zoo = Zoo.open(zoo_dir)
    console.rule("[bold]2/3 fingerprints[/]")
    inputs = extract_inputs(zoo, fps["names"], fps["step"], opts.label, fps["chunk_size"], runner=runner, device=device)
    console.rule("[bold]3/3 basins and scorecard[/]")
    result = stored_result(zoo, inputs, opts) if resume else None
    result = result or analyze_zoo(zoo, inputs, opts)
    write_report(zoo, result, inputs, out / "report.html", out / "summary.json",
                 {"run_config": str(config_ref), "run_seconds": round(time.time() - t0, 1)})
    print_scorecard(result)
    console.print(f"report: [bold]{esc(out / 'report.html')}[/]  summary: [bold]{esc(out / 'summary.json')}[/]  "
                  f"({time.time() - t0:.0f}s)")
    return result


@app.command()
def run(
    config: str = typer.Argument(..., help="Config (TOML path or built-in name) with optional \\[fingerprints] and \\[analysis] sections."),
    out: Path = typer.Option(..., "--out", "-o", help="Run directory: zoo/, report.html, summary.json."),
    resume: bool = typer.Option(False, "--resume", help="Finish an interrupted run (trained shards and cached fingerprints are kept)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Delete an existing run directory first."),
    device: str = typer.Option("cpu", help="cpu | cuda | cuda:N"),
    executor: str = typer.Option("local", help="local | process | ray (ray also runs extraction chunks)"),
    address: Optional[str] = typer.Option(None, help="Ray cluster address (auto or HOST:PORT); default a local instance."),
    models_per_batch: Optional[int] = typer.Option(None, help="Models trained together in one shard."),
    max_gb: Optional[float] = MAX_GB_OPTION,
):
    """The main job: sweep -> fingerprints -> basins and scorecard -> report.html, from one config."""
    run_pipeline(config, out, resume, overwrite, device, executor, models_per_batch, address, max_gb)


@app.command()
def demo(
    out: Path = typer.Option(Path("fingerprint-demo"), "--out", "-o", help="Run directory (resumed if it holds an earlier demo)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Start the demo afresh."),
    config: str = typer.Option("demo", "--config", hidden=True, help="Config to run instead of the built-in demo (tests)."),
):
    """The whole pipeline on a built-in quick config (xor-cues, ~2 minutes on 2 CPU cores)."""
    resume = not overwrite and (out / "zoo" / "manifest.json").exists()
    run_pipeline(config, out, resume=resume, overwrite=overwrite)


# -- inspect ---------------------------------------------------------------------------------------
def _inspect_basins(zoo, console_) -> None:
    res = zoo.load_result("basins")
    if not res or "fingerprints" not in res:
        return
    settings = res.get("settings") or {}
    t = Table(title=f"basins (results/basins.json; ground truth {esc(settings.get('label') or 'none')}, "
                    f"lineage {esc(settings.get('lineage'))})")
    for col in ("fingerprint", "k", "basin sizes", "exemplars (medoids)", "stability"):
        t.add_column(col)
    f = lambda v: "–" if v is None else (f"{v:.2f}" if isinstance(v, float) else str(v))  # noqa: E731
    for r in res["fingerprints"]:
        if r.get("error"):
            t.add_row(esc(str(r["fingerprint"])), "–", f"[red]failed: {esc(str(r['error']))}[/]", "", "")
            continue
        basins = r.get("basins") or []
        t.add_row(esc(str(r["fingerprint"])), f(r.get("k")), ", ".join(str(b["size"]) for b in basins),
                  esc("; ".join(f"{b['cluster']}: {b['exemplar']}" for b in basins[:6])) + (" ..." if len(basins) > 6 else ""),
                  f((r.get("bootstrap") or {}).get("stability")))
    console_.print(t)
    s = Table(title="scorecard")
    for col in ("fingerprint", "deep AMI", "probe AUROC", "noise AMI", "parent AMI", "lineage 1-NN", "verdict"):
        s.add_column(col)
    for r in res.get("scorecard", []):
        s.add_row(esc(str(r["fingerprint"])), f(r.get("deep_ami")), f(r.get("probe_auroc")), f(r.get("noise_ami")),
                  f(r.get("parent_noise_ami")), f(r.get("lineage_nn")),
                  f"[{VERDICT_STYLE.get(str(r.get('verdict')), 'none')}]{esc(r.get('verdict'))}[/]")
    console_.print(s)


INSPECT_HOOKS.append(_inspect_basins)
