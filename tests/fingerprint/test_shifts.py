"""Shifts the function cannot see, taken out of the weight fingerprints (``centre_shifts``).

An outside audit of the fifteenth session: models that compute the same function read as a candidate
deep difference on weight-stats (8-16 SDs) when half of them had their output bias started at the log
class prior (a softmax ignores a common shift of the logits), a common shift before a layer norm, or a
bias shift before an eval-mode batch norm matched in its running mean. Each twin below computes its
model's probabilities; the weight fingerprints give it its model's row, and another model's differs.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from encoders import Encoder
from torch import nn

from fingerprint import Zoo
from fingerprint.batch import ModelBatch
from fingerprint.extractors.mechanistic import centre_shifts
from fingerprint.registry import get_extractor
from training.families import get_family
from training.tasks import get_task

WEIGHT_FPS = ("weight-stats", "weight-spectra", "aligned-weights", "cka")


def _make(kind: str) -> nn.Sequential:
    if kind == "softmax":
        return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    norm = nn.LayerNorm(16) if kind == "layer" else nn.BatchNorm1d(16)
    return nn.Sequential(nn.Linear(8, 16), norm, nn.ReLU(), nn.Linear(16, 3))


def _shifted(model: nn.Sequential, kind: str, g: torch.Generator) -> nn.Sequential:
    twin = copy.deepcopy(model)
    with torch.no_grad():
        if kind == "softmax":  # one vector on every class's row, one number on every class's bias
            twin[2].weight.add_(torch.randn(16, generator=g)[None, :])
            twin[2].bias.add_(1.0986)
        elif kind == "layer":  # the same for the layer the norm normalizes
            twin[0].weight.add_(torch.randn(8, generator=g)[None, :])
            twin[0].bias.add_(0.5)
        else:  # each unit's own bias shift, matched in the running mean
            d = torch.randn(16, generator=g)
            twin[0].bias.add_(d)
            twin[1].running_mean.add_(d)
    return twin


@pytest.mark.parametrize("kind", ["softmax", "layer", "batch"])
def test_weight_fingerprints_ignore_shifts_the_function_cannot_see(tmp_path, kind):
    g = torch.Generator().manual_seed(0)
    mods = [_make(kind) for _ in range(2)]
    for m in mods:
        if kind == "batch":
            m[1].running_mean.copy_(torch.randn(16, generator=g))
            m[1].running_var.copy_(torch.rand(16, generator=g) + 0.5)
        m.eval()
    twin = _shifted(mods[0], kind, g).eval()
    x = torch.randn(32, 8, generator=g)
    assert torch.allclose(mods[0](x).log_softmax(-1), twin(x).log_softmax(-1), atol=1e-5)  # the same probabilities
    if kind == "softmax":
        assert not torch.allclose(mods[0](x), twin(x), atol=1e-2)  # the raw logits moved
    mb = ModelBatch.from_zoo(Zoo.from_modules([*mods, twin], out=tmp_path / "zoo", probes={"in_dist": x}))
    for name in WEIGHT_FPS:
        ex = get_extractor(name)
        rows, meta = ex.compute(mb, ex.params)
        want = {"softmax": ["2.bias", "2.weight"], "layer": ["0.bias", "0.weight", "3.bias", "3.weight"],
                "batch": ["0.bias", "1.running_mean", "3.bias", "3.weight"]}[kind]
        assert meta["centred"] == want, (name, meta)
        if ex.output == "distances":
            assert rows[0, 2] < 1e-4 and rows[0, 1] > 1e-3, name  # the twin is model 0 again; model 1 is not
        else:
            assert np.allclose(rows[0], rows[2], rtol=1e-4, atol=1e-5) and not np.allclose(rows[0], rows[1], rtol=1e-3), name
    raw, _ = get_extractor("weight-stats").compute(mb, {**get_extractor("weight-stats").params, "balance": False})
    assert not np.allclose(raw[0], raw[2], rtol=1e-3)  # without it, the shift shows


def test_what_is_centred_and_what_is_not():
    """Only where the function cannot see the shift: a softmax read-out of two classes or more (not one
    output: a regression's, or a single logit's), and a norm with nothing but identity or dropout
    before it (a ReLU between keeps a shift: it moves which units are active)."""
    fam = get_family("mlp", (8,), 3, {"width": 12, "depth": 2})
    assert fam.output_shiftable() == [("out.weight", 0), ("out.bias", 0)]
    assert get_family("mlp", (8,), 1, {"width": 12, "depth": 2}).output_shiftable() == []
    tf = get_family("transformer", (4,), 7, {"vocab": 7, "d_model": 16, "n_heads": 2, "n_layers": 1, "d_mlp": 32})
    assert tf.output_shiftable() == [("out.weight", 0), ("out.bias", 0)]

    from training.families.symmetries import sequential_normalized, sequential_output

    assert sequential_output(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3), nn.LogSoftmax(-1))) == [
        ("2.weight", 0), ("2.bias", 0)]
    assert sequential_output(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3), nn.Tanh())) == []
    # a softmax over another axis than the classes sees a shift of the logits (found by review)
    assert sequential_output(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3), nn.Softmax(dim=0))) == []
    assert sequential_output(nn.Sequential(nn.Linear(4, 3), nn.Softmax(dim=1))) == []  # [B, T, C]: positions
    assert sequential_output(nn.Sequential(nn.Linear(4, 3), nn.LogSoftmax(dim=-1))) == [("0.weight", 0), ("0.bias", 0)]
    direct = sequential_normalized(nn.Sequential(nn.Linear(4, 8), nn.Dropout(), nn.LayerNorm(8), nn.ReLU(), nn.Linear(8, 2)))
    assert direct["0"]["shift"] == {"kind": "layer"}
    after_relu = sequential_normalized(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.BatchNorm1d(8), nn.Linear(8, 2)))
    assert after_relu["0"]["shift"] is None  # still normalized for scale: ReLU keeps a positive scale
    batch = sequential_normalized(nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2)))
    assert batch["0"]["shift"] == {"kind": "batch", "mean": "1.running_mean"}


def test_a_built_in_model_and_its_shifted_read_out_give_one_row():
    """The built-in MLP (the read-out ``out``): a model and a copy with its output bias and weight rows
    shifted alike give the same weight-stats row and the same predictions."""
    task = get_task("xor-cues")
    fam = get_family("mlp", task.input_shape, task.n_out, {"width": 12, "depth": 2})
    p = fam.init([0, 1])
    p = {k: torch.cat([v, v[:1]]) for k, v in p.items()}  # model 2 is model 0 ...
    p["out.bias"][2] += 0.8  # ... with its read-out shifted
    p["out.weight"][2] += torch.randn(p["out.weight"].shape[2])[None, :]
    mb = ModelBatch(fam, p, task, ["a", "b", "c"])
    x = task.train_set()[0][:16]
    out = mb.forward(x)
    assert torch.allclose(out[0].log_softmax(-1), out[2].log_softmax(-1), atol=1e-5)
    rows, meta = get_extractor("weight-stats").compute(mb, get_extractor("weight-stats").params)
    assert meta["centred"] == ["out.bias", "out.weight"]
    assert np.allclose(rows[0], rows[2], rtol=1e-5, atol=1e-6) and not np.allclose(rows[0], rows[1], rtol=1e-3)
    again = centre_shifts(p, fam.output_shiftable())
    assert torch.allclose(again["out.bias"].sum(1), torch.zeros(3), atol=1e-6)


def test_a_regression_read_out_is_left_alone(tmp_path):
    """Outputs of an imported zoo whose labelled data are float targets are regression values, not class
    logits: a shift of them is a real difference, so nothing is centred; with class indices it is."""
    g = torch.Generator().manual_seed(0)
    mods = [_make("softmax").eval() for _ in range(2)]
    x = torch.randn(32, 8, generator=g)
    for y, centred in ((torch.randn(32, 3, generator=g), False), (torch.randint(0, 3, (32,), generator=g), True)):
        zoo = Zoo.from_modules(mods, out=tmp_path / f"zoo{centred}", probes={"in_dist": x}, data=(x, y))
        mb = ModelBatch.from_zoo(zoo)
        assert mb.task.regression() is not centred
        _, meta = get_extractor("weight-stats").compute(mb, get_extractor("weight-stats").params)
        assert ("centred" in meta) is centred
    assert ModelBatch.from_zoo(Zoo.from_modules(mods, out=tmp_path / "nodata", probes={"in_dist": x})).task.regression() is False


class _Tanhed(nn.Sequential):
    """Children run with a tanh after each (its own forward), its permutation symmetry declared: nothing
    about its read-out may be inferred from the children's order (found by review)."""

    def forward(self, x):
        for child in self:
            x = torch.tanh(child(x))
        return x

    def hidden_permutable(self):
        return {}


