"""The basins CLI end to end on real zoos: cluster, report (HTML + summary.json), column options and
their errors, escaping, inspect, and the report rendered by a real headless browser."""

from __future__ import annotations

import html
import json
import re
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

import fingerprint
from fingerprint import Zoo
from tests.conftest import run_cli
from training.config import load_config
from training.sweep import run_sweep

BIN = [sys.executable, "-m", "fingerprint.cli"]
FAST = ("--embedding", "pca", "--n-boot", "4")  # UMAP's one-off compilation costs ~25 s per process
FPS = ("probe-outputs", "disagreement", "weight-stats")  # features and distances
VERDICTS = {"tracks deep differences", "tracks initialization noise", "tracks both", "uninformative", "no ground truth"}
ROW_KEYS = {"fingerprint", "n_clusters", "deep_ami", "noise_ami", "stability", "verdict"}


def cli(*args) -> subprocess.CompletedProcess:
    """The command in this process (``run_cli``), 250 columns wide: rich tables do not wrap model ids."""
    return run_cli(*args, env={"COLUMNS": "250"})


def ok(res: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert res.returncode == 0, (res.returncode, res.stdout[-2000:], res.stderr[-2000:])
    return res


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 24-model xor-cues zoo, clustered and reported through the CLI."""
    from tests.conftest import TINY

    root = tmp_path_factory.mktemp("report")
    cfg = root / "tiny.toml"
    cfg.write_text(TINY.format(mpb=8))
    zoo = root / "zoo"
    run_sweep(load_config(cfg), zoo)
    clustered = ok(cli("cluster", zoo, *[a for f in FPS for a in ("--fp", f)], *FAST))  # computes the fingerprints
    stored = json.loads((zoo / "results" / "basins.json").read_text())
    ok(cli("report", zoo, "-o", root / "report.html", "--json", root / "summary.json", *FAST))
    return SimpleNamespace(root=root, zoo=zoo, stdout=clustered.stdout, stored=stored,
                           html=(root / "report.html").read_text(),
                           summary=json.loads((root / "summary.json").read_text()))


def test_cluster_stores_basins_and_report_reuses_them(run):
    assert "scorecard: 24 models, ground truth deep_label, lineage init_seed" in run.stdout
    assert sorted(r["fingerprint"] for r in run.stored["scorecard"]) == sorted(FPS)
    for r in run.stored["fingerprints"]:
        assert r["error"] is None and len(r["clusters"]) == r["n_models"] == 24
        assert sum(b["size"] for b in r["basins"]) == 24
    # same options, same cached fingerprints: report did not recluster
    now = json.loads((run.zoo / "results" / "basins.json").read_text())
    assert now["created"] == run.stored["created"]


def test_a_stored_analysis_is_drawn_by_two_processes_with_the_same_bytes(run, tmp_path):
    """``report`` on a stored analysis shares its sections between a second process and this one
    (``SectionDrawer.draw_ahead``); the figures and the page are those one process draws alone."""
    from tests.conftest import run_cli

    ok(run_cli("report", run.zoo, "-o", tmp_path / "one.html", *FAST, env={"BASIN_FINGERPRINT_JOBS": "1"}))
    shared, alone = run.root / "figures", tmp_path / "one-figures"  # one.html: its own figures directory
    pngs = sorted(p.name for p in shared.glob("*.png"))
    assert pngs and pngs == sorted(p.name for p in alone.glob("*.png"))
    for name in pngs:
        assert (shared / name).read_bytes() == (alone / name).read_bytes(), name
    strip = lambda html: re.sub(r"report_created&#34;: [0-9.]+", "", html)  # noqa: E731
    assert strip(run.html) == strip((tmp_path / "one.html").read_text())


def test_summary_json_schema(run):
    s = run.summary
    top = {"version", "settings", "n_models", "scorecard", "best_deep", "n_failed", "fingerprints", "provenance",
           "label_free_answer"}
    assert top <= set(s)
    answer = s["label_free_answer"]  # analysis.answer: every deep verdict is in exactly one candidate
    deep = {f["fingerprint"] for f in s["fingerprints"] if f["label_free"]["verdict"] in ("crosses lineage", "groups lineages")}
    assert sorted(f for c in answer["candidates"] for f in c["fingerprints"]) == sorted(deep)
    assert answer["sentence"] and f"Label-free answer</b>: {answer['sentence']}" in html.unescape(run.html)
    # a sweep's own columns are its outcomes (losses, accuracies): not tested against the fingerprints
    assert all("metadata_gradient" not in f for f in s["fingerprints"]) and answer["gradients"] == {}
    assert s["n_models"] == 24 and s["n_failed"] == 0
    assert s["settings"]["label"] == "deep_label" and s["settings"]["lineage"] == "init_seed"
    assert s["settings"]["thresholds"] == {"deep_ami": 0.3, "noise_ami": 0.3, "probe_auroc": 0.85, "lineage_auc": 0.9}
    assert isinstance(s["scorecard"], list) and len(s["scorecard"]) == len(FPS)
    for row in s["scorecard"]:
        assert isinstance(row, dict) and ROW_KEYS <= set(row)
        assert row["fingerprint"] in FPS and row["verdict"] in VERDICTS
        assert isinstance(row["n_clusters"], int) and 1 <= row["n_clusters"] <= 8
        for key in ("deep_ami", "noise_ami", "stability"):
            assert row[key] is None or -1 <= row[key] <= 1
    ids = Zoo.open(run.zoo).model_ids
    for f in s["fingerprints"]:
        assert sorted(f["assignments"]) == sorted(ids)
        assert "embedding" not in f and "model_ids" not in f
    assert s["provenance"]["task"] == "xor-cues" and Path(s["provenance"]["zoo"]) == run.zoo


def test_label_and_lineage_columns(run, tmp_path):
    zoo = tmp_path / "zoo"
    shutil.copytree(run.zoo, zoo)  # a different analysis overwrites results/basins.json
    ok(cli("report", zoo, "-o", tmp_path / "r.html", "--json", tmp_path / "s.json", "--label", "kind",
           "--lineage", "data_seed", "--combine", "probe-outputs+weight-stats", *FAST))
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["settings"]["label"] == "kind" and s["settings"]["lineage"] == "data_seed"
    rows = {r["fingerprint"]: r for r in s["scorecard"]}
    assert set(rows) == {*FPS, "probe-outputs+weight-stats"}
    for r in rows.values():
        # 4 data orders as lineage: a probe or basins at the permutation floor of 4 families say so
        assert r["error"] is None and r["deep_ami"] is not None
        assert r["verdict"] in VERDICTS - {"no ground truth"} or r["verdict"] == "insufficient: 4 families", r
    for f in s["fingerprints"]:
        assert set(f["scores"]["noise_ami_per_basin"]) <= {"base", "spawn", "finetune"}
        assert {b for basin in f["basins"] for b in basin["labels"]} <= {"base", "spawn", "finetune"}
    page = (tmp_path / "r.html").read_text()
    assert "ground truth <code>kind</code>" in page and "lineage <code>data_seed</code>" in page


def test_unknown_column_is_a_one_line_error_naming_the_valid_ones(run, tmp_path, monkeypatch, capsys):
    names = ", ".join(sorted(Zoo.open(run.zoo).models.names()))
    res = cli("report", run.zoo, "--lineage", "nope", "-o", tmp_path / "r.html")
    assert res.returncode == 2, (res.stdout, res.stderr)
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert lines == [f"error: unknown model column 'nope' for --lineage (valid: {names})"]
    assert not (tmp_path / "r.html").exists()
    # the same entry point in this process (saves a second interpreter start)
    from fingerprint.cli import main

    monkeypatch.setattr(sys, "argv", ["fingerprint", "cluster", str(run.zoo), "--label", "nope"])
    with pytest.raises(SystemExit) as e:
        main()
    assert e.value.code == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert err == [f"error: unknown model column 'nope' for --label (valid: {names})"]


def test_a_report_with_a_failed_fingerprint_is_written_and_exits_1(run, tmp_path):
    """README, exit statuses: 1 is done in part. A fingerprint that fails (here a layer the models do not
    have) is a row marked failed and a line naming it; the report is written for the others, and the
    status says it is partial, as cluster's does (an outside audit: report exited 0)."""
    zoo = shutil.copytree(run.zoo, tmp_path / "zoo")  # a report stores its analysis: not in the shared zoo
    res = cli("report", zoo, "-o", tmp_path / "r.html", "--json", tmp_path / "s.json", "--fp", "probe-outputs",
              "--fp", "cka:layer=nope", *FAST)
    assert res.returncode == 1, (res.stdout[-2000:], res.stderr[-2000:])
    assert "unknown activation 'nope' (valid: " in res.stdout + res.stderr
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["n_failed"] == 1 and (tmp_path / "r.html").exists()


def test_unwritable_summary_leaves_no_report(run, tmp_path):
    """`--json` naming a directory: a one-line error, and no HTML written before it failed."""
    res = cli("report", run.zoo, "-o", tmp_path / "r.html", "--json", tmp_path, *FAST)
    assert res.returncode == 2, (res.stdout, res.stderr)
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and str(tmp_path) in lines[0], lines
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_html_is_self_contained(run):
    page = run.html
    assert page.startswith("<!DOCTYPE html>")
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    for tag in ("<script", "<link", "<iframe", "@import"):
        assert tag not in page.lower()
    assert all(v.startswith("#") for v in re.findall(r"url\(\s*[\"']?([^)\"']*)", page))  # clip paths inside the SVG
    assert all(v.startswith("data:image/png;base64,") for v in re.findall(r"\bsrc\s*=\s*[\"']([^\"']*)", page))
    # links inside the page, and the heat-map's pixels inside its SVG
    assert all(v.startswith(("#", "data:image/png;base64,")) for v in re.findall(r"\bhref\s*=\s*[\"']([^\"']*)", page))
    namespaces = {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}
    assert set(re.findall(r"https?://[^\s\"'<>)]*", page)) <= namespaces  # SVG namespaces only
    for name in FPS:
        assert f"id='fp-{''.join(c if c.isalnum() else '-' for c in name)}'" in page
    assert page.count('-heatmap"') == 1  # one heat-map: the one distance fingerprint


def test_every_figure_is_also_a_png_and_a_pdf_beside_the_report(run):
    """Issue 21 item 5: the figures, ready for a paper, in figures/ next to report.html."""
    names = re.findall(r'<figure class="plot" id="fig-([^"]+)"', run.html)
    assert len(names) >= 3 * 5 and len(set(names)) == len(names)  # per fingerprint: 3 maps, sizes, family tree
    for n in names:
        assert (run.root / "figures" / f"{n}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (run.root / "figures" / f"{n}.pdf").read_bytes()[:5] == b"%PDF-"
    assert sorted(p.stem for p in (run.root / "figures").iterdir()) == sorted(names * 2)
    png = png_pixels((run.root / "figures" / "disagreement-heatmap.png").read_bytes())
    assert png.shape[0] > 400 and png.shape[1] > 400  # 200 dpi


def test_figures_have_ticks_labels_legends_and_their_own_palettes(run):
    page = run.html
    for chunk in page.split('<figure class="plot"')[1:]:
        svg = chunk.split("</figure>")[0]
        assert re.search(r'id="[xy]tick_\d+".*?<text', svg, re.S), svg[:200]  # tick labels as text
    clusters = page.split('id="fig-weight-stats-clusters"')[1].split("</figure>")[0]
    truth = page.split('id="fig-weight-stats-ground-truth"')[1].split("</figure>")[0]
    assert "cluster 0" in clusters and "ground truth" in truth and ">rule_a<" in truth.replace("</text>", "<")
    fill = lambda svg: set(re.findall(r"fill: (#[0-9a-f]{6})", svg)) - {"#ffffff", "#000000", "#333333"}  # noqa: E731
    assert fill(clusters) and fill(truth) and not fill(clusters) & fill(truth)  # never "cluster 2 and rule_b both red"
    lineage = page.split('id="fig-weight-stats-lineage"')[1].split("</figure>")[0]
    assert re.search(r"init family \(4\): members joined", lineage)  # 4 init seeds (children share theirs)


# -- escaping --------------------------------------------------------------------------------------
EVIL_IDS = ["<script>alert(0)</script>"] + [f"m{i}[final]<b>" for i in range(1, 12)]
EVIL_LABELS = ["<script>x</script>" if i % 2 else "<i>plain</i>" for i in range(12)]
EVIL_FAMILIES = [f"<img src=x onerror=alert(1)>{i % 3}" for i in range(12)]


@pytest.fixture(scope="module")
def evil(tmp_path_factory):
    """An imported zoo whose model ids and metadata are HTML and rich markup, clustered and reported."""
    root = tmp_path_factory.mktemp("evil")
    torch.manual_seed(0)
    mods = [nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2)) for _ in range(12)]
    zoo = Zoo.from_modules(mods, out=root / "zoo", model_ids=EVIL_IDS,
                           metadata={"label": EVIL_LABELS, "family": EVIL_FAMILIES},
                           probes={"in_dist": torch.randn(16, 4, generator=torch.Generator().manual_seed(1))})
    assert all(r.error is None for r in fingerprint.extract(zoo, ["probe-outputs", "weight-stats"]))
    ok(cli("report", root / "zoo", "-o", root / "r.html", "--json", root / "s.json", "--label", "label",
           "--lineage", "family", *FAST))
    return SimpleNamespace(zoo=root / "zoo", html=(root / "r.html").read_text(),
                           basins=json.loads((root / "zoo" / "results" / "basins.json").read_text()))


