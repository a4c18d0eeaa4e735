"""Learned probe inputs for token models, in the style of ProbeGen (Kahana et al., ICLR 2025).

A token model cannot be differentiated with respect to its integer inputs, so each probe is a
*soft* token sequence: per position, logits over the vocabulary whose softmax mixes the model's own
token embeddings (``softmax(L) @ E + P``), fed in through the family's ``embed`` hook point (an
edit, so every family that names ``embed`` and stores ``embed.weight [n, V, d]`` and
``pos.weight [n, T, d]`` works). As in ProbeGen, the probes are not free per-probe tensors but the
output of a shared generator: a fixed random code per probe passed through a small linear map (a
low-rank, shared parametrisation that regularises them). The models' log-probabilities on the
probes, standardised, feed a linear classifier; probes, generator and classifier are trained
jointly on the training families only. Supervised: needs labels, and reports held-out scores only
through :func:`fingerprint.supervised.evaluate`.
"""

from __future__ import annotations

import numpy as np
import torch

from training.core.errors import UserError

__all__ = ["SoftProbeClassifier", "soft_token_outputs"]


def soft_token_outputs(family, params: dict[str, torch.Tensor], logits: torch.Tensor) -> torch.Tensor:
    """Log-probabilities ``[n_models, Q, C]`` of the stacked models on soft tokens ``logits [Q, T, V]``."""
    if "embed.weight" not in params or "pos.weight" not in params or params["embed.weight"].dim() != 3:
        raise UserError("learned soft-token probes need a token model with 'embed.weight' [n, V, d] and 'pos.weight' "
                        f"[n, T, d], got parameters {sorted(params)[:6]}...")
    E, P = params["embed.weight"], params["pos.weight"]
    Q, T, V = logits.shape
    if V != E.shape[1]:
        raise UserError(f"soft tokens have {V} vocabulary entries, the models {E.shape[1]}")
    soft = torch.einsum("qtv,nvd->nqtd", torch.softmax(logits, -1), E) + P[:, None, :T]
    dummy = torch.zeros(Q, T, dtype=torch.long)
    out, _ = family.forward(params, dummy, edit={"embed": lambda _h: soft})
    if out.dim() == 4:  # every-position readout: the last position
        out = out[:, :, -1]
    return torch.log_softmax(out, -1)


class _Generator(torch.nn.Module):
    def __init__(self, n_probes: int, T: int, V: int, code: int, seed: int):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("z", torch.randn(n_probes, code, generator=g))
        self.lin = torch.nn.Linear(code, T * V)
        with torch.no_grad():
            self.lin.weight.copy_(torch.randn(T * V, code, generator=g) / code ** 0.5)
            self.lin.bias.zero_()
        self.shape = (n_probes, T, V)

    def forward(self) -> torch.Tensor:
        return 3.0 * self.lin(self.z).reshape(self.shape)  # x3: near one-hot tokens are reachable


class SoftProbeClassifier:
    """Soft-token probes (via a shared generator) and a linear readout, trained jointly.

    ``sort``: the readout sees each probe's log-probabilities sorted (the distribution's shape).

    ``X`` is a :class:`ProbeInputs` (family and stacked parameters; indexable by model), ``y`` in
    {0, 1}. ``decision_function`` returns the readout's logit per model."""

    def __init__(self, n_probes: int = 16, code: int = 8, steps: int = 200, lr: float = 0.03, l2: float = 1e-2,
                 sort: bool = False, seed: int = 0):
        self.n_probes, self.code, self.steps, self.lr, self.l2, self.seed = n_probes, code, steps, lr, l2, seed
        self.sort = sort

    def _feats(self, X: "ProbeInputs") -> torch.Tensor:
        lp = soft_token_outputs(X.family, X.params, self.gen_())  # [n, Q, C]
        if self.sort:  # the shape of each output distribution, not which classes: blind to relabelled classes
            lp = lp.sort(-1, descending=True).values
        return lp.flatten(1)  # [n, Q * C]

    def fit(self, X: "ProbeInputs", y: np.ndarray) -> "SoftProbeClassifier":
        torch.manual_seed(self.seed)
        E = X.params["embed.weight"]
        T = X.params["pos.weight"].shape[1]
        self.gen_ = _Generator(self.n_probes, T, E.shape[1], self.code, self.seed)
        t = torch.as_tensor(np.asarray(y), dtype=torch.float32)
        C = self._feats(X).shape[1]
        w = torch.zeros(C, 1, requires_grad=True)  # 2-D: torch's counter skips matrix-vector products
        b = torch.zeros((), requires_grad=True)
        opt = torch.optim.Adam([*self.gen_.parameters(), w, b], lr=self.lr)
        for _ in range(self.steps):
            f = self._feats(X)
            z = (f - f.mean(0)) / f.std(0).clamp_min(1e-4)
            loss = torch.nn.functional.binary_cross_entropy_with_logits((z @ w).squeeze(1) + b, t) + self.l2 * w.pow(2).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            f = self._feats(X)
            self.mean_, self.std_ = f.mean(0), f.std(0).clamp_min(1e-4)
        self.w_, self.b_ = w.detach(), b.detach()
        return self

    def decision_function(self, X: "ProbeInputs") -> np.ndarray:
        with torch.no_grad():
            z = (self._feats(X) - self.mean_) / self.std_
            return ((z @ self.w_).squeeze(1) + self.b_).numpy()


class ProbeInputs:
    """A family and its stacked parameters ``{name: [n, ...]}``, indexable by model (``X[idx]``)."""

    def __init__(self, family, params: dict[str, torch.Tensor]):
        self.family = family
        self.params = {k: v.detach().float() for k, v in params.items()}

    def __len__(self) -> int:
        return next(iter(self.params.values())).shape[0]

    def __getitem__(self, idx) -> "ProbeInputs":
        idx = torch.as_tensor(np.asarray(idx))
        return ProbeInputs(self.family, {k: v[idx] for k, v in self.params.items()})


__all__ += ["ProbeInputs"]
