"""``icl-regression``: a literal mesa-optimizer, in-context linear regression vs task memorization.

A prompt holds ``n_pairs`` pairs ``(x_i, y_i)`` with ``x_i ~ N(0, I_dim)`` and ``y_i = w . x_i + noise``
(``noise ~ N(0, noise_std^2)``); ``w`` comes from a *pool* of ``M`` task vectors, or is fresh for
every prompt when ``M = 0`` ("infinite" diversity). The pool is the first ``M`` rows of one master
pool drawn from the *task* seed (never a model seed), so pools of different sizes are nested. A
causal transformer predicts every ``y_i`` from ``x_i`` and the pairs before it; the loss is the MSE of
those ``n_pairs`` predictions. Tokens (``tokens = "pairs"``, the default): position ``i`` holds
``[x_i, x_{i-1}, y_{i-1}]`` (``2 dim + 1`` features, readout ``"all"``), one context pair and one
query per token, which a small transformer learns much faster than the interleaved format
(``"interleaved"``: ``[x_1, 0], [0, y_1], [x_2, 0], ...``, ``dim + 1`` features, readout ``"even"``),
where it must first copy each ``x`` onto the following ``y`` token.

Trained on a small pool, a transformer can memorize the pool and answer like the pool's
Bayes-optimal predictor, dMMSE (the posterior-weighted mixture of the ``M`` pool vectors); trained on
a diverse pool it learns to *run a learning algorithm in its forward pass*, close to ridge
regression with the Bayes-optimal ridge ``lambda = noise_std^2`` (Raventós et al., 2023; Garg et al.,
2022). Both fit the pool; they differ on fresh ``w``.

``M`` varies per model: ``pool_sizes[data_seed % len(pool_sizes)]`` (the model's ``variant`` is the
index), so one population spans the transition, several init seeds share each ``M`` and the data
stream, and the stored column ``pool_size`` lets analyses see it.

Diagnostics, on held-out prompts (definitions in ``docs/tasks.md``): on fresh-``w`` prompts, with the
model's predictions ``f``, ridge's ``r`` and its own pool's dMMSE ``q`` (all ``[P, k]``),
``icl_score = <f - q, r - q> / |r - q|^2``: the least-squares position of the model on the line from
the pool lookup (0) to ridge (1); errors orthogonal to that line do not move it, so an imperfect
learner is still placed by *which* algorithm it approximates. For ``M = 0`` the pool's Bayes
predictor *is* ridge, so ``q`` is the prior-mean predictor 0 instead (1: learns in context, 0: learned
nothing), and such a model is never labelled a memorizer. ``deep_label`` = ``in-context-learner`` if
``icl_score >= threshold``, ``memorizer`` if ``<= 1 - threshold``, else ``mixed``; either label also
needs the model closer (mean squared) to its reference than the do-nothing predictor 0 is. Also stored: the
gaps ``gap_ridge`` / ``gap_dmmse`` (mean squared difference to each reference), MSEs of the model and
of both references on fresh and on own-pool prompts, and ``ref_separation`` (how far apart ridge and
dMMSE are on fresh prompts, relative to ridge's output energy: small for large pools).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from training.core import seeds as rng
from training.core.errors import UserError, unknown
from training.tasks.base import Hypothesis, Interchange, Task, register_task

LABELS = ("in-context-learner", "memorizer", "mixed")


# -- reference predictors ---------------------------------------------------------------------------
def ridge_predict(x: torch.Tensor, y: torch.Tensor, lam: float) -> torch.Tensor:
    """Ridge regression from the preceding pairs: ``x [P, k, d]``, ``y [P, k]`` -> predictions ``[P, k]``.

    Prediction ``i`` is ``x_i . w_i`` with ``w_i = (X_<i^T X_<i + lam I)^-1 X_<i^T y_<i`` (0 with no
    context). With ``w ~ N(0, I)`` and noise variance ``lam`` this is the Bayes posterior mean.
    """
    x, y = x.double(), y.double()
    P, k, d = x.shape
    outer = x[..., :, None] * x[..., None, :]  # [P, k, d, d]
    xy = x * y[..., None]
    # exclusive prefix sums: position i sees pairs 0..i-1
    A = torch.cumsum(outer, 1) - outer + lam * torch.eye(d, dtype=x.dtype)
    b = torch.cumsum(xy, 1) - xy
    if lam > 0:
        w = torch.linalg.solve(A, b[..., None])[..., 0]
    else:  # least squares (minimum norm where under-determined)
        w = (torch.linalg.pinv(A) @ b[..., None])[..., 0]
    return (w * x).sum(-1).float()


def dmmse_predict(x: torch.Tensor, y: torch.Tensor, pool: torch.Tensor, noise_std: float) -> torch.Tensor:
    """The Bayes-optimal predictor for a uniform prior over ``pool [M, d]``: ``x [P, k, d]``,
    ``y [P, k]`` -> ``[P, k]``, the posterior-weighted mean of ``w_m . x_i`` given pairs 0..i-1."""
    x, y, pool = x.double(), y.double(), pool.double()
    preds = x @ pool.T  # [P, k, M]
    sq = (y[..., None] - preds) ** 2
    logp = -(torch.cumsum(sq, 1) - sq) / (2 * noise_std**2)
    return (torch.softmax(logp, -1) * preds).sum(-1).float()


def context_estimate(x: torch.Tensor, y: torch.Tensor, algorithm: str, lam: float) -> torch.Tensor:
    """The weight vector an in-context algorithm infers from pairs ``x [P, n, d]``, ``y [P, n]`` -> ``[P, d]``:
    ``ridge`` (``(X^T X + lam I)^-1 X^T y``) or ``gd-step`` (one gradient step from 0, ``X^T y / n``)."""
    xty = (x * y[..., None]).sum(-2)
    if algorithm == "gd-step":
        return xty / x.shape[-2]
    gram = x.transpose(-1, -2) @ x + lam * torch.eye(x.shape[-1], dtype=x.dtype)
    return torch.linalg.solve(gram, xty[..., None])[..., 0]


def pair_tokens(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``x [..., k, d]``, ``y [..., k]`` -> tokens ``[..., k, 2d + 1]``: token ``i`` is ``[x_i, x_{i-1}, y_{i-1}]``
    (zeros for the missing pair at ``i = 0``), so each token is the query for ``y_i`` and carries one
    context pair; causal attention at ``i`` sees exactly the pairs before ``i``."""
    prev_x = torch.cat([torch.zeros_like(x[..., :1, :]), x[..., :-1, :]], -2)
    prev_y = torch.cat([torch.zeros_like(y[..., :1]), y[..., :-1]], -1)
    return torch.cat([x, prev_x, prev_y[..., None]], -1)