def test_model_ids_and_labels_are_html_escaped(evil):
    page = evil.html
    assert "<script" not in page
    for raw in ("<img src=x", "<i>plain</i>", "[final]<b>"):
        assert raw not in page
    for text in (*EVIL_IDS, *set(EVIL_LABELS), *set(EVIL_FAMILIES)):
        assert html.escape(text) in page  # shown, as text
    assert "ground truth <code>label</code>" in page


def test_inspect_prints_model_ids_verbatim(evil):
    out = ok(cli("inspect", evil.zoo)).stdout
    exemplars = {b["exemplar"] for r in evil.basins["fingerprints"] for b in r["basins"]}
    assert exemplars and all(e in out for e in exemplars)


# -- inspect ---------------------------------------------------------------------------------------
def test_inspect_shows_basins_after_cluster(run):
    out = ok(cli("inspect", run.zoo)).stdout
    title = "basins (results/basins.json; ground truth deep_label, lineage init_seed)"
    assert title in out
    basins, scorecard = out.split(title)[1].split("scorecard")[:2]
    for r in run.stored["fingerprints"]:
        line = next(line for line in basins.splitlines() if line.startswith(f"│ {r['fingerprint']} "))
        cells = [c.strip() for c in line.strip("│").split("│")]
        assert cells[:3] == [r["fingerprint"], str(r["k"]), ", ".join(str(b["size"]) for b in r["basins"])]
        assert f"{r['bootstrap']['stability']:.2f}" == cells[4]
        for b in r["basins"][:6]:
            assert f"{b['cluster']}: {b['exemplar']}" in basins
    from analysis import verdicts

    for r in run.stored["scorecard"]:  # laid out as the report's scorecard: name, 6 numbers, the two verdicts
        line = next(line for line in scorecard.splitlines() if line.startswith(f"{r['fingerprint']} "))
        cells = line.split()
        assert cells[7] == verdicts.style(r["verdict"]).short
        assert " ".join(cells[8:]).startswith(verdicts.style(r["label_free_verdict"]).short)