def test_a_module_with_its_own_forward_declares_its_read_out(tmp_path):
    x = torch.randn(16, 8)
    mods = [_Tanhed(nn.Linear(8, 6), nn.Linear(6, 3)) for _ in range(2)]
    mb = ModelBatch.from_zoo(Zoo.from_modules(mods, out=tmp_path / "zoo", probes={"in_dist": x}))
    assert mb.family.output_shiftable() == []
    _, meta = get_extractor("weight-stats").compute(mb, get_extractor("weight-stats").params)
    assert "centred" not in meta


class _PreNorm(nn.Module):
    """A hand-written pre-norm transformer (its own forward, nothing declared): the residual stream is
    read only through layer norms and the read-out is a slice of ``unembed``'s output."""

    def __init__(self) -> None:
        super().__init__()
        self.embed, self.pos = nn.Embedding(7, 8), nn.Parameter(torch.randn(3, 8))
        self.ln1, self.ln_f = nn.LayerNorm(8), nn.LayerNorm(8)
        self.fc, self.proj = nn.Linear(8, 16), nn.Linear(16, 8)
        self.unembed = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x.long()) + self.pos
        h = h + self.proj(torch.relu(self.fc(self.ln1(h))))
        return self.unembed(self.ln_f(h))[:, -1]

    def hidden_permutable(self) -> dict:
        return {}


