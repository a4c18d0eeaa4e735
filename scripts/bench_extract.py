"""Benchmark: vectorized extractors vs one ``nn.Module`` at a time, and pairwise extractors with landmarks.

Builds a population of ``--n-models`` models of the ``xor-cues-quick`` config (its MLP and task; the
seed grid is widened, lineage blocks are dropped and training is shortened to ``--train-steps``), or
uses ``--zoo``. Then, in one run:

(a) Every built-in feature extractor except the supervised ``learned-queries``, and the pairwise
    ``cka``, ``disagreement`` and ``lmc-barrier``, run three ways: *read + compute* (the weights
    read from the zoo, then the vectorized extractor with its output validation: the same work as
    the loop, and the speed-up the >= 10x target is judged on); through ``fingerprint.extract``
    (the same plus the atomic cache write, and streaming chunks where the model size calls for
    them); and *in memory* (the bare extractor on weights already loaded). All are compared with a
    baseline that reads the weights, then loads one model at a time into the family's plain
    ``nn.Module`` and computes the same quantity (batched over probes, looped over models, and over
    pairs for pairwise extractors). Results are asserted numerically equal (``allclose``, rtol =
    atol = 1e-4) and the speed-ups are printed.
    ``lmc-barrier``'s loop baseline runs on ``--n-lmc-loop`` models: a per-pair module loop over
    1,000 models would take hours.
(b) The pairwise extractors with every pair vs against ``--landmarks`` landmark models.
    ``lmc-barrier:landmarks=L`` is built in. ``cka`` and ``disagreement`` have no landmark option,
    so this script registers landmark variants that pick landmarks exactly like ``lmc-barrier``.
    All-pairs ``lmc-barrier`` costs O(n^2) forward passes, so it runs on ``--n-lmc`` models, and its
    cost at ``--n-models`` is extrapolated (measure it with ``--n-lmc 1000``). Each run is a fresh
    subprocess, so its peak memory (rise of the resident set over the run) is its own. The error of
    the landmark approximation is how well each model's row of distances to the landmarks, used as
    coordinates (which is how ``analysis`` uses an ``[n, L]`` fingerprint), reproduces the
    all-pairs geometry: Spearman correlation of pair distances, 10-nearest-neighbour recall, and
    the AMI between k-means basins (k = 3) found from each; plus, when the zoo has ``deep_label``,
    the AMI of each clustering with it.

Times are wall-clock: the best of up to 3 runs (fewer once a side has spent 10 s), after a warm-up
on a few models. On a busy machine the looped baselines slow down most (many tiny multi-threaded
ops), so check the load average printed in the header.

    python scripts/bench_extract.py [--n-models 1000] [--train-steps 100] [--n-lmc 300] [--landmarks 32]
                                    [--quick] [--zoo DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from fingerprint.batch import ModelBatch
from fingerprint.extraction import extract
from fingerprint.extractors.attribution import output_directions
from fingerprint.extractors.behavioural import anomalous_batch
from fingerprint.extractors.common import (
    correlation_normalize,
    default_layer,
    generator,
    probes,
    transform_outputs,
)
from fingerprint.extractors.mechanistic import _grams, balance_units, weight_match_one
from fingerprint.population import family_for, task_for
from fingerprint.registry import extractor, get_extractor
from training.core.store import Zoo

FEATURES = ["probe-outputs", "ood-outputs", "anomalous-inputs", "weight-stats", "weight-spectra", "gradients",
            "aligned-weights", "input-saliency"]
PAIRWISE = ["cka", "disagreement", "lmc-barrier"]


# -- the population ---------------------------------------------------------------------------------
def build_zoo(out: Path, n_models: int, steps: int) -> float:
    """Train ``n_models`` of the xor-cues-quick architecture for ``steps`` steps; returns seconds."""
    from training.config import SweepConfig, read_config_file
    from training.sweep import run_sweep

    data = read_config_file("xor-cues-quick")
    data.pop("spawn", None)
    data["name"] = f"bench-extract-{n_models}"
    data["seeds"] = {"init": n_models, "data": 1}
    data["train"] = {**data["train"], "steps": steps, "checkpoints": [steps]}
    t = time.perf_counter()
    run_sweep(SweepConfig.from_dict(data), out, overwrite=True)
    return time.perf_counter() - t


def one_at_a_time(zoo: Zoo, ids: list[str], balance: bool = False) -> Iterator[nn.Module]:
    """Each model in turn as the family's plain ``nn.Module`` (one module, reloaded: the cheap way);
    ``balance``: its ReLU units balanced first, one model at a time (as the weight extractors do)."""
    params = zoo.params(None, ids)
    groups = family_for(zoo).hidden_rescalable() if balance else {}
    module = family_for(zoo).module().eval()
    for j in range(len(ids)):
        one = balance_units({k: v[j : j + 1] for k, v in params.items()}, groups)[0]
        module.load_state_dict({k: v[0] for k, v in one.items()})
        yield module


def hidden(module: nn.Module, x: torch.Tensor, layer: str) -> torch.Tensor:
    """A named MLP activation (``layer{i}.pre`` / ``layer{i}.post``) of one module, via a forward hook."""
    sub, _, which = layer.rpartition(".")
    store: dict[str, torch.Tensor] = {}
    h = module.get_submodule(sub).register_forward_hook(lambda _m, _i, o: store.__setitem__("pre", o))
    try:
        module(x)
    finally:
        h.remove()
    return module.act(store["pre"]) if which == "post" else store["pre"]


# -- the baselines: the same quantities, one nn.Module at a time --------------------------------------
@torch.no_grad()
def loop_outputs(zoo, ids, x: torch.Tensor, transform: str, normalize: bool) -> np.ndarray:
    rows = [transform_outputs(m(x)[None], transform).flatten() for m in one_at_a_time(zoo, ids)]
    out = torch.stack(rows)
    return (correlation_normalize(out) if normalize else out).numpy()


def loop_probe_outputs(zoo, ids, probe_set, n_probes, transform):
    return loop_outputs(zoo, ids, _probes(zoo, probe_set, n_probes), transform, False)


def loop_ood_outputs(zoo, ids, probe_set, n_probes, transform):
    return loop_outputs(zoo, ids, _probes(zoo, probe_set, n_probes), transform, True)


def loop_anomalous_inputs(zoo, ids, n_random, scale, reference, seed, transform, n_tokens=64):
    # vector inputs (the benchmark's zoos); n_tokens is for token inputs only
    x = anomalous_batch(_view(zoo), n_random, scale, reference, seed)  # the inputs are shared, not per model
    return loop_outputs(zoo, ids, x, transform, True)


@torch.no_grad()
def loop_weight_stats(zoo, ids, quantiles, balance):
    q = torch.tensor([float(v) for v in quantiles])
    rows = []
    for m in one_at_a_time(zoo, ids, balance):
        cols = []
        for _, w in sorted(m.state_dict().items()):
            w = w.flatten().float()
            mu, sd = w.mean(), w.std(unbiased=False).clamp_min(1e-12)
            z = (w - mu) / sd
            cols += [mu, sd, w.abs().mean(), z.pow(3).mean(), z.pow(4).mean()]
            if len(q):
                cols += list(torch.quantile(w, q))
        rows.append(torch.stack(cols))
    return torch.stack(rows).numpy()


@torch.no_grad()
def loop_weight_spectra(zoo, ids, top_k, normalize, balance):
    rows = []
    for m in one_at_a_time(zoo, ids, balance):
        cols = []
        for _, w in sorted(m.state_dict().items()):
            if w.dim() < 2:
                continue
            s = torch.linalg.svdvals(w.flatten(1).float())
            if normalize:
                s = s / s.sum().clamp_min(1e-12)
            k = min(top_k, len(s)) if top_k > 0 else len(s)
            cols.append(nn.functional.pad(s[:k], (0, max(top_k - k, 0))))
        rows.append(torch.cat(cols))
    return torch.stack(rows).numpy()


def loop_gradients(zoo, ids, probe_set, n_probes, dim, seed):
    x = _probes(zoo, probe_set, n_probes)
    g = generator(seed)
    r = torch.randn(task_for(zoo).n_out, generator=g)
    shapes = family_for(zoo).param_shapes()
    names = sorted(shapes)
    # the extractor's random projections: the same draws, in the same order
    R = {k: torch.randn(math.prod(shapes[k]), dim, generator=g) / math.sqrt(dim) for k in names}
    rows = []
    for m in one_at_a_time(zoo, ids):
        p = {k: v.detach() for k, v in m.named_parameters()}

        def scalar(p, xi, m=m):
            return (functional_call(m, p, (xi.unsqueeze(0),))[-1] * r).sum()

        grads = vmap(grad(scalar), in_dims=(None, 0))(p, x)  # per-example grads of this model, {name: [P, ...]}
        rows.append(sum(grads[k].reshape(len(x), -1) @ R[k] for k in names).flatten())
    return torch.stack(rows).detach().numpy()


def loop_input_saliency(zoo, ids, probe_set, n_probes, dim, seed):
    x = _probes(zoo, probe_set, n_probes)
    dirs = output_directions(task_for(zoo).n_out, dim, seed)
    rows = []
    for m in one_at_a_time(zoo, ids):
        xi = x.clone().requires_grad_(True)
        out = m(xi)  # [P, n_out]
        sq = sum(torch.autograd.grad((out * u).sum(), xi, retain_graph=True)[0] ** 2 for u in dirs)
        rms = sq.reshape(len(x), -1).mean(0).sqrt()
        rows.append(rms / rms.sum())
    return torch.stack(rows).detach().numpy()


def loop_aligned_weights(zoo, ids, reference, iterations, start, balance):
    groups = family_for(zoo).hidden_permutable()
    ref = zoo_one(zoo, ids[reference])
    scaled = family_for(zoo).hidden_rescalable() if balance else {}
    ref = {k: v[0] for k, v in balance_units({k: v[None] for k, v in ref.items()}, scaled)[0].items()}
    rows = []
    for m in one_at_a_time(zoo, ids, balance):
        w = {k: v.clone() for k, v in m.state_dict().items()}
        perms = weight_match_one(w, ref, groups, iterations, start=start)  # the plain per-model algorithm
        for g, members in groups.items():
            for p, ax in members:
                w[p] = w[p].index_select(ax, perms[g])
        rows.append(torch.cat([w[k].flatten() for k in sorted(w)]))
    return torch.stack(rows).numpy()


@torch.no_grad()
def loop_cka(zoo, ids, layer, probe_set, n_probes, debiased, position="readout", balance=True):
    # `position` picks token positions of sequence models; the benchmark's MLP activations have none (used whole)
    if debiased:
        raise NotImplementedError("the loop baseline covers plain linear CKA")
    layer = layer or default_layer(_view(zoo))
    x = _probes(zoo, probe_set, n_probes)
    K = []
    for m in one_at_a_time(zoo, ids, balance):
        a = hidden(m, x, layer).double()
        a = a - a.mean(0)
        K.append(a @ a.T)  # centred Gram [P, P]
    n = len(K)
    hsic = torch.zeros(n, n, dtype=torch.float64)
    for i in range(n):  # every pair, once
        for j in range(i, n):
            hsic[i, j] = hsic[j, i] = (K[i] * K[j]).sum()
    d = hsic.diagonal().clamp_min(1e-30).sqrt()
    return (1.0 - (hsic / (d[:, None] * d[None, :])).float()).clamp_min(0.0).numpy()


@torch.no_grad()
def loop_disagreement(zoo, ids, probe_set, n_probes):
    x = _probes(zoo, probe_set, n_probes)
    pred = [m(x).argmax(-1) for m in one_at_a_time(zoo, ids)]
    n = len(pred)
    out = torch.zeros(n, n)
    for i in range(n):
        for j in range(i + 1, n):
            out[i, j] = out[j, i] = (pred[i] != pred[j]).float().mean()
    return out.numpy()


@torch.no_grad()
def loop_lmc_barrier(zoo, ids, n_probes, n_points, refine, align, landmarks, seed, pair_chunk):
    if align or landmarks:
        raise NotImplementedError("the loop baseline covers all pairs without alignment")
    task = task_for(zoo)
    x, y = task.train_set()
    x, y = x[:n_probes], y[:n_probes]
    grid = torch.linspace(0, 1, max(n_points, 3))
    params = zoo.params(None, ids)
    module = family_for(zoo).module().eval()
    golden = (5 ** 0.5 - 1) / 2

    def loss(theta: dict[str, torch.Tensor]) -> torch.Tensor:
        module.load_state_dict(theta)
        return nn.functional.cross_entropy(module(x), y.long())

    n = len(ids)
    models = [{k: v[j] for k, v in params.items()} for j in range(n)]
    end = [loss(t) for t in models]
    out = torch.zeros(n, n)
    for i in range(n):
        for j in range(i + 1, n):
            def f(a):
                return float(loss({k: (1 - a) * models[i][k] + a * models[j][k] for k in models[i]}) - ((1 - a) * end[i] + a * end[j]))
            vals = [f(a) for a in grid[1:-1]]
            k = max(range(len(vals)), key=vals.__getitem__)
            b = vals[k]
            if refine:  # golden-section search between the best grid point's neighbours, one pair at a time
                lo, hi = grid[k], grid[k + 2]
                c, d = hi - golden * (hi - lo), lo + golden * (hi - lo)
                fc, fd = f(c), f(d)
                b = max(b, fc, fd)
                for _ in range(refine - 1):
                    if fc > fd:
                        hi, d, fd = d, c, fc
                        c = hi - golden * (hi - lo)
                        fc = f(c)
                        b = max(b, fc)
                    else:
                        lo, c, fc = c, d, fd
                        d = lo + golden * (hi - lo)
                        fd = f(d)
                        b = max(b, fd)
            out[i, j] = out[j, i] = max(b, 0.0)
    return out.numpy()


LOOPS: dict[str, Callable[..., np.ndarray]] = {
    "probe-outputs": loop_probe_outputs, "ood-outputs": loop_ood_outputs, "anomalous-inputs": loop_anomalous_inputs,
    "weight-stats": loop_weight_stats, "weight-spectra": loop_weight_spectra, "gradients": loop_gradients,
    "input-saliency": loop_input_saliency, "aligned-weights": loop_aligned_weights, "cka": loop_cka, "disagreement": loop_disagreement,
    "lmc-barrier": loop_lmc_barrier,
}


def _view(zoo: Zoo) -> ModelBatch:
    """A model-less ModelBatch: the task and family, for building inputs exactly as the extractors do."""
    return ModelBatch(family_for(zoo), {}, task_for(zoo), [])


def _probes(zoo: Zoo, probe_set: str, n_probes: int) -> torch.Tensor:
    return probes(_view(zoo), probe_set, n_probes)


def zoo_one(zoo: Zoo, model_id: str) -> dict[str, torch.Tensor]:
    return {k: v[0] for k, v in zoo.params(None, [model_id]).items()}


# -- landmark variants of cka and disagreement (lmc-barrier has its own) ------------------------------
def pick_landmarks(n: int, landmarks: int, seed: int) -> np.ndarray:
    """The landmark rule of ``lmc-barrier``: a seeded sample without replacement, sorted."""
    return np.sort(np.random.default_rng(seed).choice(n, size=min(landmarks, n), replace=False))


@extractor("bench-cka-landmarks", kind="mechanistic", output="distances", streaming=False)
def cka_landmarks(models, landmarks: int = 32, seed: int = 0, layer: str = "", probe_set: str = "in_dist",
                  n_probes: int = 128):
    """1 - linear CKA of every model against ``landmarks`` landmark models: [n, landmarks]."""
    layer = layer or default_layer(models)
    K = _grams(models.activations(probes(models, probe_set, n_probes), [layer])[layer])
    flat = K.reshape(len(K), -1)
    lm = torch.as_tensor(pick_landmarks(len(K), landmarks, seed))
    hsic = flat @ flat[lm].T
    self_ = torch.linalg.vector_norm(flat, dim=1).pow(2)  # HSIC(K, K), without another [n, P*P] temporary
    out = (1.0 - (hsic / (self_[:, None] * self_[lm][None, :]).clamp_min(1e-30).sqrt()).float()).clamp_min(0.0)
    return out, {"landmarks": [models.model_ids[i] for i in lm]}


@extractor("bench-disagreement-landmarks", kind="behavioural", output="distances", streaming=False)
def disagreement_landmarks(models, landmarks: int = 32, seed: int = 0, probe_set: str = "ood", n_probes: int = 256):
    """Fraction of probes on which each model and each of ``landmarks`` landmark models disagree: [n, landmarks]."""
    out = models.forward(probes(models, probe_set, n_probes))
    onehot = nn.functional.one_hot(out.argmax(-1), out.shape[-1]).float().flatten(1)
    lm = torch.as_tensor(pick_landmarks(len(onehot), landmarks, seed))
    return 1.0 - onehot @ onehot[lm].T / out.shape[1], {"landmarks": [models.model_ids[i] for i in lm]}


# -- measuring --------------------------------------------------------------------------------------
def best_of(fn: Callable[[], Any], runs: int = 3, budget: float = 10.0) -> tuple[float, Any]:
    """Best wall time of up to ``runs`` calls, stopping once ``budget`` seconds are spent (noisy shared machines)."""
    best, out, spent = float("inf"), None, 0.0
    for _ in range(runs):
        t = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t
        best, spent = min(best, dt), spent + dt
        if spent > budget:
            break
    return best, out


def vectorized(zoo: Zoo, spec: str, ids: list[str]) -> np.ndarray:
    """The real path: ``extract`` (HDF5 reads, chunks, validation, cache write), recomputing."""
    res = extract(zoo, [spec], force=True, model_ids=ids)[0]
    if res.error:
        raise RuntimeError(res.error)
    return res.values


def read_and_compute(zoo: Zoo, name: str, ids: list[str]) -> np.ndarray:
    """The same work as the loop: read every model's weights from the zoo, then the vectorized
    extractor on them (with its output validation), without the cache write."""
    spec = get_extractor(name)
    return spec.compute(ModelBatch.from_zoo(zoo, ids), spec.params)[0]


def in_memory(zoo: Zoo, name: str, ids: list[str]) -> Callable[[], np.ndarray]:
    """Only the extractor: one ModelBatch of every model, already loaded, one call."""
    spec = get_extractor(name)
    mb = ModelBatch.from_zoo(zoo, ids)
    return lambda: spec.compute(mb, spec.params)[0]


def looped(zoo: Zoo, name: str, ids: list[str]) -> np.ndarray:
    """The baseline, with the extractor's own defaults, so both sides compute the same thing."""
    return LOOPS[name](zoo, ids, **get_extractor(name).params)


