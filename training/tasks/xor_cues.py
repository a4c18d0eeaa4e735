"""``xor-cues``: underspecification with two redundant XOR rules.

Each input carries two independent XOR cues, A (dims 0-1) and B (dims 2-3), plus ``n_noise`` dims
of pure noise. On every training example the two cues give the same label, so both "rule A" and
"rule B" fit the training data perfectly; on ``conflict`` probes they disagree. Which rule a model
learns is decided by its seeds; ``cue_b_strength`` (relative to cue A) moves the basin frequencies.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch

from training.core.errors import UserError, unknown
from training.tasks.base import (
    Hypothesis,
    Interchange,
    Task,
    label_from_score,
    register_task,
)


@register_task
@dataclass(frozen=True)
class XorCues(Task):
    name = "xor-cues"
    description = "two redundant XOR cues agree in training, disagree on conflict probes (rule_a / rule_b / mixed)"
    deep_labels = ("rule_a", "rule_b", "mixed")

    n_noise: int = 4
    cue_a_strength: float = 1.0
    cue_b_strength: float = 1.0
    jitter: float = 0.2
    noise_std: float = 1.0
    n_train: int = 512
    n_test: int = 512
    n_probes: int = 256
    threshold: float = 0.8  # agreement >= threshold -> rule_a, <= 1 - threshold -> rule_b
    seed: int = 0

    def validate(self) -> None:
        for key in ("n_noise",):
            if getattr(self, key) < 0:
                raise UserError(f"task parameter 'task.{key}' must be >= 0, got {getattr(self, key)}")
        for key in ("n_train", "n_test", "n_probes"):
            if getattr(self, key) <= 0:
                raise UserError(f"task parameter 'task.{key}' must be > 0, got {getattr(self, key)}")
        if self.cue_a_strength <= 0:
            raise UserError(f"task parameter 'task.cue_a_strength' must be > 0, got {self.cue_a_strength}")
        if self.cue_b_strength < 0:  # 0: cue B off, every model learns rule A (the built-in null population)
            raise UserError(f"task parameter 'task.cue_b_strength' must be >= 0, got {self.cue_b_strength}")
        for key in ("jitter", "noise_std"):
            if getattr(self, key) < 0:
                raise UserError(f"task parameter 'task.{key}' must be >= 0, got {getattr(self, key)}")
        if not 0.5 < self.threshold <= 1:
            raise UserError(f"task parameter 'task.threshold' must be in (0.5, 1], got {self.threshold}")

    @property
    def input_shape(self):
        return (4 + self.n_noise,)

    @property
    def n_out(self):
        return 2

    def default_model(self):
        # narrow tanh nets trained with SGD commit to one rule; wide ReLU nets under Adam mostly
        # learn both cues ("mixed") -- docs/tasks.md has the measurements
        return {"arch": "mlp", "width": 16, "depth": 1, "activation": "tanh"}

    def _make(self, n: int, key: int, conflict: bool = False, scale_a: float | None = None, scale_b: float | None = None):
        """``n`` inputs with labels by rule A (and by rule B in the second label tensor)."""
        g = self._gen(key)
        sa = torch.randint(0, 2, (n, 2), generator=g) * 2 - 1
        y = (sa[:, 0] != sa[:, 1]).long()
        first = torch.randint(0, 2, (n,), generator=g) * 2 - 1
        yb = 1 - y if conflict else y
        # B's second sign makes XOR_B == yb: equal signs give label 0
        second = torch.where(yb == 1, -first, first)
        sb = torch.stack([first, second], 1)
        xa = sa.float() * (self.cue_a_strength if scale_a is None else scale_a)
        xb = sb.float() * (self.cue_b_strength if scale_b is None else scale_b)
        cues = torch.cat([xa, xb], 1) + self.jitter * torch.randn(n, 4, generator=g)
        noise = self.noise_std * torch.randn(n, self.n_noise, generator=g)
        return torch.cat([cues, noise], 1), y, yb

    @cached_property
    def _train(self):
        x, y, _ = self._make(self.n_train, 1)
        return x, y

    @cached_property
    def _test(self):
        x, y, _ = self._make(self.n_test, 2)
        return x, y

    def train_set(self):
        return self._train

    def test_set(self):
        return self._test

    privileged_probes = ("conflict", "cue_a_only", "cue_b_only")  # built from the ground truth (Task.privileged_probes)

    def probe_names(self):
        return ["in_dist", "ood", "conflict", "cue_a_only", "cue_b_only", "noise_far"]

    def probes(self, name: str) -> torch.Tensor:
        n = self.n_probes
        if name == "in_dist":
            return self._make(n, 10)[0]
        if name == "conflict":
            return self._make(n, 11, conflict=True)[0]
        if name == "cue_a_only":
            return self._make(n, 12, scale_b=0.0)[0]
        if name == "cue_b_only":
            return self._make(n, 13, scale_a=0.0)[0]
        if name == "ood":
            # off-distribution: every input dim Gaussian at twice the training scale, no cue structure
            return 2.0 * torch.randn(n, self.input_shape[0], generator=self._gen(14))
        if name == "noise_far":
            # only the noise dims carry signal, and far outside their training range
            x = torch.zeros(n, self.input_shape[0])
            x[:, 4:] = 6.0 * torch.randn(n, self.n_noise, generator=self._gen(15))
            return x
        raise unknown(f"probe set of task '{self.name}'", name, self.probe_names())

    def diagnostics(self, forward, variant):
        # held-out conflict inputs, distinct from the fingerprint probes
        x, ya, _ = self._make(2048, 100, conflict=True)
        pred = forward(x).argmax(-1)
        agree_a = (pred == ya).float().mean(1).numpy()
        xa, ya_only, _ = self._make(1024, 101, scale_b=0.0)
        xb, _, yb_only = self._make(1024, 102, scale_a=0.0)
        acc_a_only = (forward(xa).argmax(-1) == ya_only).float().mean(1).numpy()
        acc_b_only = (forward(xb).argmax(-1) == yb_only).float().mean(1).numpy()
        label = label_from_score(agree_a, self.threshold, 1 - self.threshold, ("rule_a", "rule_b", "mixed"))
        return {"deep_label": label, "rule_a_agreement": agree_a, "cue_a_only_acc": acc_a_only, "cue_b_only_acc": acc_b_only}

    # -- causal hypotheses ---------------------------------------------------------------------
    def _independent(self, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``n`` inputs whose two cues are drawn independently: ``(x, xor_a, xor_b)``."""
        sa = torch.randint(0, 2, (n, 2), generator=gen) * 2 - 1
        sb = torch.randint(0, 2, (n, 2), generator=gen) * 2 - 1
        cues = torch.cat([sa.float() * self.cue_a_strength, sb.float() * self.cue_b_strength], 1)
        x = torch.cat([cues + self.jitter * torch.randn(n, 4, generator=gen),
                       self.noise_std * torch.randn(n, self.n_noise, generator=gen)], 1)
        return x, (sa[:, 0] != sa[:, 1]).long(), (sb[:, 0] != sb[:, 1]).long()

    def _cue_pairs(self, cue: int, n: int, gen: torch.Generator) -> Interchange:
        """Base and source with independent cues, the chosen cue's XOR differing between them; rule
        ``cue`` predicts the source's XOR after the interchange."""
        xb, *vb = self._independent(n, gen)
        xs, *vs = self._independent(n, gen)
        base_v, src_v = vb[cue], 1 - vb[cue]
        # flip the source's second sign of that cue where needed so its XOR differs from the base's
        flip = vs[cue] != src_v
        col = 2 * cue + 1
        xs[flip, col] = -xs[flip, col]
        return Interchange(base=xb, source=xs, base_value=base_v, source_value=src_v, counterfactual=src_v)

    def hypotheses(self):
        """``rule_a``: the output is cue A's XOR; ``rule_b``: cue B's. The variable is that XOR, read at
        the last hidden layer; swapping it from the source should make the model output the source's
        value (base and source have independent cues, so the two rules predict differently)."""
        return {
            "rule_a": Hypothesis("output = XOR of cue A (dims 0-1); variable: that XOR", lambda n, g: self._cue_pairs(0, n, g)),
            "rule_b": Hypothesis("output = XOR of cue B (dims 2-3); variable: that XOR", lambda n, g: self._cue_pairs(1, n, g)),
        }
