"""``modadd``: modular addition, where models learn different *algorithms* ("clock" or "pizza").

Inputs are token pairs ``(a, b)`` with ``a, b in 0..p-1``; the target is ``(a + b) mod p``. A
fraction of the ``p * p`` pairs is trained on, the rest is held out. Small transformers solve it
with either the "clock" algorithm (rotate by angles and multiply) or the "pizza" algorithm
(average the two embeddings, read out by slices), and which one depends on the attention rate and
the seed (Zhong et al., 2023, "The Clock and the Pizza").

Diagnostics follow the paper's circuit metrics (exact definitions in ``docs/tasks.md``):

* **gradient symmetricity**: mean cosine similarity between the gradients of the correct logit with
  respect to the input embeddings of ``a`` and of ``b``. Pizza's output depends on ``E_a + E_b`` (high,
  ~1); clock's on their product (lower).
* **distance irrelevance**: with ``L[a, b]`` the correct-class logit, the mean over distances
  ``d = (a - b) mod p`` of the standard deviation of ``L`` along that diagonal, divided by the
  standard deviation of all of ``L``. Pizza's logits depend on ``a - b`` (low); clock's do not (~1).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from training.core.errors import UserError, unknown
from training.tasks.base import Hypothesis, Interchange, Task, register_task


@register_task
@dataclass(frozen=True)
class ModAdd(Task):
    name = "modadd"
    description = "(a + b) mod p with a small transformer; clock vs pizza algorithms (gradient symmetricity, distance irrelevance)"
    deep_labels = ("clock", "pizza", "mixed")

    p: int = 31
    train_fraction: float = 0.8
    symmetricity_threshold: float = 0.9  # >= : pizza-like gradients
    irrelevance_threshold: float = 0.85  # >= : clock-like (logits do not depend on a - b)
    n_diag: int = 512
    seed: int = 0

    def validate(self) -> None:
        if self.p < 3:
            raise UserError(f"task parameter 'task.p' must be >= 3, got {self.p}")
        if not 0 < self.train_fraction < 1:
            raise UserError(f"task parameter 'task.train_fraction' must be in (0, 1), got {self.train_fraction}")
        if self.n_diag <= 0:
            raise UserError(f"task parameter 'task.n_diag' must be > 0, got {self.n_diag}")

    @property
    def input_shape(self):
        return (2,)

    @property
    def n_out(self):
        return self.p

    def default_model(self):
        return {"arch": "transformer", "vocab": self.p, "d_model": 64, "n_heads": 4, "n_layers": 1, "d_mlp": 256}

    @cached_property
    def _pairs(self):
        p = self.p
        a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
        x = torch.stack([a.reshape(-1), b.reshape(-1)], 1)
        y = (x[:, 0] + x[:, 1]) % p
        perm = torch.randperm(p * p, generator=self._gen(1))
        k = int(round(self.train_fraction * p * p))
        return x, y, perm[:k], perm[k:]

    def train_set(self):
        x, y, tr, _ = self._pairs
        return x[tr], y[tr]

    def test_set(self):
        x, y, _, te = self._pairs
        return x[te], y[te]

    def probe_names(self):
        return ["in_dist", "ood", "all", "diagonal"]

    def probes(self, name):
        x, y, tr, te = self._pairs
        if name == "in_dist":
            return x[tr[:256]]
        if name == "ood":  # held-out pairs: the generalisation the algorithms differ on
            return x[te[:256]]
        if name == "all":
            return x
        if name == "diagonal":  # a == b, where clock and pizza logits differ most
            return torch.stack([torch.arange(self.p)] * 2, 1)
        raise unknown(f"probe set of task '{self.name}'", name, self.probe_names())

    def diagnostics(self, forward, variant):
        x, y, _, _ = self._pairs
        logits = forward(x)  # [n, p*p, p]
        correct = logits.gather(-1, y.expand(logits.shape[0], -1).unsqueeze(-1)).squeeze(-1)  # [n, p*p]
        irrelevance = self._distance_irrelevance(correct)
        sym = self._gradient_symmetricity(forward) if hasattr(forward, "family") else np.full(len(correct), np.nan)
        label = np.where((sym >= self.symmetricity_threshold) & (irrelevance < self.irrelevance_threshold), "pizza",
                         np.where((sym < self.symmetricity_threshold) & (irrelevance >= self.irrelevance_threshold), "clock", "mixed"))
        return {"deep_label": label.astype(object), "gradient_symmetricity": sym, "distance_irrelevance": irrelevance,
                "full_acc": (logits.argmax(-1) == y).float().mean(1).numpy()}

    def _distance_irrelevance(self, correct: torch.Tensor) -> np.ndarray:
        """``[n, p*p]`` correct logits -> ``[n]``: mean within-diagonal std over overall std."""
        p = self.p
        L = correct.reshape(-1, p, p)
        a = torch.arange(p)
        d = (a[:, None] - a[None, :]) % p  # [p, p] distance of each cell
        per_d = torch.stack([L[:, d == k].std(1) for k in range(p)], 1)  # p diagonals, vectorised over models
        return (per_d.mean(1) / L.reshape(len(L), -1).std(1).clamp_min(1e-8)).numpy()

    def _gradient_symmetricity(self, forward) -> np.ndarray:
        """Mean cosine similarity of d(correct logit)/d(embedding of a) and .../d(embedding of b), ``[n]``."""
        fam, params = forward.family, forward.params
        g = self._gen(2)
        x = torch.randint(0, self.p, (self.n_diag, 2), generator=g)
        y = (x[:, 0] + x[:, 1]) % self.p
        # the positional table requiring grad puts the embedding activation in the autograd graph
        params = {k: v.detach().requires_grad_(k == "pos.weight") for k, v in params.items()}
        with torch.enable_grad():
            out, acts = fam.forward(params, x, capture=["embed"])
            emb = acts["embed"]  # [n, B, 2, d]; each sample's logit depends only on its own row
            sel = out.gather(-1, y.expand(out.shape[0], -1).unsqueeze(-1)).sum()
            (grad,) = torch.autograd.grad(sel, emb)
        cos = torch.nn.functional.cosine_similarity(grad[:, :, 0], grad[:, :, 1], dim=-1)  # [n, B]
        return cos.mean(1).detach().numpy()

    # -- causal hypotheses ---------------------------------------------------------------------
    def _operand_pairs(self, n: int, gen: torch.Generator) -> Interchange:
        """Clock: swap operand ``b`` alone; the source's ``b`` differs from the base's."""
        p = self.p
        base = torch.randint(0, p, (n, 2), generator=gen)
        src = torch.randint(0, p, (n, 2), generator=gen)
        src[:, 1] = (base[:, 1] + torch.randint(1, p, (n,), generator=gen)) % p
        return Interchange(base=base, source=src, base_value=base[:, 1], source_value=src[:, 1],
                           counterfactual=(base[:, 0] + src[:, 1]) % p)

    def _mean_pairs(self, n: int, gen: torch.Generator) -> Interchange:
        """Pizza: swap the order-free mean embedding of the pair; the source's sum differs from the base's."""
        p = self.p
        base = torch.randint(0, p, (n, 2), generator=gen)
        src = torch.randint(0, p, (n, 2), generator=gen)
        s_base = base.sum(1) % p
        bad = src.sum(1) % p == s_base
        src[bad, 1] = (src[bad, 1] + 1) % p
        return Interchange(base=base, source=src, base_value=base.sort(1).values, source_value=src.sort(1).values,
                           counterfactual=src.sum(1) % p)

    def hypotheses(self):
        """Both read at the MLP input (``block0.resid_mid``, last position; docs/tasks.md).

        ``clock``: the operands are separate angles composed by the MLP, so operand ``b`` alone can be
        swapped: output ``(a_base + b_source) mod p``. It is ``b``, the last token, because at the
        readout position its embedding sits in the residual directly, while ``a`` arrives mixed
        into the attention output. ``pizza``: the operands enter the MLP only through
        their order-free mean embedding, a low-dimensional variable fixing ``a + b``: swapping it gives
        ``(a_source + b_source) mod p``.
        """
        k = 8
        return {
            "clock": Hypothesis("operand b as its own angle at the MLP input; swap b -> (a_base + b_src) mod p",
                                self._operand_pairs, layer="block0.resid_mid", position=-1, k=k),
            "pizza": Hypothesis("order-free mean embedding (E_a + E_b)/2 at the MLP input; swap it -> (a_src + b_src) mod p",
                                self._mean_pairs, layer="block0.resid_mid", position=-1, k=k),
        }