def _trained_norms(m: _PreNorm, g: torch.Generator) -> _PreNorm:
    with torch.no_grad():  # gains and biases away from 1 and 0, as training leaves them
        for ln in (m.ln1, m.ln_f):
            ln.weight.copy_(1 + 0.3 * torch.randn(8, generator=g))
            ln.bias.copy_(0.3 * torch.randn(8, generator=g))
    return m.eval()


def test_shifts_a_module_hides_in_its_forward_are_found_by_trying_them(tmp_path):
    """``invisible_shifts`` (sixteenth session's audit: a hand-written pre-norm transformer with +1 on
    every embedding entry, or on every unembedding bias, read as a candidate on weight-stats): a
    per-row constant on the embedding and the position rows, a common shift of the MLP's residual write,
    and the read-out's class-axis shift are found; the twin with all of them gets its model's row."""
    from fingerprint.extractors.shifts import forget_shifts, invisible_shifts

    forget_shifts()
    g = torch.Generator().manual_seed(6)
    torch.manual_seed(6)
    mods = [_trained_norms(_PreNorm(), g) for _ in range(2)]
    twin = copy.deepcopy(mods[0])
    with torch.no_grad():
        twin.embed.weight.add_(torch.randn(7, 1, generator=g))  # one number per token, on every feature
        twin.pos.add_(0.5)
        twin.proj.weight.add_(torch.randn(1, 16, generator=g))  # the MLP writes one number more on every feature
        twin.proj.bias.add_(0.3)
        twin.unembed.bias.add_(1.0)
        twin.unembed.weight.add_(torch.randn(1, 8, generator=g))
    x = torch.randint(0, 7, (32, 3), generator=g)
    assert torch.allclose(mods[0](x).log_softmax(-1), twin(x).log_softmax(-1), atol=1e-5)
    mb = ModelBatch.from_zoo(Zoo.from_modules([*mods, twin], out=tmp_path / "zoo", probes={"in_dist": x}))
    found = invisible_shifts(mb)
    assert {("embed.weight", 1), ("pos", 1), ("proj.weight", 0), ("proj.bias", 0), ("unembed.bias", 0),
            ("unembed.weight", 0)} <= set(found)
    assert not {("fc.weight", 0), ("fc.bias", 0), ("embed.weight", 0), ("ln1.bias", 0)} & set(found)  # these change the outputs
    for name in WEIGHT_FPS[:2]:
        ex = get_extractor(name)
        rows, meta = ex.compute(mb, ex.params)
        assert {"embed.weight", "pos", "proj.weight", "unembed.bias"} <= set(meta["centred"]), name
        assert np.allclose(rows[0], rows[2], rtol=1e-4, atol=1e-5) and not np.allclose(rows[0], rows[1], rtol=1e-3), name