def compare(zoo: Zoo, name: str, ids: list[str], warm: int = 8) -> dict[str, Any]:
    vectorized(zoo, name, ids[:warm])  # warm-up: task data, probe sets, thread pools
    looped(zoo, name, ids[:warm])
    t_vec, v = best_of(lambda: vectorized(zoo, name, ids))
    t_read, _ = best_of(lambda: read_and_compute(zoo, name, ids))
    t_mem, _ = best_of(in_memory(zoo, name, ids))
    t_loop, l = best_of(lambda: looped(zoo, name, ids))
    if v.shape != l.shape:
        raise AssertionError(f"{name}: vectorized shape {v.shape} != loop shape {l.shape}")
    diff = float(np.abs(v - l).max())
    if not np.allclose(v, l, rtol=1e-4, atol=1e-4):
        raise AssertionError(f"{name}: vectorized and loop results differ (max |diff| {diff:.3g})")
    return {"extractor": name, "output": get_extractor(name).output, "n_models": len(ids), "shape": list(v.shape),
            "vectorized_s": t_vec, "read_compute_s": t_read, "in_memory_s": t_mem, "loop_s": t_loop,
            "speedup": t_loop / t_read, "speedup_extract": t_loop / t_vec, "speedup_in_memory": t_loop / t_mem,
            "max_abs_diff": diff}


