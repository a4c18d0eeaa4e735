"""A permutation-invariant weight-space classifier: DeepSets over a transformer's MLP hidden units.

Each hidden unit of the MLP is one set element, described by the weights that enter and leave it,
composed with the rest of the network so that they are written in the task's own coordinates
(tokens, positions, output classes) rather than in the residual stream's arbitrary basis:

* in, direct: ``fc @ E^T`` ``[V]`` and ``fc @ P^T`` ``[T]`` (token and position embeddings read by the unit),
* in, through attention's value/output path: ``fc @ O @ V @ E^T`` ``[V]`` and ``fc @ O @ V @ P^T`` ``[T]``,
* its bias ``[1]``, and out: ``U @ proj`` ``[C]`` (the unit's direct effect on each logit).

So a unit's description ``[2V + 2T + 1 + C]`` is unchanged by any orthogonal change of the residual
basis (without layer norm, any invertible one), and the classifier (a per-unit MLP, mean- and
max-pooled, then an MLP) is invariant to permuting the hidden units. :func:`unit_invariants` adds
(``"both"``) or keeps only (``"invariant"``) descriptions that also ignore a common relabelling of
the tokens and of the classes: per unit, the norms of its centred token-indexed channels, their
cosine, the channels' means, its bias, position weights, and its output channel's norm and mean. On
``modadd`` this removes which Fourier frequencies a unit uses (seed noise), keeping how it combines
its two operands. Attention's query/key path is
left out. For a token transformer with one block (``vocab > 0``, ``n_layers = 1``, no layer norm).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from training.core.errors import UserError

__all__ = ["NFNClassifier", "Sets", "WeightSetClassifier", "head_features", "set_features", "unit_features", "unit_invariants"]


def unit_features(family, params: dict[str, torch.Tensor]) -> torch.Tensor:
    """Per-hidden-unit descriptions ``[n_models, d_mlp, 2V + 2T + 1 + C]`` of a one-block token
    transformer (``params``: stacked ``[n_models, ...]``)."""
    ok = getattr(family, "name", "") == "transformer" and getattr(family, "vocab", 0) > 0 \
        and getattr(family, "n_layers", 0) == 1 and not getattr(family, "layernorm", True)
    if not ok:
        raise UserError(f"the weight-set classifier reads one-block token transformers without layer norm "
                        f"(arch 'transformer', vocab > 0, n_layers 1), got arch '{getattr(family, 'name', '?')}'")
    p = {k: v.detach().float() for k, v in params.items()}
    E, P = p["embed.weight"], p["pos.weight"]  # [n, V, d], [n, T, d]
    fc, bias = p["blocks.0.mlp.fc.weight"], p["blocks.0.mlp.fc.bias"]  # [n, H, d], [n, H]
    ov = p["blocks.0.attn.o.weight"] @ p["blocks.0.attn.v.weight"]  # [n, d, d]
    fov = fc @ ov  # [n, H, d]
    out = (p["out.weight"] @ p["blocks.0.mlp.proj.weight"]).transpose(1, 2)  # [n, H, C]
    parts = [fc @ E.transpose(1, 2), fc @ P.transpose(1, 2), fov @ E.transpose(1, 2), fov @ P.transpose(1, 2),
             bias[..., None], out]
    return torch.cat(parts, -1)


def unit_invariants(X: torch.Tensor, vocab: int, seq_len: int, n_out: int) -> torch.Tensor:
    """``[n, H, 12]`` per-unit descriptions unchanged by relabelling tokens (and classes) from
    :func:`unit_features` ``X [n, H, 2V + 2T + 1 + C]`` (``seq_len`` T = 2 only)."""
    V, T, C = vocab, seq_len, n_out
    if T != 2:
        raise UserError(f"unit_invariants reads two-token inputs, got seq_len {T}")
    td, to = X[..., :V], X[..., V + T: 2 * V + T]
    pd, po = X[..., V: V + T], X[..., 2 * V + T: 2 * V + 2 * T]
    bias, out = X[..., 2 * V + 2 * T], X[..., -C:]
    tdc, toc, outc = (t - t.mean(-1, keepdim=True) for t in (td, to, out))
    cos = (tdc * toc).sum(-1) / (tdc.norm(dim=-1) * toc.norm(dim=-1)).clamp_min(1e-9)
    return torch.stack([tdc.norm(dim=-1), toc.norm(dim=-1), cos, outc.norm(dim=-1), td.mean(-1), to.mean(-1), bias,
                        pd[..., 0], pd[..., 1], po[..., 0], po[..., 1], out.mean(-1)], -1)


def set_features(family, params: dict[str, torch.Tensor], kind: str = "both") -> torch.Tensor:
    """Set elements for the classifiers: ``"raw"`` (:func:`unit_features`), ``"invariant"``
    (:func:`unit_invariants`) or ``"both"`` (concatenated): ``[n_models, d_mlp, F]``."""
    if kind not in ("raw", "invariant", "both"):
        raise UserError(f"unknown unit description '{kind}' (valid: both, invariant, raw)")
    X = unit_features(family, params)
    if kind == "raw":
        return X
    inv = unit_invariants(X, family.vocab, family.seq_len, family.n_out)
    return inv if kind == "invariant" else torch.cat([X, inv], -1)


def head_features(family, params: dict[str, torch.Tensor]) -> torch.Tensor:
    """Per-head descriptions ``[n_models, n_heads, 4]`` of a one-block, two-token transformer's
    query-key circuit, in token coordinates: with ``s[h, b, a]`` the attention logit of the last
    position (token ``b``) for position 0 (token ``a``) minus that for itself, over every ``(a, b)``,
    the standard deviation and mean of ``s`` and of ``sigmoid(s)`` (the softmax weight on position 0
    before the ``attention_rate`` mix). Unchanged by the residual basis and by relabelling tokens
    (statistics over every pair); a head is a set element, so their order does not matter."""
    unit_features(family, params)  # the same architecture check
    if family.seq_len != 2:
        raise UserError(f"head_features reads two-token inputs, got seq_len {family.seq_len}")
    p = {k: v.detach().float() for k, v in params.items()}
    E, P = p["embed.weight"], p["pos.weight"]
    H, dh = family.n_heads, family.d_model // family.n_heads
    Wq = p["blocks.0.attn.q.weight"].reshape(-1, H, dh, family.d_model)
    Wk = p["blocks.0.attn.k.weight"].reshape(-1, H, dh, family.d_model)
    q = torch.einsum("nhed,nvd->nhve", Wq, E + P[:, 1:2])  # [n, H, V, dh]
    k0 = torch.einsum("nhed,nvd->nhve", Wk, E + P[:, 0:1])
    k1 = torch.einsum("nhed,nvd->nhve", Wk, E + P[:, 1:2])
    s = (q @ k0.transpose(-1, -2) - (q * k1).sum(-1)[..., None]) / dh ** 0.5  # [n, H, V(b), V(a)]
    w = torch.sigmoid(s)
    return torch.stack([s.std((-1, -2)), s.mean((-1, -2)), w.std((-1, -2)), w.mean((-1, -2))], -1)


class Sets:
    """Several sets per model (e.g. MLP units ``[n, H, F]`` and attention heads ``[n, h, G]``),
    indexable by model (``X[idx]``) like a tensor."""

    def __init__(self, *sets: torch.Tensor):
        self.sets = [torch.as_tensor(s, dtype=torch.float32) for s in sets]

    def __len__(self) -> int:
        return self.sets[0].shape[0]

    def __getitem__(self, idx) -> "Sets":
        idx = torch.as_tensor(np.asarray(idx))
        return Sets(*(s[idx] for s in self.sets))


class _DeepSets(nn.Module):
    def __init__(self, n_in: list[int], width: int, n_out: int = 1):
        super().__init__()
        self.phi = nn.ModuleList(nn.Sequential(nn.Linear(f, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU())
                                 for f in n_in)
        self.rho = nn.Sequential(nn.Linear(2 * width * len(n_in), width), nn.ReLU(), nn.Linear(width, n_out))

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:  # each [n, m_i, F_i] -> [n]
        pooled = []
        for phi, x in zip(self.phi, xs):
            h = phi(x)
            pooled += [h.mean(1), h.amax(1)]
        return self.rho(torch.cat(pooled, -1)).squeeze(-1)


class WeightSetClassifier:
    """DeepSets binary classifier over set elements ``X [n_models, n_units, n_features]`` (or
    several sets, :class:`Sets`: each its own element network, pooled features concatenated).

    Features are standardised with the training models' per-feature statistics (over models and
    elements). Training is full-batch Adam; each step sees a random ``keep`` fraction of the
    elements of each set larger than 8 (set subsampling: the pooled statistics must hold on part of
    the set). ``n_ensemble`` networks from different seeds are averaged (their logits)."""

    def __init__(self, width: int = 32, steps: int = 400, lr: float = 3e-3, weight_decay: float = 1e-3,
                 keep: float = 0.75, n_ensemble: int = 3, seed: int = 0):
        self.width, self.steps, self.lr, self.weight_decay = width, steps, lr, weight_decay
        self.keep, self.n_ensemble, self.seed = keep, n_ensemble, seed

    @staticmethod
    def _sets(X) -> list[torch.Tensor]:
        return X.sets if isinstance(X, Sets) else [torch.as_tensor(X, dtype=torch.float32)]

    def _z(self, X) -> list[torch.Tensor]:
        return [(s - m) / sd for s, m, sd in zip(self._sets(X), self.mean_, self.std_)]

    def fit(self, X, y: np.ndarray) -> "WeightSetClassifier":
        sets = self._sets(X)
        self.mean_ = [s.mean((0, 1)) for s in sets]
        self.std_ = [s.std((0, 1)).clamp_min(1e-6) for s in sets]
        Z = self._z(X)
        t = torch.as_tensor(np.asarray(y), dtype=torch.float32)
        n = len(t)
        self.nets_ = []
        for e in range(self.n_ensemble):
            g = torch.Generator().manual_seed(self.seed * 1000 + e)
            torch.manual_seed(self.seed * 1000 + e)  # nn.Linear's init reads the global generator
            net = _DeepSets([z.shape[-1] for z in Z], self.width)
            opt = torch.optim.AdamW(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
            for _ in range(self.steps):
                subs = []
                for z in Z:
                    m, F = z.shape[1], z.shape[2]
                    if m <= 8:
                        subs.append(z)
                        continue
                    k = max(1, int(round(self.keep * m)))
                    idx = torch.rand(n, m, generator=g).argsort(1)[:, :k]  # a random subset of elements per model
                    subs.append(z.gather(1, idx[..., None].expand(n, k, F)))
                loss = nn.functional.binary_cross_entropy_with_logits(net(subs), t)
                opt.zero_grad()
                loss.backward()
                opt.step()
            self.nets_.append(net.eval())
        return self

    def decision_function(self, X) -> np.ndarray:
        with torch.no_grad():
            Z = self._z(X)
            return torch.stack([net(Z) for net in self.nets_]).mean(0).numpy()


class NFNClassifier:
    """The `nfn` package's neural functional (Zhou et al., 2023: ``HNPLinear`` layers, equivariant to
    hidden-unit permutations, then ``HNPPool``) on the same units, read as a two-layer network:
    inputs (token and position coordinates, ``2V + 2T``) -> hidden units -> logits ``C``. An optional
    extra (``pip install nfn``); :class:`WeightSetClassifier` is the tested default.

    ``X [n_models, n_units, 2V + 2T + 1 + C]`` as from :func:`unit_features`, ``n_out`` = ``C``."""

    def __init__(self, n_out: int, channels: int = 8, steps: int = 300, lr: float = 3e-3, weight_decay: float = 1e-3,
                 n_ensemble: int = 3, seed: int = 0):
        self.n_out, self.channels, self.steps, self.lr = n_out, channels, steps, lr
        self.weight_decay, self.n_ensemble, self.seed = weight_decay, n_ensemble, seed

    def _ws(self, X: torch.Tensor):
        from nfn.common import WeightSpaceFeatures

        Z = (torch.as_tensor(X, dtype=torch.float32) - self.mean_) / self.std_
        C = self.n_out
        w1, b1, w2 = Z[..., : -C - 1], Z[..., -C - 1], Z[..., -C:].transpose(1, 2)
        b2 = torch.zeros(Z.shape[0], C)  # biases of the logits are not unit features: left at 0
        return WeightSpaceFeatures([w1[:, None], w2[:, None]], [b1[:, None], b2[:, None]])

    def _net(self, ws):
        from nfn.common import network_spec_from_wsfeat
        from nfn.layers import HNPLinear, HNPPool, TupleOp

        spec = network_spec_from_wsfeat(ws)
        c = self.channels
        return nn.Sequential(HNPLinear(spec, 1, c), TupleOp(nn.ReLU()), HNPLinear(spec, c, c), TupleOp(nn.ReLU()),
                             HNPPool(spec), nn.Flatten(), nn.LazyLinear(1))

    def fit(self, X: torch.Tensor, y: np.ndarray) -> "NFNClassifier":
        X = torch.as_tensor(X, dtype=torch.float32)
        self.mean_, self.std_ = X.mean((0, 1)), X.std((0, 1)).clamp_min(1e-6)
        ws = self._ws(X)
        t = torch.as_tensor(np.asarray(y), dtype=torch.float32)
        self.nets_ = []
        for e in range(self.n_ensemble):
            torch.manual_seed(self.seed * 1000 + e)
            net = self._net(ws)
            net(ws)  # materialise the lazy readout
            opt = torch.optim.AdamW(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
            for _ in range(self.steps):
                loss = nn.functional.binary_cross_entropy_with_logits(net(ws).squeeze(-1), t)
                opt.zero_grad()
                loss.backward()
                opt.step()
            self.nets_.append(net.eval())
        return self

    def decision_function(self, X: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            ws = self._ws(X)
            return torch.stack([net(ws).squeeze(-1) for net in self.nets_]).mean(0).numpy()