def test_a_weight_the_probes_do_not_reach_is_left_alone(tmp_path):
    """A parameter no change of which moves the outputs on the probes (unused there) is not a shift the
    function cannot see: centring it could change the function elsewhere. Without probes the labelled
    data's inputs are tried on; without either, nothing is tried."""
    from fingerprint.extractors.shifts import forget_shifts, invisible_shifts

    class Unused(nn.Sequential):
        def __init__(self) -> None:
            super().__init__(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
            self.spare = nn.Parameter(torch.randn(5, 2))

    forget_shifts()
    x = torch.randn(16, 4)
    mb = ModelBatch.from_zoo(Zoo.from_modules([Unused().eval() for _ in range(2)], out=tmp_path / "zoo", probes={"in_dist": x}))
    found = invisible_shifts(mb)
    assert ("2.weight", 0) in found and not any(p == "spare" for p, _ in found)
    bare = ModelBatch.from_zoo(Zoo.from_modules([Unused().eval() for _ in range(2)], out=tmp_path / "bare"))
    assert invisible_shifts(bare) == []
    labelled = ModelBatch.from_zoo(Zoo.from_modules([Unused().eval() for _ in range(2)], out=tmp_path / "data",
                                                    data=(x, torch.randint(0, 3, (16,)))))
    assert ("2.weight", 0) in invisible_shifts(labelled)  # no probes: the labelled inputs are tried on (audit 57)


def test_a_shift_is_taken_out_only_where_its_centring_keeps_every_model(tmp_path):
    """A review of the sixteenth session: (1) the norms' unit gains took a shift of all of them as invisible,
    and centring set them to 0 (another function); (2) an answer cached per architecture reached other
    weights, and through the factory's name another ``nn.Sequential`` with the same parameter names, where
    centring changed the function by 3.3. Now each batch is tried on its own models, with the centring
    itself, and whatever is centred leaves every model's outputs as they were."""
    from fingerprint.extractors import mechanistic
    from fingerprint.extractors.shifts import invisible_shifts

    g = torch.Generator().manual_seed(7)
    torch.manual_seed(7)
    x = torch.randn(16, 32, generator=g)
    mb = ModelBatch.from_zoo(Zoo.from_modules([Encoder(bias=False).eval() for _ in range(3)], out=tmp_path / "enc", probes={"in_dist": x}))
    assert not any("norm" in p for p, _ in invisible_shifts(mb))
    mechanistic.forget_balanced()
    params, _ = mechanistic._canonical(mb, True)
    same = ModelBatch(mb.family, params, mb.task, mb.model_ids).forward(x).log_softmax(-1)
    assert torch.allclose(same, mb.forward(x).log_softmax(-1), atol=1e-4)
    mechanistic.forget_balanced()
    y = torch.randn(32, 8, generator=g)
    normed = [nn.Sequential(nn.Linear(8, 16), nn.LayerNorm(16, elementwise_affine=False), nn.Linear(16, 3)).eval() for _ in range(2)]
    relu = [nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3)).eval() for _ in range(2)]
    first = invisible_shifts(ModelBatch.from_zoo(Zoo.from_modules(normed, out=tmp_path / "ln", probes={"in_dist": y})))
    second = invisible_shifts(ModelBatch.from_zoo(Zoo.from_modules(relu, out=tmp_path / "relu", probes={"in_dist": y})))
    assert ("0.weight", 0) in first and second == [("2.bias", 0), ("2.weight", 0)]


class _NormedBlock(nn.Module):
    """A layer a layer norm reads, inside a forward of its own (so nothing is inferred from children)."""

    def __init__(self) -> None:
        super().__init__()
        self.inp, self.norm, self.out = nn.Linear(6, 12), nn.LayerNorm(12), nn.Linear(12, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.norm(self.inp(x))))

    def hidden_permutable(self) -> dict:
        return {}


def test_a_scale_a_norm_removes_inside_a_forward_of_its_own_is_found_by_trying_it(tmp_path):
    """An outside audit (round 3) scaled a layer a layer norm reads in half of each family's models of a
    module that is not an ``nn.Sequential``: weight-stats and weight-spectra read a candidate. The scale
    trials find the layer (its weight and bias scaled together by any ``c > 0``), and its twin scaled by 4
    and shifted gets its model's rows; the read-out, which a scale changes, is not found."""
    from fingerprint.extractors.shifts import invisible_scales

    g = torch.Generator().manual_seed(8)
    torch.manual_seed(8)
    mods = [_NormedBlock().eval() for _ in range(2)]
    twin = copy.deepcopy(mods[0])
    with torch.no_grad():
        twin.inp.weight.mul_(4.0).add_(torch.randn(1, 6, generator=g))
        twin.inp.bias.mul_(4.0).add_(0.7)
    x = torch.randn(32, 6, generator=g)
    assert torch.allclose(mods[0](x), twin(x), atol=1e-4)
    mb = ModelBatch.from_zoo(Zoo.from_modules([*mods, twin], out=tmp_path / "zoo", probes={"in_dist": x}))
    assert invisible_scales(mb) == {"inp": ["inp.bias", "inp.weight"]}
    for name in WEIGHT_FPS[:2]:
        ex = get_extractor(name)
        rows, meta = ex.compute(mb, ex.params)
        assert meta["normalized"] == ["inp"] and {"inp.bias", "inp.weight"} <= set(meta["centred"]), (name, meta)
        assert np.allclose(rows[0], rows[2], rtol=1e-4, atol=1e-5) and not np.allclose(rows[0], rows[1], rtol=1e-3), name


