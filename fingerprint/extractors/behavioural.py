"""Behavioural fingerprints: what models output on chosen inputs.

All run one batched forward pass for the whole population. ``probe-outputs`` (in-distribution
inputs) is the control that should barely separate basins; ``ood-outputs`` is the original proposal
(correlations of outputs on out-of-distribution inputs); ``anomalous-inputs`` probes never-trained
regions (far outside the data range, constant inputs, single input dims pushed far), the analog of
fingerprinting large models with never-trained tokens. ``output-profile`` keeps no input's identity:
the distribution over probes of per-input confidence statistics (top-1 log-prob, logit margin,
entropy), unchanged by any relabelling or reordering of the probe inputs.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import torch

from fingerprint.extractors.common import (
    correlation_normalize,
    distribution_summary,
    generator,
    probes,
    read_outputs,
    transform_outputs,
)
from fingerprint.registry import extractor
from fingerprint.softprobes import soft_token_outputs
from training.core.errors import UserError

RARE_TOKENS = "anomalous_tokens"  # a probe set of rare tokens, each repeated over the prompt


@extractor("probe-outputs", kind="behavioural", version="2", reads="outputs", scale="common", bounds={"n_probes": (1, None)})
def probe_outputs(models, probe_set: str = "in_dist", n_probes: int = 256, transform: str = "logprob"):
    """Outputs on in-distribution probes, flattened: [n_models, n_probes * n_out]."""
    x = probes(models, probe_set, n_probes)
    return read_outputs(models, models.forward(x), transform).flatten(1)


@extractor("ood-outputs", kind="behavioural", version="2", reads="outputs", scale="common", bounds={"n_probes": (1, None)})
def ood_outputs(models, probe_set: str = "ood", n_probes: int = 256, transform: str = "logprob"):
    """Outputs on OOD probes, each model's vector centred and unit-norm (dot product = correlation)."""
    x = probes(models, probe_set, n_probes)
    return correlation_normalize(read_outputs(models, models.forward(x), transform).flatten(1))


RECOMBINE_MODES = ("coord", "block")


ONE_COORDINATE = ("reference inputs have a single coordinate (a 1-D regression input): a recombined input would be "
                  "one of them, so it adds nothing to probe-outputs")


def recombined_batch(ref: torch.Tensor, n_probes: int, mode: str, seed: int, pad_id: int | None = None) -> torch.Tensor:
    """``n_probes`` inputs ``[n_probes, ...]``, each made of two random reference inputs: every input
    coordinate (a pixel, a token position) from one or the other, independently at random (``coord``),
    or the coordinates before a random cut of the flattened input from one and the rest from the other
    (``block``).

    Left-padded token prompts (``pad_id``, HF zoos: the padding is each prompt's leading run of
    ``pad_id``) are recombined on their real tokens only, position by position counted from each
    prompt's first token (as the models count positions): a position only the longer prompt reaches
    takes its token, and the result, as long as the longer prompt, is left-padded again. So every
    recombined prompt is a valid prompt (no padding inside it), and prompts of one length recombine
    exactly as without ``pad_id``."""
    if mode not in RECOMBINE_MODES:
        raise UserError(f"unknown recombination mode '{mode}' (valid: {', '.join(RECOMBINE_MODES)})")
    if len(ref) < 2:
        raise UserError(f"recombined-outputs needs at least 2 reference probes, got {len(ref)}")
    d = ref[0].numel()
    if d == 1:
        raise UserError(f"recombined-outputs: the {ONE_COORDINATE}")
    g = generator(seed)
    i, j = torch.randint(0, len(ref), (2, n_probes), generator=g)
    if mode == "coord":
        mask = torch.rand(n_probes, d, generator=g) < 0.5
    else:
        cut = torch.randint(1, max(d, 2), (n_probes,), generator=g)
        mask = torch.arange(d)[None] < cut[:, None]
    if pad_id is not None and ref.dim() == 2 and not ref.is_floating_point():
        return recombine_left_padded(ref, i, j, mask, pad_id)
    return torch.where(mask.reshape(n_probes, *ref.shape[1:]), ref[i], ref[j])


