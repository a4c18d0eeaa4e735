"""``modadd``: modular addition, where models learn different *algorithms* ("clock" or "pizza").

Inputs are token pairs ``(a, b)`` with ``a, b in 0..p-1``; the target is ``(a + b) mod p``. A
fraction of the ``p * p`` pairs is trained on, the rest is held out. Small transformers solve it
with either the "clock" algorithm (rotate by angles and multiply) or the "pizza" algorithm
(average the two embeddings, read out by slices), and which one depends on the attention rate and
the seed (Zhong et al., 2023, "The Clock and the Pizza").

Diagnostics are the paper's circuit metrics, as its evaluation code computes them (exact
definitions in ``docs/tasks.md``):

* **gradient symmetricity**: over random triples ``(a, b, c)``, the mean cosine similarity between
  the gradients of the output logit of class ``c`` with respect to the input embeddings of ``a`` and
  of ``b``. Pizza's output depends on ``E_a + E_b`` (high, ~1); clock's on their product (lower).
  ``gradient_symmetricity_correct`` is the earlier variant: the correct class ``(a + b) mod p``
  instead of a random one, over random pairs.
* **distance irrelevance**: with ``L[a, b]`` the correct-class logit, the mean over distances
  ``d = (a - b) mod p`` of the standard deviation of ``L`` along that diagonal, divided by the
  standard deviation of all of ``L`` (population standard deviations, numpy's ``np.std``). Pizza's
  logits depend on ``a - b`` (low); clock's do not (~1).

Beside the label, ``key_freqs`` names the Fourier frequencies a model's token embedding uses (the
``n_key_freqs`` frequencies ``1..(p-1)/2`` of largest norm, ascending, ``"2-5-6"``): which ones is
decided by the seed and carries no algorithm, a mechanistic nuisance to score with
``--lineage key_freqs``.
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
    symmetricity_threshold: float = 0.89  # >= : pizza-like gradients (docs/tasks.md: how both were set)
    irrelevance_threshold: float = 0.83  # >= : clock-like (logits do not depend on a - b)
    n_diag: int = 512  # random (a, b, c) triples (and (a, b) pairs) the gradient symmetricity averages over
    n_key_freqs: int = 3  # how many embedding frequencies the key_freqs column names (at most the (p-1)/2 there are)
    seed: int = 0

    def validate(self) -> None:
        if self.p < 3:
            raise UserError(f"task parameter 'task.p' must be >= 3, got {self.p}")
        if not 0 < self.train_fraction < 1:
            raise UserError(f"task parameter 'task.train_fraction' must be in (0, 1), got {self.train_fraction}")
        if self.n_diag <= 0:
            raise UserError(f"task parameter 'task.n_diag' must be > 0, got {self.n_diag}")
        if self.n_key_freqs < 1:
            raise UserError(f"task parameter 'task.n_key_freqs' must be >= 1, got {self.n_key_freqs}")

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
        if hasattr(forward, "family"):
            sym = self._gradient_symmetricity(forward, *self._triples())
            a, b = torch.randint(0, self.p, (self.n_diag, 2), generator=self._gen(2)).T  # the earlier variant's pairs
            sym_correct = self._gradient_symmetricity(forward, a, b, (a + b) % self.p)
            freqs = key_freqs(forward.params["embed.weight"], min(self.n_key_freqs, (self.p - 1) // 2))  # all there are, for a small p
        else:
            sym = sym_correct = np.full(len(correct), np.nan)
            freqs = np.full(len(correct), "", dtype=object)
        label = np.where((sym >= self.symmetricity_threshold) & (irrelevance < self.irrelevance_threshold), "pizza",
                         np.where((sym < self.symmetricity_threshold) & (irrelevance >= self.irrelevance_threshold), "clock", "mixed"))
        return {"deep_label": label.astype(object), "gradient_symmetricity": sym, "distance_irrelevance": irrelevance,
                "gradient_symmetricity_correct": sym_correct, "key_freqs": freqs, "full_acc": (logits.argmax(-1) == y).float().mean(1).numpy()}

    def _distance_irrelevance(self, correct: torch.Tensor) -> np.ndarray:
        """``[n, p*p]`` correct logits (``a``-major) -> ``[n]``: mean within-diagonal std over overall std.

        Population standard deviations (``np.std``, dividing by the count), as the paper's
        evaluation code computes them; ``torch.std``'s default ``n - 1`` would scale every value by
        ``sqrt((p + 1) / p)``.
        """
        p = self.p
        L = correct.reshape(-1, p, p).double()
        a = torch.arange(p)
        d = (a[:, None] - a[None, :]) % p  # [p, p] distance of each cell
        per_d = torch.stack([L[:, d == k].std(1, correction=0) for k in range(p)], 1)  # [n, p]
        overall = L.reshape(len(L), -1).std(1, correction=0).clamp_min(1e-8)
        return (per_d.mean(1) / overall).float().numpy()

    def _triples(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``n_diag`` distinct random triples ``(a, b, c)`` of ``p^3`` (all of them if fewer), ``3 x [k]``."""
        p = self.p
        idx = torch.randperm(p ** 3, generator=self._gen(3))[: self.n_diag]
        return idx // (p * p), (idx // p) % p, idx % p

    def _gradient_symmetricity(self, forward, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> np.ndarray:
        """Mean over the triples ``[k]`` of the cosine similarity between d(logit of class ``c``)/d(embedding
        of ``a``) and .../d(embedding of ``b``), ``[n]``."""
        fam, params = forward.family, forward.params
        x = torch.stack([a, b], 1)  # [k, 2]
        # the positional table requiring grad puts the embedding activation in the autograd graph
        params = {k: v.detach().requires_grad_(k == "pos.weight") for k, v in params.items()}
        with torch.enable_grad():
            out, acts = fam.forward(params, x, capture=["embed"])
            emb = acts["embed"]  # [n, k, 2, d]; each sample's logit depends only on its own row
            sel = out.gather(-1, c.to(out.device).expand(out.shape[0], -1).unsqueeze(-1)).sum()
            (grad,) = torch.autograd.grad(sel, emb)
        cos = torch.nn.functional.cosine_similarity(grad[:, :, 0], grad[:, :, 1], dim=-1)  # [n, k]
        return cos.mean(1).detach().cpu().numpy()

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


def fourier_norms(embed: torch.Tensor) -> torch.Tensor:
    """Token embeddings ``[n, p, d]`` -> the norm of each frequency ``1..(p-1)/2`` of their discrete
    Fourier transform over the token axis, ``[n, (p-1)/2]`` (frequency ``k`` and ``p - k`` are
    conjugate, so one of each pair; the constant frequency 0 is left out)."""
    f = torch.fft.rfft(embed.detach().double(), dim=1)  # [n, p//2 + 1, d]
    return f[:, 1 : (embed.shape[1] - 1) // 2 + 1].abs().pow(2).sum(-1).sqrt()


def key_freqs(embed: torch.Tensor, k: int) -> np.ndarray:
    """``[n]`` strings naming each model's ``k`` largest embedding frequencies, ascending: ``"2-5-6"``."""
    top = fourier_norms(embed).topk(k, dim=1).indices.sort(1).values + 1  # [n, k], frequencies from 1
    return np.array(["-".join(map(str, row)) for row in top.tolist()], dtype=object)