def test_a_model_too_large_to_try_keeps_what_its_family_declares(tmp_path, monkeypatch):
    """Past ``TRIAL_FLOATS`` (weights x tried models x trials) nothing is tried: the trials would cost more
    than the fingerprints on a large imported model. The declared read-out shift still applies."""
    from fingerprint.extractors import shifts

    x = torch.randn(16, 8)
    mb = ModelBatch.from_zoo(Zoo.from_modules([_make("softmax").eval() for _ in range(2)], out=tmp_path / "zoo",
                                              probes={"in_dist": x}))
    assert shifts.invisible_shifts(mb) == [("2.bias", 0), ("2.weight", 0)]
    shifts.forget_shifts()
    monkeypatch.setattr(shifts, "TRIAL_FLOATS", 1000)
    assert shifts.invisible_shifts(mb) == []
    _, meta = get_extractor("weight-stats").compute(mb, get_extractor("weight-stats").params)
    assert meta["centred"] == ["2.bias", "2.weight"]  # what nn.Sequential's read-out declares
    shifts.forget_shifts()


def test_a_norms_affine_scale_passing_to_the_next_layer_is_balanced(tmp_path):
    """The sixteenth session's second audit (H4): ``Linear -> BatchNorm -> ReLU -> Linear`` with the norm's
    weight and bias times ``c > 0`` per unit and the next layer's column divided by ``c`` computes the same,
    and read as a candidate on weight-stats; the norm's affine units are now a rescalable group."""
    g = torch.Generator().manual_seed(9)
    torch.manual_seed(9)
    mods = [nn.Sequential(nn.Linear(6, 10), nn.BatchNorm1d(10), nn.ReLU(), nn.Linear(10, 3)) for _ in range(2)]
    for m in mods:
        m[1].running_mean.copy_(torch.randn(10, generator=g))
        m[1].running_var.copy_(torch.rand(10, generator=g) + 0.5)
        m.eval()
    twin = copy.deepcopy(mods[0])
    c = torch.randn(10, generator=g).exp()
    with torch.no_grad():
        twin[1].weight.mul_(c)
        twin[1].bias.mul_(c)
        twin[3].weight.div_(c[None, :])
    x = torch.randn(24, 6, generator=g)
    assert torch.allclose(mods[0](x), twin(x), atol=1e-5)
    mb = ModelBatch.from_zoo(Zoo.from_modules([*mods, twin], out=tmp_path / "zoo", probes={"in_dist": x}))
    assert mb.family.hidden_rescalable()["1"] == [("1.weight", 0), ("1.bias", 0), ("3.weight", 1)]
    for name in WEIGHT_FPS:
        ex = get_extractor(name)
        rows, meta = ex.compute(mb, ex.params)
        assert "1" in meta["balanced"], name
        if ex.output == "distances":
            assert rows[0, 2] < 1e-4 and rows[0, 1] > 1e-3, name
        else:
            assert np.allclose(rows[0], rows[2], rtol=1e-4, atol=1e-5) and not np.allclose(rows[0], rows[1], rtol=1e-3), name


class _ResCNN(nn.Module):
    """A residual CNN with eval-mode batch norms, in a forward of its own (the second audit of the
    sixteenth session: nothing is inferred from its children)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6)
        self.conv2, self.bn2 = nn.Conv2d(6, 6, 3, padding=1), nn.BatchNorm2d(6)
        self.head = nn.Linear(6 * 16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn1(self.conv1(x)))
        h = torch.relu(h + self.bn2(self.conv2(h)))
        return self.head(nn.functional.avg_pool2d(h, 2).flatten(1))


def test_a_batch_norm_inside_a_forward_of_its_own_is_found_by_trying_it(tmp_path):
    """The sixteenth session's second audit (H3): in a custom-forward CNN, a conv bias shifted with its
    eval-mode batch norm's running mean, or a conv's channels scaled with the norm's running statistics,
    computes the same and read as a candidate on weight-stats (q 0.017). The unit trials find each conv a
    batch norm reads (its channels times ``c >= 1`` with the running mean times ``c`` and the variance
    times ``c**2``; its bias shift matched in the running mean) and the twin gets its model's rows; the
    second norm's affine units, which feed a residual sum, are no rescalable group."""
    from fingerprint.extractors.shifts import forget_shifts, found_by_trying

    forget_shifts()
    g = torch.Generator().manual_seed(10)
    torch.manual_seed(10)
    mods = [_ResCNN() for _ in range(2)]
    for m in mods:
        for bn in (m.bn1, m.bn2):
            bn.running_mean.copy_(torch.randn(6, generator=g))
            bn.running_var.copy_(torch.rand(6, generator=g) + 0.5)
            bn.weight.data.copy_(torch.rand(6, generator=g) + 0.5)
            bn.bias.data.copy_(torch.randn(6, generator=g))
        m.eval()
    twin = copy.deepcopy(mods[0])
    with torch.no_grad():
        d = torch.randn(6, generator=g)
        twin.conv1.bias.add_(d)
        twin.bn1.running_mean.add_(d)
        c = torch.rand(6, generator=g) * 3 + 0.3
        for p in (twin.conv2.weight, twin.conv2.bias, twin.bn2.running_mean):
            p.mul_(c.reshape(-1, *[1] * (p.dim() - 1)))
        twin.bn2.running_var.mul_(c**2)
    x = torch.randn(32, 1, 8, 8, generator=g)
    assert torch.allclose(mods[0](x), twin(x), atol=1e-4)
    mb = ModelBatch.from_zoo(Zoo.from_modules([*mods, twin], out=tmp_path / "zoo", probes={"in_dist": x}))
    found = found_by_trying(mb)
    assert [(layer, mean, shift) for layer, _, mean, _, shift in found.norms] == [
        ("conv1", "bn1.running_mean", True), ("conv2", "bn2.running_mean", True)]
    assert found.rescalable == ()  # bn2's output joins the residual stream; bn1's is read by conv2 and the sum
    for name in ("weight-stats", "weight-spectra", "cka"):  # aligned-weights needs permutation groups declared
        ex = get_extractor(name)
        rows, meta = ex.compute(mb, ex.params)
        assert meta["normalized"] == ["conv1", "conv2"] and {"conv1.bias", "bn1.running_mean"} <= set(meta["centred"]), name
        if ex.output == "distances":
            assert rows[0, 2] < 1e-4 and rows[0, 1] > 1e-3, name
        else:
            assert np.allclose(rows[0], rows[2], rtol=1e-4, atol=1e-5) and not np.allclose(rows[0], rows[1], rtol=1e-3), name