def recombine_left_padded(ref: torch.Tensor, i: torch.Tensor, j: torch.Tensor, mask: torch.Tensor,
                          pad_id: int) -> torch.Tensor:
    """Prompts ``ref [P, T]`` left-padded with ``pad_id`` recombined pairwise (``i``, ``j`` ``[n]``,
    ``mask [n, T]``: take ``i``'s token) on start-aligned real tokens; left-padded ``[n, T]``."""
    T = ref.shape[1]
    length = (ref != pad_id).long().cummax(-1).values.sum(-1)  # [P] real tokens (after the leading pads)
    t = torch.arange(T)
    # start-aligned: position t of a prompt is its t-th real token (pad beyond its length)
    src = (T - length[:, None] + t[None]).clamp_max(T - 1)
    start = torch.where(t[None] < length[:, None], ref.gather(1, src), torch.full_like(ref, pad_id))
    li, lj = length[i][:, None], length[j][:, None]
    n = torch.maximum(li, lj)  # [n, 1] the recombined prompt's length
    has_i, has_j = t[None] < li, t[None] < lj
    mask = mask.gather(1, (T - n + t[None]).clamp_max(T - 1))  # the mask's columns where the prompt will sit
    take_i = torch.where(has_i & has_j, mask, has_i)  # a position one prompt lacks comes from the other
    tok = torch.where(take_i, start[i], start[j])
    back = (t[None] - (T - n)).clamp_min(0)  # left-pad again: output position s holds token s - (T - n)
    return torch.where(t[None] >= T - n, tok.gather(1, back), torch.full_like(tok, pad_id))


@extractor("recombined-outputs", kind="behavioural", version="3", scale="common", bounds={"n_probes": (1, None)})
def recombined_outputs(models, reference: str = "in_dist", n_probes: int = 256, mode: str = "coord",
                       transform: str = "prob", seed: int = 0):
    """Outputs on cue-conflict inputs made by recombining pairs of reference (in-distribution) inputs:
    features that always agree in training disagree here, so the models' choice between them shows
    (the probe set needs no labels; ``docs/extractors.md``). Probabilities by default: the choice is
    a difference of which class wins, which log-probabilities dilute with confidence. Token models
    with per-position outputs: the last position. Left-padded prompts (HF zoos) recombine on their
    real tokens (:func:`recombined_batch`; version 1 mixed padding into them).
    ``[n_models, n_probes * n_out]``."""
    x = recombined_batch(probes(models, reference, 0), n_probes, mode, seed, getattr(models.family, "pad_id", None))
    out = models.forward(x)
    if out.dim() == 4:  # per-position outputs [n, P, T, V]: the next token after the whole input
        out = out[:, :, -1]
    return read_outputs(models, out, transform).flatten(1)


PROFILE_STATS = ("logprob", "margin", "entropy", "logit", "shift")
PROFILE_SCALES = ("none", "median")


def confidence_stats(out: torch.Tensor, stats: list) -> torch.Tensor:
    """Per-input statistics ``[n, len(stats), P]`` of class outputs ``out [n, P, C]`` (float64):
    ``logprob`` the top-1 log-probability, ``margin`` the top-1 minus the top-2 logit, ``entropy``
    the softmax entropy (nats), ``logit`` the raw top-1 logit and ``shift`` the mean logit over
    classes (the per-input offset a softmax ignores; these two are not shift-invariant)."""
    o = out.double()
    lp = torch.log_softmax(o, -1)
    top2 = o.topk(2, -1).values
    make = {"logprob": lambda: lp.max(-1).values, "margin": lambda: top2[..., 0] - top2[..., 1],
            "entropy": lambda: -(lp.exp() * lp).sum(-1), "logit": lambda: top2[..., 0], "shift": lambda: o.mean(-1)}
    return torch.stack([make[s]() for s in stats], 1)


def profile_summary(v: torch.Tensor, bins: int, scale: str) -> torch.Tensor:
    """``[n, S, P]`` per-input values -> ``[n, S * (bins + 2)]``: per statistic its mean, std and
    ``bins`` interior quantiles over the ``P`` inputs (after dividing by the model's median
    absolute value of that statistic with ``scale="median"``: the shape of the distribution, not its
    level). Sorting makes it blind to which input had which value."""
    if scale == "median":
        v = v / v.abs().median(-1, keepdim=True).values.clamp_min(1e-12)
    return distribution_summary(v, bins).flatten(1)