def _status() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = int(line.split()[1]) * 1024
    return out


def _measure_in_child(zoo_path: str, spec: str, n: int) -> dict[str, Any]:
    """Runs in a fresh process: time and peak memory of one extraction of ``spec`` on the first ``n`` models."""
    zoo = Zoo.open(zoo_path)
    ids = zoo.model_ids[:n]
    vectorized(zoo, spec, ids[:64])  # warm-up
    rss0 = None
    try:  # reset the peak-RSS high-water mark to the current RSS (Linux >= 4.0)
        Path("/proc/self/clear_refs").write_text("5")
        rss0 = _status()["VmRSS"]
    except OSError:
        pass
    t = time.perf_counter()
    values = vectorized(zoo, spec, ids)
    dt = time.perf_counter() - t
    peak = _status()["VmHWM"] - rss0 if rss0 is not None else None
    meta = extract(zoo, [spec], model_ids=ids)[0].meta  # the cache hit: landmark ids
    return {"seconds": dt, "peak_bytes": peak, "values": values, "landmarks": meta.get("landmarks")}


def measure(zoo_path: Path, spec: str, n: int) -> dict[str, Any]:
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as ex:
        return ex.submit(_measure_in_child, str(zoo_path), spec, n).result()


def landmark_error(full: np.ndarray, rows: np.ndarray, lm_idx: np.ndarray, labels: np.ndarray | None = None,
                   k_nn: int = 10, k_basins: int = 3) -> dict[str, float]:
    """How well ``rows`` [n, L] (distances to landmarks, used as coordinates) reproduce ``full`` [n, n]."""
    from scipy.stats import spearmanr

    from analysis.clustering import cluster
    from analysis.metrics import ami

    n = len(full)
    approx = torch.cdist(torch.as_tensor(rows, dtype=torch.float64), torch.as_tensor(rows, dtype=torch.float64)).numpy()
    iu = np.triu_indices(n, 1)
    rho = float(spearmanr(full[iu], approx[iu]).statistic)
    f, a = full.copy(), approx.copy()
    np.fill_diagonal(f, np.inf)
    np.fill_diagonal(a, np.inf)
    nn_f, nn_a = np.argsort(f, 1)[:, :k_nn], np.argsort(a, 1)[:, :k_nn]
    recall = float(np.mean([len(set(x) & set(y)) / k_nn for x, y in zip(nn_f, nn_a)]))
    basins_full = cluster(full, "kmeans", distances=True, k=k_basins).labels
    basins_lm = cluster(rows, "kmeans", distances=False, k=k_basins).labels
    column_err = float(np.abs(full[:, lm_idx] - rows).max())  # the landmark columns themselves should be exact
    out = {"spearman": rho, f"nn{k_nn}_recall": recall, "basin_ami": ami(basins_full, basins_lm),
           "column_max_abs_err": column_err}
    if labels is not None:  # does either version find the planted basins (xor-cues deep_label)?
        out["deep_ami_all_pairs"] = ami(basins_full, labels)  # None when every model has the same label
        out["deep_ami_landmarks"] = ami(basins_lm, labels)
    return out