def _gains_trained(m: nn.Module, norm: str, g: torch.Generator) -> nn.Module:
    """``m`` in eval mode with its layer norm ``norm``'s gains and biases away from 1 and 0, as training leaves them."""
    ln = m.get_submodule(norm)
    with torch.no_grad():
        ln.weight.copy_(1 + 0.3 * torch.randn(ln.weight.shape, generator=g))
        ln.bias.copy_(0.3 * torch.randn(ln.bias.shape, generator=g))
    return m.eval()


class _Forward(nn.Module):
    """A ReLU (or GELU) MLP with a layer norm, in a forward of its own: nothing declared."""

    def __init__(self, act: str = "relu") -> None:
        super().__init__()
        self.fc1, self.norm, self.fc2, self.out = nn.Linear(6, 10), nn.LayerNorm(10), nn.Linear(10, 10), nn.Linear(10, 3)
        self.act = getattr(nn.functional, act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.act(self.fc2(self.act(self.norm(self.fc1(x))))))


@pytest.mark.parametrize("act", ["relu", "gelu"])
def test_rescaled_units_inside_a_forward_of_its_own_are_found_by_trying_them(tmp_path, act):
    """The sixteenth session's second audit (M2): a layer norm's gain and bias times ``c`` per unit with the
    next layer's column over ``c`` (ReLU between) read as a candidate in a module with its own forward
    unless it declared ``hidden_rescalable()``. The unit trials find each layer or norm whose units times
    random ``c > 0`` with the next layer's columns over ``c`` compute the same: with ReLU the norm's units
    and ``fc2``'s, balanced like declared groups, so a twin rescaled at both gets its model's rows; with
    GELU, which a scale passes through only approximately, none."""
    from fingerprint.extractors.shifts import forget_shifts, found_by_trying

    forget_shifts()
    g = torch.Generator().manual_seed(11)
    torch.manual_seed(11)
    mods = [_gains_trained(_Forward(act), "norm", g) for _ in range(2)]
    twin = copy.deepcopy(mods[0])
    with torch.no_grad():
        for first, second in ((twin.norm, twin.fc2), (twin.fc2, twin.out)):
            c = torch.randn(10, generator=g).exp()
            first.weight.mul_(c.reshape(-1, *[1] * (first.weight.dim() - 1)))
            first.bias.mul_(c)
            second.weight.div_(c[None, :])
    x = torch.randn(32, 6, generator=g)
    assert torch.allclose(mods[0](x), twin(x), atol=1e-4) == (act == "relu")
    mb = ModelBatch.from_zoo(Zoo.from_modules([*mods, twin], out=tmp_path / "zoo", probes={"in_dist": x}))
    found = [(first, second) for first, _, second in found_by_trying(mb).rescalable]
    assert found == ([("fc2", "out.weight"), ("norm", "fc2.weight")] if act == "relu" else [])
    if act == "gelu":
        return
    for name in ("weight-stats", "weight-spectra", "cka"):  # aligned-weights needs permutation groups declared
        ex = get_extractor(name)
        rows, meta = ex.compute(mb, ex.params)
        assert {"fc2", "norm"} <= set(meta["balanced"]), name
        if ex.output == "distances":
            assert rows[0, 2] < 1e-4 and rows[0, 1] > 1e-3, name
        else:
            assert np.allclose(rows[0], rows[2], rtol=1e-4, atol=1e-5) and not np.allclose(rows[0], rows[1], rtol=1e-3), name