@extractor("output-profile", kind="behavioural", version="2", reads="outputs", bounds={"n_probes": (0, None), "bins": (1, None)})
def output_profile(models, probe_set: str = "in_dist", n_probes: int = 256,
                   stats: list = ["logprob", "margin", "entropy"],  # noqa: B006 - a plain, hashable default
                   bins: int = 9, scale: str = "none"):
    """The distribution over probe inputs of per-input confidence statistics of the models' own
    outputs (``stats``: top-1 log-prob, top-1 minus top-2 logit margin, entropy; raw top-1 ``logit``,
    mean-logit ``shift``), each as mean, std and ``bins`` quantiles: ``[n, len(stats) * (bins + 2)]``.

    Any classifier or token model (per-position outputs: every position of every probe is one
    input; an HF zoo's left padding is none). Invariant to permuting the probe inputs (so, on
    ``modadd``, to which Fourier frequencies a model uses: a relabelling of the tokens), and needs
    no label.
    """
    if not isinstance(stats, list) or not stats:
        raise UserError(f"parameter 'stats' of extractor 'output-profile' must be a non-empty list of statistics "
                        f"(valid: {', '.join(PROFILE_STATS)})")
    bad = [s for s in stats if s not in PROFILE_STATS]
    if bad:
        raise UserError(f"unknown statistic '{bad[0]}' for output-profile (valid: {', '.join(PROFILE_STATS)})")
    if scale not in PROFILE_SCALES:
        raise UserError(f"unknown scale '{scale}' for output-profile (valid: {', '.join(PROFILE_SCALES)})")
    x = probes(models, probe_set, n_probes)
    out = models.forward(x)
    if out.shape[-1] < 2:
        raise UserError(f"output-profile needs class outputs (at least 2), but task '{models.task.name}' has "
                        f"{out.shape[-1]} output: use probe-outputs for regression models")
    pad = getattr(models.family, "pad_id", None)
    if out.dim() == 4 and pad is not None and x.dim() == 2:  # HF zoos, --readout all: padding is no input
        out = out[:, (x != pad).long().cummax(-1).values.bool()]  # [n, real positions, C]
    out = out.reshape(out.shape[0], -1, out.shape[-1])  # [n, P(*T), C]: every readout position an input
    if out.shape[1] < 2:
        raise UserError(f"output-profile needs at least 2 probe inputs, probe set '{probe_set}' gives {out.shape[1]}")
    return profile_summary(confidence_stats(out, list(stats)), bins, scale).float(), {"inputs": int(out.shape[1])}


UNTRAINED = "untrained_tokens"  # the probe set in which a task (or an imported zoo) names its never-trained tokens


def anomalous_tokens(models, reference: str, n_tokens: int, seed: int) -> torch.Tensor:
    """The token ids to probe ``[k]``: the task's never-trained tokens (the distinct tokens of its probe
    set ``untrained_tokens``) when it names some, else an import's declared rare tokens (the first
    ``n_tokens`` rows of the probe set ``anomalous_tokens``), else the ``n_tokens`` rarest tokens of the reference
    probes (tokens never seen there first; ties broken by a permutation drawn from ``seed``), of the family's
    vocabulary: a built-in transformer's ``vocab``, an imported module's token embedding (``token_vocab``), at least
    the probes' largest id plus one."""
    if UNTRAINED in models.task.probe_names():
        return models.task.probes(UNTRAINED).long().unique()
    if RARE_TOKENS in models.task.probe_names():  # an import's declared rare tokens (rows: one token repeated)
        return models.task.probes(RARE_TOKENS)[:n_tokens, 0].long()
    ref = probes(models, reference, 0).long()
    own = getattr(models.family, "token_vocab", None)  # an imported module: its token embedding's rows (audit 112)
    vocab = int(getattr(models.family, "vocab", 0) or max(own(ref[:2]) if callable(own) else 0, int(ref.max()) + 1))
    counts = torch.bincount(ref.flatten().clamp(0, vocab - 1), minlength=vocab)
    tie = torch.randperm(vocab, generator=generator(seed))
    return torch.argsort(counts * vocab + tie)[: min(n_tokens, vocab)]