# -- main -------------------------------------------------------------------------------------------
def _num(v: float | None) -> str:
    return "n/a" if v is None or v != v else f"{v:.2f}"


def _mb(b: int | None) -> str:
    return "n/a" if b is None else f"{b / 2**20:.0f} MB"


EXTRACT_HEADER = ("| extractor | output | models | read + compute (s) | `extract` (s) | in memory (s) | loop (s) "
                  "| speed-up | via `extract` | in memory | max abs diff |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")


def print_extract_rows(rows: list[dict[str, Any]]) -> None:
    for r in rows:
        print(f"| {r['extractor']} | {r['output']} | {r['n_models']} | {r['read_compute_s']:.4f} | {r['vectorized_s']:.4f} | "
              f"{r['in_memory_s']:.4f} | {r['loop_s']:.3f} | **{r['speedup']:.1f}x** | {r['speedup_extract']:.1f}x | "
              f"{r['speedup_in_memory']:.1f}x | {r['max_abs_diff']:.1e} |", flush=True)


def print_pairwise_table(rows: list[dict[str, Any]]) -> None:
    deep = "deep_ami_all_pairs" in rows[0]
    print("| extractor | models | all pairs (s) | all pairs peak | landmarks | landmarks (s) | landmarks peak | Spearman "
          "| 10-NN recall | basin AMI" + (" | deep_label AMI all pairs / landmarks |" if deep else " |"))
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if deep else ""))
    for r in rows:
        deep_cols = f" | {_num(r['deep_ami_all_pairs'])} / {_num(r['deep_ami_landmarks'])} |" if deep else " |"
        print(f"| {r['extractor']} | {r['n_models']} | {_num(r['all_pairs_s'])} | {_mb(r['all_pairs_peak_bytes'])} | "
              f"{r['landmarks']} | {r['landmarks_s']:.2f} | {_mb(r['landmarks_peak_bytes'])} | {_num(r['spearman'])} | "
              f"{_num(r['nn10_recall'])} | {_num(r['basin_ami'])}" + deep_cols,
              flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-models", type=int, default=1000, help="population size for (a) and (b)")
    ap.add_argument("--train-steps", type=int, default=100, help="training steps of the built population")
    ap.add_argument("--n-lmc", type=int, default=300, help="models for all-pairs lmc-barrier in (b); its cost grows as n^2")
    ap.add_argument("--n-lmc-loop", type=int, default=32, help="models for the lmc-barrier loop baseline in (a)")
    ap.add_argument("--landmarks", type=int, default=32)
    ap.add_argument("--zoo", type=Path, default=None,
                    help="use this xor-cues zoo instead of training one (fingerprints get cached in it)")
    ap.add_argument("--quick", action="store_true", help="a smoke run: 200 models, 20 steps, n-lmc 100")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    args = ap.parse_args()
    if args.quick:
        args.n_models, args.train_steps, args.n_lmc, args.n_lmc_loop = 200, 20, 100, 16
    say = (lambda *a: None) if args.json else (lambda *a: print(*a, flush=True))

    t_start = time.perf_counter()
    tmp = None
    if args.zoo is None:
        tmp = Path(tempfile.mkdtemp(prefix="bench-extract-"))
        zoo_path = tmp / "zoo"
        t_train = build_zoo(zoo_path, args.n_models, args.train_steps)
        say(f"trained {args.n_models} xor-cues-quick models for {args.train_steps} steps in {t_train:.0f} s")
    else:
        zoo_path = args.zoo
    try:
        zoo = Zoo.open(zoo_path)
        ids = zoo.model_ids[: args.n_models]
        n = len(ids)
        fam = family_for(zoo)
        header = (f"{n} models ({fam.hparams()['arch']}, {fam.n_params()} params each), task {zoo.task_name}, "
                  f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores, "
                  f"load average {os.getloadavg()[0]:.1f}")
        say(header)
        if os.getloadavg()[0] > 0.5 * (os.cpu_count() or 1):
            say("warning: the machine is busy; the looped baselines suffer most (many tiny multi-threaded ops)")

        say("\n(a) vectorized (`extract`, and the extractor alone on loaded weights) vs one nn.Module at a time\n")
        rows = []
        for i, name in enumerate(FEATURES + PAIRWISE):
            rows.append(compare(zoo, name, ids[: args.n_lmc_loop] if name == "lmc-barrier" else ids))
            if not args.json:
                if i == 0:
                    print(EXTRACT_HEADER)
                print_extract_rows(rows[-1:])

        say(f"\n(b) pairwise: all pairs vs {args.landmarks} landmarks (each run in a fresh process)\n")
        L = args.landmarks
        n_lmc = min(args.n_lmc, n)
        labels = np.asarray(zoo.models["deep_label"])[: n] if "deep_label" in zoo.models else None
        runs = [("cka", f"bench-cka-landmarks:landmarks={L}", n),
                ("disagreement", f"bench-disagreement-landmarks:landmarks={L}", n),
                ("lmc-barrier", f"lmc-barrier:landmarks={L}", n_lmc)]
        pair_rows = []
        for name, lm_spec, m in runs:
            full = measure(zoo_path, name, m)
            lm = measure(zoo_path, lm_spec, m)
            err = landmark_error(full["values"].astype(np.float64), lm["values"].astype(np.float64),
                                 zoo.index(lm["landmarks"]), None if labels is None else labels[:m])
            row = {"extractor": name, "n_models": m, "landmarks": L, "all_pairs_s": full["seconds"],
                   "all_pairs_peak_bytes": full["peak_bytes"], "landmarks_s": lm["seconds"],
                   "landmarks_peak_bytes": lm["peak_bytes"], **err}
            pair_rows.append(row)
            if m != n:  # landmarks scale linearly: measure them at the full size too
                big = measure(zoo_path, lm_spec, n)
                pair_rows.append({"extractor": name, "n_models": n, "landmarks": L, "all_pairs_s": float("nan"),
                                  "all_pairs_peak_bytes": None, "landmarks_s": big["seconds"],
                                  "landmarks_peak_bytes": big["peak_bytes"], "all_pairs_s_extrapolated":
                                  full["seconds"] * (n * n) / (m * m), **{k: None for k in err}})
        if not args.json:
            print_pairwise_table(pair_rows)
            for r in pair_rows:
                if "all_pairs_s_extrapolated" in r:
                    print(f"\n{r['extractor']} all pairs at n={r['n_models']}: ~{r['all_pairs_s_extrapolated']:.0f} s "
                          f"(extrapolated as n^2 from n={n_lmc}; measure with --n-lmc {r['n_models']})")
        total = time.perf_counter() - t_start
        if args.json:
            print(json.dumps({"header": header, "extract": rows, "pairwise": pair_rows, "total_seconds": total,
                              "load_average_end": os.getloadavg()[0]}, default=str))
        else:
            worst = min(rows, key=lambda r: r["speedup"])
            print(f"\nsmallest speed-up: {worst['extractor']} {worst['speedup']:.1f}x (target >= 10x); total {total:.0f} s; "
                  f"load average now {os.getloadavg()[0]:.1f}")
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
