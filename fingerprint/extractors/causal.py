"""Causal-hypothesis fingerprints: interchange-intervention accuracy (IIA) per task hypothesis.

A task may declare candidate high-level algorithms (``Task.hypotheses()``), each reduced to one
causal variable and what swapping it predicts: for a (base, source) pair of inputs, the label the
model should output if the variable in ``base`` took its value from ``source``. For every model and
hypothesis, ``causal-ii`` learns a ``k``-dimensional linear subspace of one hidden activation
(distributed alignment search, Geiger et al. 2023: an orthonormal basis ``Q [D, k]``) such that
patching that subspace from the source run into the base run,
``h' = h_base + (h_source - h_base) Q Q^T``, makes the model output the hypothesis's
counterfactual label. The score is the interchange-intervention accuracy on held-out pairs.

All models are aligned at once: ``Q`` is ``[n_models, D, k]``, the patched forward pass is one
batched program (the family's ``forward(..., edit=...)``), and the loss is summed over models so
every model gets its own gradient. Every model starts from the same ``Q`` and sees the same pairs,
so a model's row does not depend on which other models share its batch.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from fingerprint.extractors.common import default_layer
from fingerprint.registry import extractor
from training.core import seeds as rng
from training.core.errors import UserError, unknown
from training.families.base import supports_edit


def task_hypotheses(models: Any) -> dict[str, Any]:
    """The hypotheses the zoo's probe source declares (``{name: HypothesisInfo}``, through the task
    view: extractors never hold the task itself); a one-line error naming the tasks that have some."""
    return models.task.hypotheses(required_by="causal-ii")


def default_patch_layer(models: Any) -> str:
    """The last hidden representation that can be patched (conv maps cannot): ``block{L-1}.resid_post``,
    ``layer{L-1}.post``, ``fc{i}.post`` or ``pool``."""
    names = models.activation_names()
    for pick in ([n for n in names if n.endswith(".resid_post")],
                 [n for n in names if n.endswith(".post") and not n.startswith("conv")],
                 [n for n in names if n == "pool"]):
        if pick:
            return pick[-1]
    return default_layer(models)


def _select(h: torch.Tensor, position: int | None) -> torch.Tensor:
    """``[n, B, ...]`` activation -> the patched part ``[n, B, D]``."""
    if position is not None and h.dim() >= 4:
        h = h[:, :, position]
    return h.reshape(h.shape[0], h.shape[1], -1)


def _put(h: torch.Tensor, new: torch.Tensor, position: int | None) -> torch.Tensor:
    if position is not None and h.dim() >= 4:
        out = h.clone()
        out[:, :, position] = new.reshape(out[:, :, position].shape)
        return out
    return new.reshape(h.shape)


def interchange_accuracy(models: Any, name: str, hyp: Any, layer: str, k: int, steps: int, lr: float, n_pairs: int,
                         gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """IIA of every model for hypothesis ``name``: ``(held-out IIA [n], training IIA [n])``."""
    fam = models.family
    dev = models.device
    params = {p: v.detach() for p, v in models.params.items()}
    train, test = models.task.interchanges(name, n_pairs, gen), models.task.interchanges(name, n_pairs, gen)
    pos = hyp.position

    with torch.no_grad():
        def acts(x: torch.Tensor) -> torch.Tensor:
            return _select(fam.forward(params, x.to(dev), capture=[layer])[1][layer], pos)

        src_tr, src_te = acts(train.source), acts(test.source)
    D = src_tr.shape[-1]
    k = max(1, min(k, D))
    # the same starting basis for every model: a row never depends on its batch-mates
    a0 = torch.randn(D, k, generator=gen)
    A = a0.to(dev).expand(len(models), D, k).clone().requires_grad_(True)
    opt = torch.optim.Adam([A], lr=lr)

    def patched(base: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
        Q = torch.linalg.qr(A).Q  # [n, D, k], orthonormal columns
        applied = []

        def edit(h: torch.Tensor) -> torch.Tensor:
            applied.append(True)
            hb = _select(h, pos)
            return _put(h, hb + ((src - hb) @ Q) @ Q.transpose(1, 2), pos)

        out = fam.forward(params, base.to(dev), edit={layer: edit})[0]  # [n, B, n_out]
        if not applied:
            raise UserError(f"causal-ii cannot patch activation '{layer}' of architecture '{fam.name}'; pass layer=NAME "
                            "(a dense, pool or transformer activation)")
        return out

    if train.counterfactual.is_floating_point():  # a regression hypothesis: the counterfactual is a value
        return _regression_iia(models, params, patched, train, test, src_tr, src_te, opt, steps)
    y_tr = train.counterfactual.long().to(dev)
    y_te = test.counterfactual.long().to(dev)
    for _ in range(steps):
        opt.zero_grad()
        out = patched(train.base, src_tr)
        loss = F.cross_entropy(out.flatten(0, 1), y_tr.repeat(len(models)), reduction="none")
        loss.reshape(len(models), -1).mean(1).sum().backward()  # independent models: each gets its own gradient
        opt.step()
    with torch.no_grad():
        iia_te = (patched(test.base, src_te).argmax(-1) == y_te).float().mean(1)
        iia_tr = (patched(train.base, src_tr).argmax(-1) == y_tr).float().mean(1)
    return iia_te.cpu(), iia_tr.cpu()


def _prediction(out: torch.Tensor) -> torch.Tensor:
    """A regression output ``[n, B, 1]``, or per position ``[n, B, T, 1]`` (the last one counts) -> ``[n, B]``."""
    return (out[:, :, -1] if out.dim() == 4 else out)[..., 0]


def _regression_iia(models, params, patched, train, test, src_tr, src_te, opt, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """IIA for a value-valued counterfactual: the patch is trained on the squared error, and a pair
    counts when the patched prediction lands nearer the counterfactual than the model's own
    unpatched prediction on the base (the output moved the way the hypothesis says)."""
    dev = models.device
    fam = models.family
    cf_tr, cf_te = train.counterfactual.float().to(dev), test.counterfactual.float().to(dev)
    for _ in range(steps):
        opt.zero_grad()
        ((_prediction(patched(train.base, src_tr)) - cf_tr) ** 2).mean(1).sum().backward()
        opt.step()
    with torch.no_grad():
        def iia(pairs, src, cf):
            own = _prediction(fam.forward(params, pairs.base.to(dev))[0])
            moved = _prediction(patched(pairs.base, src))
            return ((moved - cf).abs() < (moved - own).abs()).float().mean(1)
        return iia(test, src_te, cf_te).cpu(), iia(train, src_tr, cf_tr).cpu()


@extractor("causal-ii", kind="mechanistic", version="1", bounds={"k": (0, None)})
def causal_ii(models, layer: str = "", k: int = 0, steps: int = 150, lr: float = 0.05, n_pairs: int = 256,
              seed: int = 0):
    """Interchange-intervention accuracy of each task hypothesis after a learned linear alignment
    (distributed alignment search on a k-dim subspace of one layer): [n_models, n_hypotheses]."""
    hyps = task_hypotheses(models)
    if not supports_edit(models.family):
        raise UserError(f"causal-ii needs activation patching, which architecture '{models.family.name}' does not offer "
                        "(mlp, cnn and transformer do)")
    if steps < 0 or n_pairs <= 0 or lr <= 0:
        raise UserError(f"causal-ii needs steps >= 0, n_pairs > 0 and lr > 0, got steps={steps}, n_pairs={n_pairs}, lr={lr}")
    names = models.activation_names()
    cols, train_iia, layers = [], {}, {}
    for i, (name, hyp) in enumerate(sorted(hyps.items())):
        where = layer or hyp.layer or default_patch_layer(models)
        if where not in names:
            raise unknown(f"activation for causal-ii hypothesis '{name}'", where, names)
        dim = k if k > 0 else (getattr(hyp, "k", 0) or 4)
        gen = rng.generator(rng.EXTRACT, seed, 0xC1, i)
        te, tr = interchange_accuracy(models, name, hyp, where, dim, steps, lr, n_pairs, gen)
        cols.append(te)
        train_iia[name] = float(tr.mean())
        layers[name] = where
    return torch.stack(cols, 1), {"hypotheses": sorted(hyps), "layers": layers, "mean_train_iia": train_iia}