def anomalous_token_batch(models, n_random: int, reference: str, seed: int, n_tokens: int = 64,
                          n_contexts: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Token prompts around the anomalous tokens ``[k]`` of :func:`anomalous_tokens`: each token repeated
    over a window ``[k, T]``, and ``n_random`` random strings of them ``[n_random, T]`` (``whole``: every
    output position counts); the first ``n_contexts`` reference probes with their last token replaced by
    each anomalous token (``last``: ``[n_contexts * k, T]``, only the last position counts)."""
    ref = probes(models, reference, 0)
    tokens = anomalous_tokens(models, reference, n_tokens, seed).to(ref.dtype)
    T = ref.shape[1:]
    reps = tokens[:, None].expand(-1, math.prod(T)).reshape(-1, *T)
    rand = tokens[torch.randint(0, len(tokens), (n_random, *T), generator=generator(seed))]
    ctx = ref[:n_contexts].repeat_interleave(len(tokens), 0).reshape(-1, math.prod(T)).clone()
    ctx[:, -1] = tokens.repeat(min(n_contexts, len(ref)))
    return torch.cat([reps, rand]), ctx.reshape(-1, *T)


def anomalous_batch(models, n_random: int, scale: float, reference: str, seed: int) -> torch.Tensor:
    """Inputs from never-trained regions, built from the reference probes' statistics (vector inputs)."""
    ref = probes(models, reference, 0)
    g = generator(seed)
    mu, sd = ref.float().mean(0), ref.float().std(0).clamp_min(1e-3)
    far = mu + scale * sd * torch.randn(n_random, *mu.shape, generator=g)
    const = torch.stack([torch.full(mu.shape, float(c)) for c in np.linspace(-scale, scale, 9)])
    d = mu.numel()
    dims = torch.linspace(0, d - 1, min(d, 64)).round().long().unique()
    single = mu.flatten().repeat(len(dims), 1)
    single[torch.arange(len(dims)), dims] += scale * sd.flatten()[dims]
    return torch.cat([far, const, single.reshape(-1, *mu.shape)])


@extractor("anomalous-inputs", kind="behavioural", version="3", scale="common",
           bounds={"n_random": (1, None), "scale": (0.0, None), "n_tokens": (1, None)})
def anomalous_inputs(models, n_random: int = 64, scale: float = 8.0, reference: str = "in_dist", seed: int = 0,
                     transform: str = "logprob", n_tokens: int = 64):
    """Outputs on inputs far outside the training range (random far points, constants, one dim pushed
    far; for token inputs, prompts made of never-trained or rare tokens), correlation-normalised like
    ood-outputs."""
    ref = probes(models, reference, 0)
    if ref.is_floating_point():
        x = anomalous_batch(models, n_random, scale, reference, seed)
        return correlation_normalize(read_outputs(models, models.forward(x), transform).flatten(1))
    whole, last = anomalous_token_batch(models, n_random, reference, seed, n_tokens)
    out_last = models.forward(last)
    if out_last.dim() == 4:  # per-position outputs [n, P, T, V]: only the position that read the token
        out_last = out_last[:, :, -1]
    parts = [read_outputs(models, models.forward(whole), transform).flatten(1), read_outputs(models, out_last, transform).flatten(1)]
    return correlation_normalize(torch.cat(parts, 1))


@extractor("disagreement", kind="behavioural", output="distances", version="8", reads="outputs", bounds={"n_probes": (1, None)})
def disagreement(models, probe_set: str = "ood", n_probes: int = 256):
    """Pairwise fraction of predictions on which two models predict different classes: [n, n]; a
    prediction is one probe's class, or one position's for per-position outputs ``[n, P, T, C]``
    (version 1 divided by the probes alone there: ``1 - T x agreement``, negative). For one-output
    (regression) models: pairwise RMS difference of outputs. Its metadata's ``predicts`` says which
    (``classes`` or ``values``), for the population's answer, and for classes ``resolution``, one
    prediction's share (version 3): camps fewer than two of those apart are no basin (an outside audit of
    the seventeenth session: near-perfect GRUs tied on one probe of 256 read as a candidate). A regression
    with several outputs (``task.regression()``, an import's float ``--data``) compares values too
    (version 4; it compared their argmax as a class). For classes (version 6; 5 without ``spread``), ``modal_share`` gives each model's most
    frequent class's share of its predictions (a model that predicts one class for every input did not learn:
    :mod:`analysis.unlearned`), ``concentration`` the sum of its classes' squared shares (one minus it: how
    often two models predicting those classes at random would differ), and ``spread`` how far its
    log-probabilities move with the input (their SD over the predictions, averaged over the classes). For values
    (version 8; 7 averaged the outputs' SDs), ``spread`` is how far the outputs themselves move with the input: the SD
    of the output vector over the predictions (the root of the outputs' variances summed), in the distances' units;
    about 0 for a model whose outputs are a constant."""
    x = probes(models, probe_set, n_probes)
    out = models.forward(x)
    per_model = math.prod(out.shape[1:-1])  # predictions per model: P, or P * T
    if out.shape[-1] == 1 or models.task.regression():  # values, not classes (version 4: a regression's, any width)
        # the output vector's SD (the root of its outputs' variances summed), in the distances' own units: two
        # uncorrelated functions of that spread are the square root of 2 times it apart (review 100: the outputs'
        # mean SD was the square root of the outputs' number smaller)
        spread = (out.float().flatten(1, -2).var(1).sum(-1).sqrt().tolist() if per_model > 1 else [0.0] * len(out))
        return torch.cdist(out.flatten(1), out.flatten(1)) / math.sqrt(per_model), {
            "predicts": "values", "spread": [float(f"{v:.4g}") for v in spread]}
    onehot = torch.nn.functional.one_hot(out.argmax(-1), out.shape[-1]).float()  # [n, ..., C]
    # each model's classes' shares of its predictions [n, C]: its most frequent one's (one class for every input: a
    # collapsed training), and the chance that two of its predictions agree (sum of squares: what two models that
    # predicted so at random would agree on)
    shares = onehot.flatten(1, -2).sum(1) / per_model
    modal, concentration = shares.max(-1).values.tolist(), (shares ** 2).sum(-1).tolist()
    # how far its log-probabilities move with the input (their SD over the predictions, averaged over the classes,
    # in nats): about 0 for a model whose outputs do not depend on the input
    spread = [0.0] * len(out)
    if per_model > 1:  # a few models at a time: a vocabulary-wide log_softmax of every model at once doubles `out`
        step = max(1, (1 << 26) // max(1, out[0].numel()))
        spread = torch.cat([torch.log_softmax(part.float(), -1).flatten(1, -2).std(1).mean(-1)
                            for part in torch.split(out, step)]).tolist()
    onehot = onehot.flatten(1)  # [n, per_model * C]
    return (1.0 - onehot @ onehot.T / per_model).clamp_min(0.0), {
        "predicts": "classes", "resolution": 1.0 / per_model, "modal_share": [round(v, 4) for v in modal],
        "concentration": [round(v, 4) for v in concentration], "spread": [float(f"{v:.4g}") for v in spread]}


@extractor("learned-queries", kind="behavioural", supervised=True, streaming=False,
           bounds={"n_queries": (1, None), "steps": (0, None), "lr": (0.0, None), "train_fraction": (0.0, 1.0)})
def learned_queries(models, labels: Any = None, n_queries: int = 8, steps: int = 150, lr: float = 0.05,
                    train_fraction: float = 0.5, reference: str = "in_dist", seed: int = 0, groups: Any = None):
    """Query inputs optimised jointly with a linear meta-classifier on a labelled subset of models
    (meta-neural analysis / "litmus patterns"). Supervised: needs per-model labels. Reports the
    held-out AUROC (binary) or accuracy; the fingerprint is every model's output on the queries.
    Token inputs (a model with ``embed.weight`` and ``pos.weight``) get soft tokens, started near
    reference sequences (:func:`fingerprint.softprobes.soft_token_outputs`).
    ``groups`` (init families) keeps a family on one side of the split (:func:`heldout_split`)."""
    from sklearn.metrics import roc_auc_score

    if labels is None:
        raise UserError("extractor 'learned-queries' is supervised: it needs per-model labels (--label COLUMN)")
    labels = np.asarray([str(v) for v in labels])
    classes, y_all = np.unique(labels, return_inverse=True)
    if len(classes) < 2:
        raise UserError(f"extractor 'learned-queries' needs at least two label values, got {list(classes)}")
    ref = probes(models, reference, 0)
    g = generator(seed)
    train, split = heldout_split(y_all, groups, train_fraction, seed)
    start = ref[torch.randint(0, len(ref), (n_queries,), generator=g)]
    params = {k: v.detach() for k, v in models.params.items()}
    if ref.is_floating_point():
        q = start.clone().float().requires_grad_(True)

        def run(q: torch.Tensor) -> torch.Tensor:
            return models.family(params, q)
    else:  # tokens: soft tokens (per position, logits over the vocabulary) mixing the models' embeddings
        vocab = params["embed.weight"].shape[1] if "embed.weight" in params else 0
        q = (3.0 * torch.nn.functional.one_hot(start.long(), vocab).float()).requires_grad_(True)

        def run(q: torch.Tensor) -> torch.Tensor:
            return soft_token_outputs(models.family, params, q)
    n_out = models.task.n_out
    W = torch.zeros(n_queries * n_out, len(classes), requires_grad=True)
    b = torch.zeros(len(classes), requires_grad=True)
    opt = torch.optim.Adam([q, W, b], lr=lr)
    y = torch.as_tensor(y_all)
    tr = torch.as_tensor(train)

    def feats() -> torch.Tensor:
        f = transform_outputs(run(q), "logprob").flatten(1)
        return (f - f.mean(0)) / f.std(0).clamp_min(1e-6)

    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(feats()[tr] @ W + b, y[tr]) + 1e-3 * W.pow(2).sum()
        loss.backward()
        opt.step()
    with torch.no_grad():
        f = feats()
        scores = torch.softmax(f @ W + b, -1).numpy()
        out = transform_outputs(run(q), "logprob").flatten(1)
    test = ~train
    yt = y_all[test]
    if len(np.unique(yt)) < 2:
        heldout = float("nan")
    elif len(classes) == 2:
        heldout = float(roc_auc_score(yt, scores[test, 1]))
    else:
        heldout = float(roc_auc_score(yt, scores[test], multi_class="ovr", labels=list(range(len(classes)))))
    return out, {"heldout_auroc": heldout, "heldout_split": split, "train_mask": train.astype(np.int8),
                 "classes": [str(c) for c in classes]}


def heldout_split(y: np.ndarray, groups: Any, train_fraction: float, seed: int) -> tuple[np.ndarray, str]:
    """A train mask ``[n]`` stratified by the class codes ``y [n]``, and how it split: ``"families"``
    (whole ``groups`` on one side: ``StratifiedGroupKFold`` into up to 10 folds, the first
    ``round((1 - train_fraction) * folds)`` held out) or ``"models"`` (no groups, fewer than two, or
    none with two members: each class split on its own, as without groups)."""
    from sklearn.model_selection import StratifiedGroupKFold

    n = len(y)
    rs = np.random.default_rng(seed)
    n_groups = len(set(map(str, groups))) if groups is not None else 0
    if 2 <= n_groups < n and np.bincount(y).max() >= 2:  # some family has relatives to keep together
        folds = min(10, n_groups, int(np.bincount(y).max()))
        n_test = int(np.clip(round((1 - train_fraction) * folds), 1, folds - 1))
        codes = np.unique(np.asarray([str(g) for g in groups]), return_inverse=True)[1]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a class with fewer members than folds: sklearn warns, still splits
            cv = StratifiedGroupKFold(folds, shuffle=True, random_state=seed)
            tests = [t for _, t in cv.split(np.zeros(n), y, codes)]
        train = np.ones(n, bool)
        train[np.concatenate(tests[:n_test])] = False
        return train, "families"
    train = np.zeros(n, bool)
    for c in np.unique(y):  # stratified split
        idx = np.flatnonzero(y == c)
        rs.shuffle(idx)
        train[idx[: max(1, int(round(train_fraction * len(idx))))]] = True
    if train.all():
        train[rs.integers(n)] = False
    return train, "models"
