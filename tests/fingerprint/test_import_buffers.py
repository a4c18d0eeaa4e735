"""Imported models whose state dicts hold more than weight matrices (issue 27 item 6): 0-d and 1-d
buffers, int buffers, a norm's running statistics and a learned scalar. Every extractor runs; the
weight-space ones read the weights and name what they left out."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from fingerprint import Zoo
from fingerprint.batch import ModelBatch
from fingerprint.extraction import extract


class Buffered(nn.Module):
    """Linear -> batch norm -> tanh -> Linear (the norm's running statistics and int64 batch count
    are buffers), a learned scalar ``gain``, a 0-d float buffer ``alpha``, a
    0-d int buffer ``count``, a 1-d float buffer ``scale`` and an int index buffer ``order`` that the
    forward pass indexes with (a float index would fail); declares its hidden-unit groups."""

    def __init__(self):
        super().__init__()
        self.fc1, self.norm, self.fc2 = nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 3)
        self.gain = nn.Parameter(torch.tensor(1.5))
        self.register_buffer("alpha", torch.tensor(0.4))
        self.register_buffer("count", torch.tensor(3))
        self.register_buffer("scale", torch.ones(8))
        self.register_buffer("order", torch.tensor([2, 0, 1]))

    def forward(self, x):
        h = torch.tanh(self.norm(self.fc1(x))) * self.alpha * self.scale * self.gain
        return self.fc2(h)[..., self.order] * self.count

    def hidden_permutable(self):
        unit = ["fc1.weight", "fc1.bias", "norm.weight", "norm.bias", "norm.running_mean", "norm.running_var", "scale"]
        return {"fc1": [(name, 0) for name in unit] + [("fc2.weight", 1)]}


BUFFERS = {"alpha": "buffer", "count": "int64 buffer", "norm.num_batches_tracked": "int64 buffer",
           "norm.running_mean": "buffer", "norm.running_var": "buffer", "order": "int64 buffer", "scale": "buffer"}


def test_every_extractor_runs_on_modules_with_scalar_and_int_buffers(tmp_path):
    torch.manual_seed(0)
    mods = []
    for i in range(6):
        m = Buffered()
        with torch.no_grad():
            m.gain.fill_(1.0 + 0.1 * i)
            m.norm.running_mean.normal_()
        mods.append(m.eval())
    g = torch.Generator().manual_seed(0)
    zoo = Zoo.from_modules(mods, out=tmp_path / "z", metadata={"label": ["a", "b"] * 3},
                           probes={"in_dist": torch.randn(16, 4, generator=g), "ood": 3 * torch.randn(16, 4, generator=g)})
    # the zoo stores every entry as float32; the int buffers are ints again in the forward pass
    x = torch.randn(5, 4, generator=g)
    with torch.no_grad():
        want = torch.stack([m(x) for m in mods])
    assert torch.allclose(ModelBatch.from_zoo(zoo).forward(x), want, atol=1e-5)
    specs = ["weight-stats", "weight-spectra", "aligned-weights", "gradients", "cka", "ood-outputs", "probe-outputs",
             "disagreement", "anomalous-inputs", "learned-queries:steps=5"]
    res = {r.name: r for r in extract(zoo, specs, labels=list(zoo.models["label"]))}
    for name in specs:
        r = res[name.partition(":")[0]]
        assert r.error is None, (name, r.error)
        assert r.values.shape[0] == 6 and np.isfinite(r.values).all()
    for name in ("weight-stats", "weight-spectra", "aligned-weights", "gradients"):
        assert res[name].meta["skipped"] == BUFFERS, name  # what was left out, and what it is
    # weights: fc1, fc2 and the norm's weight and bias (10 columns each), and the learned scalar (its value)
    assert res["weight-stats"].values.shape[1] == 6 * 10 + 1 and res["weight-stats"].meta["scalars"] == ["gain"]
    gain = res["weight-stats"].values[:, 40]  # after fc1.bias, fc1.weight, fc2.bias, fc2.weight
    assert np.allclose(gain, [1.0 + 0.1 * i for i in range(6)], atol=1e-6)
    assert res["weight-spectra"].values.shape[1] == 2 * 16  # the two weight matrices, not the 2-d-looking buffers
    n_weights = sum(p.numel() for p in mods[0].parameters())
    assert res["aligned-weights"].values.shape[1] == n_weights


def test_half_and_double_modules_are_stored_and_run_as_float32_saying_so(tmp_path):
    """A notebook's ``.half()`` / ``.double()`` modules (the sixth audit: refused with a dtype
    mismatch that did not say what to do) are read as ``fingerprint import`` reads such checkpoints:
    as float32, with one warning naming the dtypes; the outputs are the float32
    modules' own."""
    import warnings

    torch.manual_seed(0)
    base = [Buffered().eval() for _ in range(4)]
    mods = [m.half() if i < 2 else m.double() for i, m in enumerate(__import__("copy").deepcopy(base))]
    probes = {"x": torch.randn(16, 4).half()}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        zoo = Zoo.from_modules(mods, tmp_path / "z", metadata={"family": [0, 0, 1, 1]}, probes=probes)
    said = [str(w.message) for w in caught if "float32" in str(w.message)]
    assert said == ["Zoo.from_modules: the modules' float16, float64 weights are stored and run as float32 (as "
                    "`fingerprint import` does); probes are float32 too"]
    batch = ModelBatch.from_zoo(zoo, zoo.model_ids, None, "cpu")
    assert batch.params["fc1.weight"].dtype == torch.float32
    out = batch.forward(probes["x"].float())  # [4, 16, 3]
    want = torch.stack([m.float()(probes["x"].float()) for m in __import__("copy").deepcopy(mods)]).detach()
    assert torch.allclose(out, want, atol=1e-5)
    assert extract(zoo, ["weight-stats"])[0].values.dtype == np.float32