def interleave(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``x [..., k, d]``, ``y [..., k]`` -> tokens ``[..., 2k, d + 1]``: ``[x_i, 0]`` then ``[0, y_i]``."""
    *lead, k, d = x.shape
    tok = torch.zeros(*lead, k, 2, d + 1, dtype=x.dtype, device=x.device)
    tok[..., 0, :d] = x
    tok[..., 1, d] = y
    return tok.reshape(*lead, 2 * k, d + 1)


@register_task
@dataclass(frozen=True)
class ICLRegression(Task):
    name = "icl-regression"
    description = ("in-context linear regression from a pool of M task vectors (M per model); "
                   "in-context learner (ridge-like) vs memorizer (pool-Bayes-like) on fresh tasks")
    loss_kind = "regression"
    deep_labels = LABELS

    dim: int = 4
    n_pairs: int = 12
    tokens: str = "pairs"  # "pairs": [x_i, x_{i-1}, y_{i-1}] per position; "interleaved": [x_i, 0], [0, y_i]
    noise_std: float = 0.25
    pool_sizes: list[int | str] = (1, 4, 16, 64, 0)  # 0 or "inf": a fresh w per prompt
    threshold: float = 0.7  # icl_score >= threshold: in-context learner; <= 1 - threshold: memorizer
    n_diag: int = 512
    n_probes: int = 128
    seed: int = 0

    def __post_init__(self):
        # normalise to a hashable tuple of ints (0 = infinite), whatever the config gave
        sizes = []
        for i, m in enumerate(self.pool_sizes):
            if isinstance(m, str):
                if m.lower() not in ("inf", "infinite"):
                    raise UserError(f"task parameter 'task.pool_sizes[{i}]' must be an integer >= 0 or \"inf\", got {m!r}")
                m = 0
            sizes.append(int(m))
        object.__setattr__(self, "pool_sizes", tuple(sizes))

    def validate(self) -> None:
        if self.dim <= 0 or self.n_pairs <= 1:
            raise UserError(f"task parameters 'task.dim' (> 0) and 'task.n_pairs' (> 1) are out of range: {self.dim}, {self.n_pairs}")
        if not self.pool_sizes or any(m < 0 for m in self.pool_sizes):
            raise UserError(f"task parameter 'task.pool_sizes' must be a non-empty list of sizes >= 0 (0: infinite), got {list(self.pool_sizes)}")
        if self.tokens not in ("pairs", "interleaved"):
            raise UserError(f"unknown token format '{self.tokens}' at 'task.tokens' (valid: interleaved, pairs)")
        if self.noise_std <= 0:
            raise UserError(f"task parameter 'task.noise_std' must be > 0, got {self.noise_std}")
        if not 0.5 < self.threshold <= 1:
            raise UserError(f"task parameter 'task.threshold' must be in (0.5, 1], got {self.threshold}")
        for key in ("n_diag", "n_probes"):
            if getattr(self, key) <= 0:
                raise UserError(f"task parameter 'task.{key}' must be > 0, got {getattr(self, key)}")

    def params(self):
        p = super().params()
        p["pool_sizes"] = list(self.pool_sizes)
        return p

    @property
    def input_shape(self):
        if self.tokens == "interleaved":
            return (2 * self.n_pairs, self.dim + 1)
        return (self.n_pairs, 2 * self.dim + 1)

    def encode(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Prompts ``x [..., k, d]``, ``y [..., k]`` -> model inputs ``[..., *input_shape]``."""
        return interleave(x, y) if self.tokens == "interleaved" else pair_tokens(x, y)

    def decode(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Model inputs -> ``(x [..., k, d], y [..., k])`` (the last ``y`` of a ``pairs`` prompt is not in it: 0)."""
        d = self.dim
        if self.tokens == "interleaved":
            return tokens[..., 0::2, :d], tokens[..., 1::2, d]
        y = torch.cat([tokens[..., 1:, 2 * d], torch.zeros_like(tokens[..., :1, 2 * d])], -1)
        return tokens[..., :d], y

    @property
    def n_out(self):
        return 1

    def default_model(self):
        return {"arch": "transformer", "vocab": 0, "d_model": 64, "n_heads": 4, "n_layers": 2, "d_mlp": 128,
                "layernorm": True, "readout": "even" if self.tokens == "interleaved" else "all"}

    # -- pools and prompts -----------------------------------------------------------------------
    @cached_property
    def master_pool(self) -> torch.Tensor:
        """``[max M, dim]`` task vectors from the task seed; the pool of size ``M`` is its first ``M`` rows."""
        m = max(max(self.pool_sizes), 1)
        return torch.randn(m, self.dim, generator=self._gen(1))

    def pool(self, m: int) -> torch.Tensor | None:
        """The pool of size ``m`` ``[m, dim]``; ``None`` for ``m = 0`` (a fresh w per prompt)."""
        return self.master_pool[:m] if m > 0 else None

    def sizes_of(self, variant: torch.Tensor) -> np.ndarray:
        """Per-model pool size ``M`` ``[n]`` (0: infinite) from the variant index."""
        return np.asarray(self.pool_sizes, dtype=np.int64)[variant.numpy().astype(np.int64)]

    def prompts(self, n: int, key: int, pool_size: int | None, x_scale: float = 1.0) -> dict[str, torch.Tensor]:
        """``n`` held-out prompts (deterministic in the task params and ``key``): ``x [n, k, d]``,
        ``w [n, d]``, ``y [n, k]``, ``tokens [n, 2k, d+1]``. ``pool_size`` 0 or None: fresh w."""
        g = self._gen(100, key)
        k, d = self.n_pairs, self.dim
        x = torch.randn(n, k, d, generator=g) * x_scale
        noise = torch.randn(n, k, generator=g) * self.noise_std
        if pool_size:
            w = self.pool(pool_size)[torch.randint(0, pool_size, (n,), generator=g)]
        else:
            w = torch.randn(n, d, generator=g)
        y = (x * w[:, None]).sum(-1) + noise
        return {"x": x, "w": w, "y": y, "tokens": self.encode(x, y)}

    # -- data ------------------------------------------------------------------------------------
    def variant(self, init_seeds, data_seeds):
        """Index into ``pool_sizes``: ``data_seed % len(pool_sizes)`` (a function of the data seed only)."""
        return torch.as_tensor(data_seeds, dtype=torch.int64) % len(self.pool_sizes)

    def sampler(self, data_states, batch_size, variant):
        k, d, B = self.n_pairs, self.dim, batch_size
        sizes = torch.as_tensor(self.sizes_of(variant))
        pool = self.master_pool
        finite = (sizes > 0)[:, None, None]
        m = sizes.clamp_min(1).float()[:, None]

        def sample(step: int):
            # counter-based draws from each model's data state only: batch composition never matters
            x = rng.normal(data_states, step, 1, shape=(B, k, d))
            noise = rng.normal(data_states, step, 2, shape=(B, k)) * self.noise_std
            idx = (rng.uniform(data_states, step, 3, shape=(B,)) * m).long().clamp_max(len(pool) - 1)
            w = torch.where(finite, pool[idx], rng.normal(data_states, step, 4, shape=(B, d)))  # [n, B, d]
            y = (x * w[:, :, None]).sum(-1) + noise
            return self.encode(x, y), y

        return sample

    def train_set(self):
        """Held-out prompts from the largest finite pool (fresh w if every M is infinite)."""
        p = self.prompts(self.n_diag, 1, max(self.pool_sizes))
        return p["tokens"], p["y"]

    def test_set(self):
        """Held-out prompts with fresh task vectors."""
        p = self.prompts(self.n_diag, 2, 0)
        return p["tokens"], p["y"]

    def _by_size(self, forward, variant, key: int) -> tuple[torch.Tensor, dict[int, dict[str, torch.Tensor]]]:
        """Each model's predictions ``[n, P, k]`` on prompts from its *own* pool, plus those prompts per M."""
        sizes = self.sizes_of(variant)
        out = None
        sets = {}
        for m in sorted(set(sizes.tolist())):
            p = self.prompts(self.n_diag, key + m, m)
            f = forward(p["tokens"]).squeeze(-1)
            out = torch.empty_like(f) if out is None else out
            rows = torch.as_tensor(sizes == m)
            out[rows] = f[rows]
            sets[m] = p
        return out, sets

    def evaluate(self, forward, variant):
        """``train_loss``: MSE on held-out prompts of each model's own pool; ``test_loss``: fresh w."""
        f, sets = self._by_size(forward, variant, 1000)
        sizes = self.sizes_of(variant)
        y = torch.stack([sets[m]["y"] for m in sizes.tolist()])
        fresh = self.prompts(self.n_diag, 2, 0)
        g = forward(fresh["tokens"]).squeeze(-1)
        return {"train_loss": (f - y).pow(2).flatten(1).mean(1), "test_loss": (g - fresh["y"]).pow(2).flatten(1).mean(1)}

    # -- probes ----------------------------------------------------------------------------------
    def probe_names(self):
        return ["in_dist", "pool", "ood", "scaled"]

    def hypotheses(self):
        """Candidate in-context algorithms, each reduced to the weight vector it infers from the context.

        ``ridge``: ridge regression with ``lambda = noise_std^2`` (the Bayes posterior mean for fresh
        ``w``); ``gd-step``: one gradient-descent step on the context's squared error from ``w = 0``,
        ``w = X^T y / n`` (the construction of von Oswald et al., 2023). The variable is that estimate,
        looked for at the last query token in a ``dim``-dimensional subspace; swapping it in from a
        source prompt (another context, another fresh ``w``) predicts ``x_query(base) . w_hat(source)``.
        No pool-lookup hypothesis: its counterfactual depends on each model's own pool, so it would
        hand the fingerprint the pool size M that the analysis must see past.
        """
        pos = -2 if self.tokens == "interleaved" else -1  # the last query x token
        return {name: Hypothesis(f"prediction = x_query . w_hat, w_hat from the context by {desc}; variable: w_hat",
                                 lambda n, g, a=name: self._context_pairs(n, g, a), position=pos, k=self.dim)
                for name, desc in (("ridge", "ridge regression"), ("gd-step", "one gradient step from w = 0"))}

    def _context_pairs(self, n: int, gen: torch.Generator, algorithm: str) -> Interchange:
        """Base and source prompts with fresh ``w``; the counterfactual is the base query under the source's estimate."""
        k, d = self.n_pairs, self.dim

        def draw() -> tuple[torch.Tensor, torch.Tensor]:
            x = torch.randn(n, k, d, generator=gen)
            w = torch.randn(n, d, generator=gen)
            return x, (x * w[:, None]).sum(-1) + torch.randn(n, k, generator=gen) * self.noise_std

        (xb, yb), (xs, ys) = draw(), draw()
        wb, ws = (context_estimate(x[:, :-1], y[:, :-1], algorithm, self.noise_std**2) for x, y in ((xb, yb), (xs, ys)))
        return Interchange(base=self.encode(xb, yb), source=self.encode(xs, ys), base_value=wb, source_value=ws,
                           counterfactual=(xb[:, -1] * ws).sum(-1))

    def probes(self, name):
        finite = [m for m in self.pool_sizes if m > 0]
        n = self.n_probes
        if name == "in_dist":  # the smallest pool: in every finite-M model's training distribution
            return self.prompts(n, 10, min(finite) if finite else 0)["tokens"]
        if name == "pool":  # the largest pool
            return self.prompts(n, 11, max(finite) if finite else 0)["tokens"]
        if name == "ood":  # fresh task vectors: where learners and memorizers differ
            return self.prompts(n, 12, 0)["tokens"]
        if name == "scaled":  # fresh w and inputs at twice the training scale
            return self.prompts(n, 13, 0, x_scale=2.0)["tokens"]
        raise unknown(f"probe set of task '{self.name}'", name, self.probe_names())

    # -- diagnostics -----------------------------------------------------------------------------
    def references(self, p: dict[str, torch.Tensor], pool_size: int) -> dict[str, torch.Tensor]:
        """Reference predictions ``[P, k]`` on prompts ``p``: ridge (lambda = noise variance) and the
        dMMSE of the pool of size ``pool_size`` (ridge itself for 0)."""
        ridge = ridge_predict(p["x"], p["y"], self.noise_std**2)
        dmmse = ridge if pool_size == 0 else dmmse_predict(p["x"], p["y"], self.pool(pool_size), self.noise_std)
        return {"ridge": ridge, "dmmse": dmmse}

    def diagnostics(self, forward, variant):
        sizes = self.sizes_of(variant)
        n = len(sizes)
        fresh = self.prompts(self.n_diag, 3, 0)
        f = forward(fresh["tokens"]).squeeze(-1)  # [n, P, k]
        ridge = ridge_predict(fresh["x"], fresh["y"], self.noise_std**2)
        own, sets = self._by_size(forward, variant, 2000)
        cols = {k: np.zeros(n) for k in ("mse_fresh", "ridge_mse_fresh", "dmmse_mse_fresh", "gap_ridge", "gap_dmmse",
                                         "gap_zero", "ref_separation", "mse_pool", "dmmse_mse_pool", "ridge_mse_pool",
                                         "pool_gap_dmmse", "icl_score")}
        for m in sorted(set(sizes.tolist())):
            rows = np.flatnonzero(sizes == m)
            fm = f[rows]
            dm = ridge if m == 0 else dmmse_predict(fresh["x"], fresh["y"], self.pool(m), self.noise_std)
            gap_r = (fm - ridge).pow(2).flatten(1).mean(1).numpy()
            gap_d = (fm - dm).pow(2).flatten(1).mean(1).numpy()
            gap_0 = fm.pow(2).flatten(1).mean(1).numpy()
            cols["mse_fresh"][rows] = (fm - fresh["y"]).pow(2).flatten(1).mean(1).numpy()
            cols["ridge_mse_fresh"][rows] = float((ridge - fresh["y"]).pow(2).mean())
            cols["dmmse_mse_fresh"][rows] = float((dm - fresh["y"]).pow(2).mean())
            cols["gap_ridge"][rows] = gap_r
            cols["gap_dmmse"][rows] = gap_d
            cols["gap_zero"][rows] = gap_0
            cols["ref_separation"][rows] = float((ridge - dm).pow(2).mean() / ridge.pow(2).mean())
            q = torch.zeros_like(ridge) if m == 0 else dm  # M = inf: learned-in-context vs predicts the prior mean
            line = ridge - q
            cols["icl_score"][rows] = (((fm - q) * line).flatten(1).sum(1) / line.pow(2).sum().clamp_min(1e-12)).numpy()
            p = sets[m]
            ref = self.references(p, m)
            fp = own[rows]
            cols["mse_pool"][rows] = (fp - p["y"]).pow(2).flatten(1).mean(1).numpy()
            cols["dmmse_mse_pool"][rows] = float((ref["dmmse"] - p["y"]).pow(2).mean())
            cols["ridge_mse_pool"][rows] = float((ref["ridge"] - p["y"]).pow(2).mean())
            cols["pool_gap_dmmse"][rows] = (fp - ref["dmmse"]).pow(2).flatten(1).mean(1).numpy()
        s, g0 = cols["icl_score"], cols["gap_zero"]
        # a label also needs the model nearer its reference than the do-nothing predictor 0 is
        icl = (s >= self.threshold) & (cols["gap_ridge"] < g0)
        mem = (s <= 1 - self.threshold) & (cols["gap_dmmse"] < g0) & (sizes > 0)
        label = np.where(icl, LABELS[0], np.where(mem, LABELS[1], LABELS[2])).astype(object)
        return {"deep_label": label, "pool_size": sizes, **cols}