# -- a real browser --------------------------------------------------------------------------------
CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)


def chromium(profile: Path, url: str, *args: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Run headless chromium; return the process and its console messages (errors, CSP violations)."""
    res = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}",
                          "--enable-logging=stderr", "--v=0", *args, url], capture_output=True, text=True, timeout=120)
    console = [line for line in res.stderr.splitlines() if re.search(r":CONSOLE[:(]", line) or "Uncaught" in line]
    return res, console


def png_pixels(data: bytes) -> np.ndarray:
    """Decode an 8-bit non-interlaced PNG to ``[h, w, channels]`` (PIL when installed, else zlib + unfiltering)."""
    try:
        import io

        from PIL import Image

        return np.asarray(Image.open(io.BytesIO(data)))
    except ImportError:
        pass
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, ihdr = 8, [], None
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos : pos + 4])
        tag, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + n]
        pos += 12 + n
        if tag == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif tag == b"IDAT":
            idat.append(body)
    w, h, depth, ctype, _, _, interlace = ihdr
    assert depth == 8 and ctype in (0, 2, 4, 6) and interlace == 0, ihdr
    bpp = {0: 1, 2: 3, 4: 2, 6: 4}[ctype]
    raw = zlib.decompress(b"".join(idat))
    stride = w * bpp
    out = np.zeros((h, stride), np.uint8)
    prev = np.zeros(stride, np.int64)
    for y in range(h):
        f = raw[y * (stride + 1)]
        line = np.frombuffer(raw, np.uint8, stride, y * (stride + 1) + 1).astype(np.int64)
        if f == 0:
            cur = line
        elif f == 1:  # Sub: a running sum per channel
            cur = np.cumsum(line.reshape(w, bpp), 0).reshape(-1) & 255
        elif f == 2:  # Up
            cur = (line + prev) & 255
        else:  # Average / Paeth depend on the reconstructed left neighbour: byte by byte
            rec, filt, up = [0] * stride, line.tolist(), prev.tolist()
            for i in range(stride):
                a = rec[i - bpp] if i >= bpp else 0
                b = up[i]
                if f == 3:
                    pred = (a + b) >> 1
                else:
                    c = up[i - bpp] if i >= bpp else 0
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                rec[i] = (filt[i] + pred) & 255
            cur = np.asarray(rec, np.int64)
        out[y] = cur
        prev = cur
    return out.reshape(h, w, bpp)


def test_png_decoder_reads_matplotlibs_png():
    import io

    from matplotlib.image import imsave

    img = np.random.default_rng(0).integers(0, 256, (7, 5, 3)).astype(np.uint8)
    buf = io.BytesIO()
    imsave(buf, img, format="png")
    assert np.array_equal(png_pixels(buf.getvalue())[..., :3], img)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_report_renders_in_a_headless_browser_without_console_errors(run, tmp_path):
    profile = tmp_path / "profile"
    # the harness sees console errors: a page that logs one is caught
    canary = tmp_path / "canary.html"
    canary.write_text("<!DOCTYPE html><html><body><script>console.error('canary-error'); nope()</script></body></html>")
    _, console = chromium(profile, canary.as_uri(), "--dump-dom")
    assert any("canary-error" in line for line in console) and any("Uncaught" in line for line in console), console

    url = (run.root / "report.html").as_uri()
    shot = tmp_path / "shot.png"
    res, console = chromium(profile, url, "--dump-dom", f"--screenshot={shot}", "--window-size=1280,2000",
                            "--hide-scrollbars")
    assert res.returncode == 0, res.stderr[-2000:]
    assert console == []  # no script errors, no Content-Security-Policy violations
    dom = res.stdout
    assert "<h1>Basin fingerprint report</h1>" in dom and "</html>" in dom
    n_points = sum(r["n_models"] * (1 + (r["label_values"] is not None) + (r["lineage_values"] is not None))
                   for r in run.stored["fingerprints"])
    assert len(re.findall(r"<title>[^<]*: cluster -?\d+", dom)) == n_points  # every point of every map, with its tooltip
    figures = dom.split('<figure class="plot"')[1:]
    assert len(figures) == len(re.findall(r'<figure class="plot"', run.html)) >= 15
    for fig in figures:  # each figure is an SVG in the DOM with tick labels as text
        assert "<svg" in fig.split("</figure>")[0]
        ticks = re.findall(r'id="[xy]tick_\d+".*?<text[^>]*>([^<]+)</text>', fig.split("</figure>")[0], re.S)
        assert ticks and any(re.fullmatch(r"[−-]?[\d.]+", t.strip()) for t in ticks), fig[:300]
    assert 'id="fig-disagreement-dendrogram"' in dom and 'id="fig-disagreement-heatmap"' in dom

    assert shot.exists() and shot.stat().st_size > 10_000
    px = png_pixels(shot.read_bytes())[..., :3]
    assert px.shape == (2000, 1280, 3)
    rgb = px.astype(np.int32)
    codes = (rgb[..., 0] << 16 | rgb[..., 1] << 8 | rgb[..., 2]).reshape(-1)
    assert len(np.unique(codes)) > 200  # text, plots and a heat-map, not a blank page
    assert (codes == 0xFFFFFF).mean() < 0.97
    assert (codes == 0xF4F4F4).sum() > 1000  # the table headers' background: the inline CSS applied
    assert (codes == 0x1F77B4).sum() > 50  # the first cluster colour: the figures were painted