def test_found_units_never_replace_what_a_family_declares(tmp_path):
    """A built-in MLP declares its ReLU units: the trials find the same pairs, and no group is added."""
    task = get_task("xor-cues", {})
    fam = get_family("mlp", task.input_shape, task.n_out, {"width": 8, "depth": 2})
    mb = ModelBatch(fam, fam.init([0, 1, 2]), task, ["a", "b", "c"])
    _, meta = get_extractor("weight-stats").compute(mb, get_extractor("weight-stats").params)
    assert meta["balanced"] == sorted(fam.hidden_rescalable())


class _Recurrent(nn.Module):
    """A token sequence classifier: an embedding, a one-layer ``nn.GRU`` or ``nn.LSTM``, a read-out of
    the last hidden state (the seventeenth session's outside audit)."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.emb = nn.Embedding(10, 8)
        self.rnn = (nn.GRU if kind == "gru" else nn.LSTM)(8, 12, batch_first=True)
        self.readout = nn.Linear(12, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.rnn(self.emb(x.long()))[0]
        return self.readout(out[:, -1])


@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_a_recurrent_models_bias_sum_and_embedding_mixing_are_found_by_trying_them(tmp_path, kind):
    """The seventeenth session's outside audit: GRUs and LSTMs with ``bias_hh`` folded into ``bias_ih``
    (what a converter from a one-bias implementation does; outputs bit-identical) or with the embedding's
    features scaled and ``weight_ih``'s columns divided to match read as a candidate on the weight
    fingerprints, and no declaration could say the first. The sum trials find the entries the function
    reads only through ``bias_ih + bias_hh`` (an LSTM's all; a GRU's reset and update gates, not its new
    gate, whose hidden bias sits inside the reset product), the mixing trials the embedding's features
    against the RNN's input columns (any invertible map), and the twin gets its model's rows."""
    from fingerprint.extractors.shifts import forget_shifts, found_by_trying

    forget_shifts()
    g = torch.Generator().manual_seed(12)
    torch.manual_seed(12)
    mods = [_Recurrent(kind).eval() for _ in range(2)]
    twin = copy.deepcopy(mods[0])
    gates = 24 if kind == "gru" else 48  # entries read through the sum: r, z (GRU) or all four gates (LSTM)
    a = torch.eye(8) + 0.4 * torch.randn(8, 8, generator=g)
    with torch.no_grad():
        twin.rnn.bias_ih_l0[:gates] += twin.rnn.bias_hh_l0[:gates]
        twin.rnn.bias_hh_l0[:gates] = 0
        twin.emb.weight.copy_(twin.emb.weight @ a)
        twin.rnn.weight_ih_l0.copy_(twin.rnn.weight_ih_l0 @ torch.linalg.inv(a).T)
    x = torch.randint(0, 10, (32, 6), generator=g)
    assert torch.allclose(mods[0](x), twin(x), atol=1e-5)
    mb = ModelBatch.from_zoo(Zoo.from_modules([*mods, twin], out=tmp_path / "zoo", probes={"in_dist": x}))
    found = found_by_trying(mb)
    assert found.sums == (("rnn.bias_hh_l0", "rnn.bias_ih_l0", None if kind == "lstm" else tuple(range(gates))),)
    assert found.mixes == (("emb.weight", "rnn.weight_ih_l0"),)
    for name in ("weight-stats", "weight-spectra"):
        ex = get_extractor(name)
        rows, meta = ex.compute(mb, ex.params)
        assert meta["summed"] == ["rnn.bias_hh_l0<rnn.bias_ih_l0"] and "emb.weight>rnn.weight_ih_l0" in meta["mixed"], meta
        assert np.allclose(rows[0], rows[2], rtol=1e-4, atol=1e-5) and not np.allclose(rows[0], rows[1], rtol=1e-3), name
        raw, _ = ex.compute(mb, {**ex.params, "balance": False})
        assert not np.allclose(raw[0], raw[2], rtol=1e-3), name


class _WeightNormed(nn.Module):
    """A ReLU MLP whose layers are ``weight_norm`` parametrizations (``w = g v / ||v||`` per row)."""

    def __init__(self) -> None:
        super().__init__()
        from torch.nn.utils.parametrizations import weight_norm

        self.fc1, self.fc2, self.out = (weight_norm(nn.Linear(a, b)) for a, b in ((6, 10), (10, 10), (10, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


def test_a_weight_norms_direction_and_its_relu_units_are_found_by_trying_them(tmp_path):
    """The seventeenth session's second outside audit: ``weight_norm`` MLPs whose stored direction ``v`` was
    rescaled row by row (a remove and re-apply: ``v := g v / ||v||``), the function unchanged, read a
    candidate on weight-stats and weight-spectra. Each row of ``v`` is now found free (``rows``) and
    normalized: the twin, its directions rescaled row by row, gets its model's rows. (A ReLU unit's scale
    moved into the next layer changes that layer's ``g`` and ``v`` together, which no trial tries.)"""
    from fingerprint.extractors.shifts import forget_shifts, found_by_trying

    forget_shifts()
    g = torch.Generator().manual_seed(13)
    torch.manual_seed(13)
    mods = [_WeightNormed().eval() for _ in range(2)]
    twin = copy.deepcopy(mods[0])
    with torch.no_grad():
        for layer in (twin.fc1, twin.fc2, twin.out):
            layer.parametrizations.weight.original1.mul_(torch.rand(layer.out_features, 1, generator=g) * 3 + 0.3)
    x = torch.randn(32, 6, generator=g)
    assert torch.allclose(mods[0](x), twin(x), atol=1e-4)
    mb = ModelBatch.from_zoo(Zoo.from_modules([*mods, twin], out=tmp_path / "zoo", probes={"in_dist": x}))
    found = found_by_trying(mb)
    assert set(found.rows) == {f"{n}.parametrizations.weight.original1" for n in ("fc1", "fc2", "out")}
    for name in ("weight-stats", "weight-spectra"):
        ex = get_extractor(name)
        rows, meta = ex.compute(mb, ex.params)
        assert "fc1.parametrizations.weight.original1" in meta["normalized"], meta
        assert np.allclose(rows[0], rows[2], rtol=1e-4, atol=1e-5) and not np.allclose(rows[0], rows[1], rtol=1e-3), name