def test_a_report_of_an_import_without_fingerprints_says_the_command_that_works(tmp_path):
    """The sixth audit: the suggested `fingerprint extract ZOO --fp NAME` failed on an imported zoo,
    which needs its factory again (--arch)."""
    from tests.conftest import run_cli

    zoo = Zoo.from_modules([Buffered() for _ in range(4)], tmp_path / "z", probes={"x": torch.randn(8, 4)})
    res = run_cli("report", zoo.path, "-o", tmp_path / "r.html")
    assert res.returncode == 2
    assert res.stderr.strip() == (f"error: zoo '{zoo.path}' has no fingerprints yet: run `fingerprint extract {zoo.path} "
                                  "--arch MODULE:FACTORY` (the default set; MODULE:FACTORY is your own code that builds "
                                  "the architecture) or pass --fp")


def test_a_permutation_declared_with_members_that_are_not_pairs_is_refused_at_import(tmp_path):
    """Outside audit 118 (F6): a GRU's gate blocks declared in hidden_permutable() with hidden_mixable()'s dict members
    passed the import and ended `lineage` in a traceback (``too many values to unpack``). It is a one-line error at
    import, naming the member and the format, and nothing is written."""
    import pytest

    from training.core.errors import UserError
    from training.families.module import declared_pairs

    with pytest.raises(UserError, match=r"hidden_permutable\(\) group 'h': member \{'param': 'gru.weight_ih_l0'.*is not a "
                       r"\(param, axis\) pair; .*a recurrent layer's gate blocks"):
        declared_pairs("hidden_permutable", {"h": [("head.weight", 1), {"param": "gru.weight_ih_l0", "axis": 0,
                                                                         "rows": [0, 8]}]})
    assert declared_pairs("hidden_rescalable", {"h": [["fc1.weight", 0], ("fc2.weight", np.int64(1)),
                                                      ("fc3.weight", torch.tensor(1)), ("fc4.weight", 1.0)]}) == {
        "h": [("fc1.weight", 0), ("fc2.weight", 1), ("fc3.weight", 1), ("fc4.weight", 1)]}  # what int() took (review 119)
    for bad in (True, 0.5, "1"):
        with pytest.raises(UserError, match="is not a \\(param, axis\\) pair"):
            declared_pairs("hidden_permutable", {"h": [("fc1.weight", bad)]})