class _PreNormQKV(nn.Module):
    """A hand-written pre-norm attention block with separate ``q``, ``k``, ``v`` projections that one
    layer norm feeds (the layout of TransformerLens-style code), and a read-out through a final norm."""

    def __init__(self) -> None:
        super().__init__()
        self.embed, self.ln1, self.ln_f = nn.Embedding(7, 8), nn.LayerNorm(8), nn.LayerNorm(8)
        self.q, self.k, self.v, self.o = (nn.Linear(8, 8) for _ in range(4))
        self.unembed = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x.long())
        n = self.ln1(h)
        att = torch.softmax(self.q(n) @ self.k(n).transpose(1, 2) / 8**0.5, -1)
        h = h + self.o(att @ self.v(n))
        return self.unembed(self.ln_f(h))[:, -1]


def test_a_norm_feeding_several_layers_is_found_by_following_the_forward(tmp_path):
    """A layer norm's gain and bias times ``c`` per unit with the ``q``, ``k`` and ``v`` columns over ``c``
    computes the same; no single pair of the trials shows it (each alone changes the function). The
    forward's hooks find the three layers that read the norm's output tensor, the fan-out trial finds the
    symmetry, and the twin so edited gets its model's rows."""
    from fingerprint.extractors.shifts import forget_shifts, found_by_trying

    forget_shifts()
    g = torch.Generator().manual_seed(14)
    torch.manual_seed(14)
    mods = [_gains_trained(_PreNormQKV(), "ln1", g) for _ in range(2)]
    twin = copy.deepcopy(mods[0])
    c = torch.randn(8, generator=g).exp()
    with torch.no_grad():
        twin.ln1.weight.mul_(c)
        twin.ln1.bias.mul_(c)
        for layer in (twin.q, twin.k, twin.v):
            layer.weight.div_(c[None, :])
    x = torch.randint(0, 7, (32, 4), generator=g)
    assert torch.allclose(mods[0](x), twin(x), atol=1e-4)
    mb = ModelBatch.from_zoo(Zoo.from_modules([*mods, twin], out=tmp_path / "zoo", probes={"in_dist": x}))
    found = found_by_trying(mb)
    assert [(first, readers) for first, _, readers in found.fanouts] == [("ln1", ("k.weight", "q.weight", "v.weight"))]
    assert not any(first == "ln1" for first, _, _ in found.rescalable)
    for name in ("weight-stats", "weight-spectra"):
        ex = get_extractor(name)
        rows, meta = ex.compute(mb, ex.params)
        assert "ln1" in meta["balanced"], meta
        assert np.allclose(rows[0], rows[2], rtol=1e-4, atol=1e-5) and not np.allclose(rows[0], rows[1], rtol=1e-3), name
