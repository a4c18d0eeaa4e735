"""Units that mix freely, taken out of the weight fingerprints (``canonical_mixing``).

An outside audit of the fifteenth session: a ``Linear -> Linear`` bottleneck computes the same for
``(G W1, G b1, W2 G^-1)`` with any invertible ``G``, and mixing half of a population's bottlenecks
gave a ``weight-spectra`` candidate deep difference. A first fix rewrote each pair from its product
once, and a review found it broke the rescaling invariance next to a ReLU layer (a rescaled twin read
0.37 apart on weight-stats). The mixing now alternates with the scales towards the orbit's point of
least norm. Each twin below computes its model's function; the weight fingerprints give it its
model's row, and another model's differs.
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
from fingerprint.extractors.mixing import canonical_mixing
from fingerprint.registry import get_extractor
from training.core.errors import UserError
from training.families.symmetries import sequential_mixable

WEIGHT_FPS = ("weight-stats", "weight-spectra", "aligned-weights", "cka")


def _bottleneck() -> nn.Sequential:
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4), nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))


def _mixed_and_rescaled(model: nn.Sequential, g: torch.Generator) -> nn.Sequential:
    """The bottleneck's units mixed by a random invertible map, and the ReLU units on both sides rescaled."""
    twin = copy.deepcopy(model)
    q = torch.eye(4) + 0.5 * torch.randn(4, 4, generator=g)
    c1, c2 = torch.randn(16, generator=g).exp(), torch.randn(16, generator=g).exp()
    with torch.no_grad():
        twin[2].weight.copy_(q @ twin[2].weight)
        twin[2].bias.copy_(q @ twin[2].bias)
        twin[3].weight.copy_(twin[3].weight @ torch.linalg.inv(q))
        for layer, nxt, c in ((0, 2, c1), (3, 5, c2)):
            twin[layer].weight.mul_(c[:, None])
            twin[layer].bias.mul_(c)
            twin[nxt].weight.div_(c[None, :])
    return twin


def _same_rows(rows: np.ndarray, output: str) -> bool:
    """Model 2 (the twin) reads as model 0, and model 1 does not."""
    if output == "distances":
        return bool(rows[0, 2] < 1e-4 and rows[0, 1] > 1e-3)
    return bool(np.allclose(rows[0], rows[2], rtol=1e-4, atol=1e-5) and not np.allclose(rows[0], rows[1], rtol=1e-3))


def test_a_bottleneck_mixed_and_its_neighbours_rescaled_gives_one_row(tmp_path):
    g = torch.Generator().manual_seed(0)
    mods = [_bottleneck() for _ in range(2)]
    twin = _mixed_and_rescaled(mods[0], g)
    x = torch.randn(32, 8, generator=g)
    assert torch.allclose(mods[0](x), twin(x), atol=1e-5)
    mb = ModelBatch.from_zoo(Zoo.from_modules([*mods, twin], out=tmp_path / "zoo", probes={"in_dist": x}))
    assert mb.family.hidden_mixable() == {"2": [("2.weight", 0), ("2.bias", 0), ("3.weight", 1)]}
    for name in WEIGHT_FPS:
        ex = get_extractor(name)
        rows, meta = ex.compute(mb, ex.params)
        assert meta["mixed"] == ["2"] and "balance_residual" not in meta, (name, meta)
        assert _same_rows(rows, ex.output), name
    raw, _ = get_extractor("weight-spectra").compute(mb, {**get_extractor("weight-spectra").params, "balance": False})
    assert not np.allclose(raw[0], raw[2], rtol=1e-3)  # without it, the mixing shows


def test_the_mixed_form_computes_the_same_and_is_the_least_norm_point():
    g = torch.Generator().manual_seed(1)
    mods = [_bottleneck().double() for _ in range(3)]
    params = {k: torch.stack([m.state_dict()[k] for m in mods]) for k in mods[0].state_dict()}
    group = sequential_mixable(mods[0])
    out = canonical_mixing(params, group)
    x = torch.randn(16, 8, generator=g, dtype=torch.float64)
    for i, m in enumerate(mods):
        y = torch.func.functional_call(m, {k: v[i] for k, v in out.items()}, (x,))
        assert torch.allclose(y, m(x), atol=1e-12)
    a = torch.cat([out["2.weight"], out["2.bias"][..., None]], -1)  # [n, 4, 17]: the units' incoming side
    b = out["3.weight"].mT  # [n, 4, 16]: their outgoing side
    gram_a, gram_b = a @ a.mT, b @ b.mT
    assert torch.allclose(gram_a, gram_b, atol=1e-10)  # balanced: no invertible map lowers |A|^2 + |B|^2
    diag = torch.diagonal(gram_a, dim1=-2, dim2=-1)
    assert torch.allclose(gram_a, torch.diag_embed(diag), atol=1e-10)  # ... and in the product's singular directions
    assert bool((diag[:, :-1] >= diag[:, 1:]).all())  # in descending order
    before = sum(params[k].pow(2).sum((1, 2)) for k in ("2.weight", "3.weight")) + params["2.bias"].pow(2).sum(1)
    after = sum(out[k].pow(2).sum((1, 2)) for k in ("2.weight", "3.weight")) + out["2.bias"].pow(2).sum(1)
    assert bool((after <= before + 1e-12).all())


class _Heads(nn.Module):
    """Two-head attention over a sequence of 4 vectors, written by hand, declaring its mixings:
    queries against keys and values into the output projection, within each head."""

    def __init__(self) -> None:
        super().__init__()
        self.q, self.k, self.v = (nn.Linear(6, 8, bias=False) for _ in range(3))
        self.o = nn.Linear(8, 6)
        self.out = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(-1, 4, 6)
        q, k, v = (f(x).reshape(-1, 4, 2, 4).transpose(1, 2) for f in (self.q, self.k, self.v))
        att = torch.softmax(q @ k.mT / 2, -1) @ v  # [B, 2, 4, 4]
        return self.out(torch.relu(self.o(att.transpose(1, 2).reshape(-1, 4, 8)))).mean(1)

    def hidden_permutable(self) -> dict:
        return {}

    def hidden_mixable(self) -> dict:
        return {"qk": {"members": [("q.weight", 0), ("k.weight", -1)], "blocks": 2},
                "vo": {"members": [("v.weight", 0), ("o.weight", 1)], "blocks": 2}}


def test_a_module_declares_mixings_within_heads(tmp_path):
    g = torch.Generator().manual_seed(2)
    torch.manual_seed(2)
    mods = [_Heads() for _ in range(2)]
    twin = copy.deepcopy(mods[0])
    with torch.no_grad():
        for h in range(2):
            rows = slice(4 * h, 4 * h + 4)
            for a, b, inverse_transposed in (("q", "k", True), ("v", "o", False)):
                m = torch.eye(4) + 0.5 * torch.randn(4, 4, generator=g)
                inv = torch.linalg.inv(m)
                getattr(twin, a).weight[rows] = m @ getattr(mods[0], a).weight[rows]
                if inverse_transposed:
                    getattr(twin, b).weight[rows] = inv.T @ getattr(mods[0], b).weight[rows]
                else:
                    getattr(twin, b).weight[:, rows] = getattr(mods[0], b).weight[:, rows] @ inv
    x = torch.randn(16, 24, generator=g)
    assert torch.allclose(mods[0](x), twin(x), atol=1e-5)
    mb = ModelBatch.from_zoo(Zoo.from_modules([*mods, twin], out=tmp_path / "zoo", probes={"in_dist": x}))
    for name in ("weight-stats", "weight-spectra"):
        ex = get_extractor(name)
        rows, meta = ex.compute(mb, ex.params)
        assert meta["mixed"] == ["qk", "vo"], meta
        assert _same_rows(rows, ex.output), name
    done = canonical_mixing(mb.params, mb.family.hidden_mixable())
    y = mb.forward(x)
    assert torch.allclose(ModelBatch(mb.family, done, mb.task, mb.model_ids).forward(x), y, atol=1e-4)


class _LensHeads(nn.Module):
    """Attention in TransformerLens' layout (``W_Q [h, d, dh]``, ``W_O [h, dh, d]``), declaring its
    mixings with dict members: the units on axis 2 (1 for ``W_O``), the heads on axis 0."""

    def __init__(self) -> None:
        super().__init__()
        self.W_Q, self.W_K, self.W_V = (nn.Parameter(torch.randn(2, 6, 3)) for _ in range(3))
        self.W_O = nn.Parameter(torch.randn(2, 3, 6))
        self.out = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(-1, 4, 6)
        q, k, v = (torch.einsum("btd,hde->bhte", x, w) for w in (self.W_Q, self.W_K, self.W_V))
        z = torch.softmax(q @ k.mT, -1) @ v
        return self.out(torch.einsum("bhte,hed->btd", z, self.W_O)).mean(1)

    def hidden_permutable(self) -> dict:
        return {}

    def hidden_mixable(self) -> dict:
        return {"qk": [{"param": "W_Q", "axis": 2, "side": "in", "heads": 0}, {"param": "W_K", "axis": 2, "side": "out", "heads": 0}],
                "vo": [{"param": "W_V", "axis": 2, "side": "in", "heads": 0}, {"param": "W_O", "axis": 1, "side": "out", "heads": 0}]}


def _mix_lens_heads(model: _LensHeads, g: torch.Generator) -> _LensHeads:
    """A copy with each head's queries times a random ``G`` and keys by ``G^-T``, values times another
    and the output projection's rows by its ``G^-T`` (units as the columns of ``W_Q``, ``W_K``, ``W_V``)."""
    twin = copy.deepcopy(model).eval()
    with torch.no_grad():
        for a, b in (("W_Q", "W_K"), ("W_V", "W_O")):
            wa, wb = twin.get_parameter(a), twin.get_parameter(b)
            for h in range(wa.shape[0]):
                m = torch.eye(3) + 0.5 * torch.randn(3, 3, generator=g)
                wa[h] = wa[h] @ m.T
                wb[h] = wb[h] @ torch.linalg.inv(m) if b == "W_K" else torch.linalg.inv(m).T @ wb[h]
    return twin


def test_transformerlens_layout_and_torch_attention_mix_within_heads(tmp_path):
    g = torch.Generator().manual_seed(4)
    torch.manual_seed(4)
    lens = [_LensHeads().eval() for _ in range(2)]
    twin = _mix_lens_heads(lens[0], g)
    x = torch.randn(16, 24, generator=g)
    assert torch.allclose(lens[0](x), twin(x), atol=1e-4)
    mb = ModelBatch.from_zoo(Zoo.from_modules([*lens, twin], out=tmp_path / "lens", probes={"in_dist": x}))
    for name in ("weight-stats", "weight-spectra"):
        rows, meta = get_extractor(name).compute(mb, get_extractor(name).params)
        assert meta["mixed"] == ["qk", "vo"] and _same_rows(rows, "rows"), name
    # nn.MultiheadAttention is found wherever it sits, its fused in_proj sliced into q, k and v, biases included
    enc = [Encoder().eval() for _ in range(2)]
    twin = copy.deepcopy(enc[0])
    e = 8
    with torch.no_grad():
        for layer in twin.layers:
            w, b, o = layer.self_attn.in_proj_weight, layer.self_attn.in_proj_bias, layer.self_attn.out_proj.weight
            for h in range(2):
                rows = slice(4 * h, 4 * h + 4)
                mq, mv = (torch.eye(4) + 0.5 * torch.randn(4, 4, generator=g) for _ in range(2))
                for part, m in ((0, mq), (1, torch.linalg.inv(mq).T), (2, mv)):
                    r = slice(part * e + 4 * h, part * e + 4 * h + 4)
                    w[r], b[r] = m @ w[r], m @ b[r]
                o[:, rows] = o[:, rows] @ torch.linalg.inv(mv)
    x = torch.randn(16, 32, generator=g)
    assert torch.allclose(enc[0](x), twin(x), atol=1e-4)
    mb = ModelBatch.from_zoo(Zoo.from_modules([*enc, twin], out=tmp_path / "enc", probes={"in_dist": x}))
    want = [f"layers.{i}.self_attn.{p}" for i in range(2) for p in ("qk", "vo")]
    assert sorted(mb.family.hidden_mixable()) == want
    for name in ("weight-stats", "weight-spectra"):
        rows, meta = get_extractor(name).compute(mb, get_extractor(name).params)
        assert meta["mixed"] == want and _same_rows(rows, "rows"), name
    done = canonical_mixing(mb.params, mb.family.hidden_mixable())
    assert torch.allclose(ModelBatch(mb.family, done, mb.task, mb.model_ids).forward(x), mb.forward(x), atol=1e-4)


def test_what_mixes_and_what_keeps_its_weights():
    assert sequential_mixable(nn.Sequential(nn.Linear(4, 8), nn.Dropout(), nn.Linear(8, 3), nn.Linear(3, 2))) == {
        "0": [("0.weight", 0), ("0.bias", 0), ("2.weight", 1)], "2": [("2.weight", 0), ("2.bias", 0), ("3.weight", 1)]}
    assert sequential_mixable(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))) == {}
    assert sequential_mixable(nn.Linear(4, 3)) == {}
    g = torch.Generator().manual_seed(3)
    # more units than the product can have rank (6 units, 3 outputs): the orbit's edge, the same product with
    # the units beyond 3 at zero, for the model and any mixing of it (a review: such groups were kept as they were)
    wide = {"a.weight": torch.randn(2, 6, 4, generator=g, dtype=torch.float64),
            "a.bias": torch.randn(2, 6, generator=g, dtype=torch.float64),
            "b.weight": torch.randn(2, 3, 6, generator=g, dtype=torch.float64)}
    group = {"a": [("a.weight", 0), ("a.bias", 0), ("b.weight", 1)]}
    q = torch.eye(6, dtype=torch.float64) + 0.5 * torch.randn(6, 6, generator=g, dtype=torch.float64)
    twin = {"a.weight": q @ wide["a.weight"], "a.bias": (q @ wide["a.bias"][..., None])[..., 0],
            "b.weight": wide["b.weight"] @ torch.linalg.inv(q)}
    edge, edge_twin = canonical_mixing(wide, group), canonical_mixing(twin, group)
    assert all(torch.allclose(edge[k], edge_twin[k], atol=1e-9) for k in wide)
    assert bool((edge["a.weight"][:, 3:] == 0).all()) and bool((edge["b.weight"][:, :, 3:] == 0).all())
    product = lambda p: p["b.weight"] @ torch.cat([p["a.weight"], p["a.bias"][..., None]], -1)  # noqa: E731
    assert torch.allclose(product(edge), product(wide), atol=1e-12)
    # a dead unit (no outgoing weights) in model 1 only: model 1 keeps its weights, model 0 does not
    low = {"a.weight": torch.randn(2, 3, 5, generator=g), "a.bias": torch.randn(2, 3, generator=g),
           "b.weight": torch.randn(2, 4, 3, generator=g)}
    low["b.weight"][1, :, 0] = 0
    done = canonical_mixing(low, group | {})
    assert torch.equal(done["a.weight"][1], low["a.weight"][1]) and not torch.equal(done["a.weight"][0], low["a.weight"][0])


@pytest.mark.parametrize(("group", "message"), [
    ({"g": [("a.weight", 2), ("b.weight", 1)]}, r"^hidden_mixable\(\) group 'g' lists \('a.weight', 2\): .*valid axes: 0, 1, -1\)$"),
    ({"g": [("nope", 0), ("b.weight", 1)]}, r"^hidden_mixable\(\) group 'g' lists \('nope', 0\), which is not a parameter"),
    ({"g": [("b.weight", 1)]}, r"^hidden_mixable\(\) group 'g' needs an incoming member \(axis 0\) and an outgoing one"),
    ({"g": [("a.weight", 0), ("a.bias", 0)]}, r"^hidden_mixable\(\) group 'g' needs an incoming member"),
    ({"g": [("a.weight", 0), ("a.weight", 1)]}, r"^hidden_mixable\(\) group 'g': 'a.weight' axis 1 has 5 entries, the group's other members 3 units$"),
    ({"g": {"members": [("a.weight", 0), ("b.weight", 1)], "blocks": 2}}, r"^hidden_mixable\(\) group 'g': 2 blocks do not divide its 3 units$"),
    ({"g": [{"param": "a.weight", "side": "up"}, ("b.weight", 1)]}, r"^hidden_mixable\(\) group 'g' lists 'a.weight' with side 'up' \(valid: in, out\)$"),
    ({"g": [{"param": "a.weight", "axis": 2}, ("b.weight", 1)]}, r"^hidden_mixable\(\) group 'g' lists 'a.weight', which is not a parameter with axis 2 \(parameters: a.bias"),
    ({"g": [{"param": "a.weight", "rows": [2, 9]}, ("b.weight", 1)]}, r"^hidden_mixable\(\) group 'g' lists 'a.weight' with rows \[2, 9\], outside its axis 0 of 3$"),
    ({"g": [{"param": "a.weight", "axis": 1, "heads": 0}, ("b.weight", 1)]}, r"^hidden_mixable\(\) group 'g': 'b.weight' axis 1 has 3 entries, the group's other members 15 units$"),
])
def test_a_broken_declaration_is_named(group, message):
    params = {"a.weight": torch.randn(2, 3, 5), "a.bias": torch.randn(2, 3), "b.weight": torch.randn(2, 4, 3)}
    with pytest.raises(UserError, match=message):
        canonical_mixing(params, group)


def test_gpt2_heads_mix_within_the_fused_projection():
    """A Hugging Face GPT-2's heads (``c_attn``, a ``Conv1D``: the units are its columns, q, k and v side
    by side; ``c_proj``'s rows): mixed head by head, the model computes the same and gets its model's
    weights back; architectures with rotary positions declare nothing."""
    pytest.importorskip("transformers")
    import hf_models as H

    from fingerprint.hf_family import HFFamily

    g = torch.Generator().manual_seed(5)
    base = H.model("gpt2", seed=0)
    twin = copy.deepcopy(base)
    e, dh = 32, 8
    with torch.no_grad():
        for block in twin.transformer.h:
            w, b, proj = block.attn.c_attn.weight, block.attn.c_attn.bias, block.attn.c_proj.weight
            for h in range(4):
                mq, mv = (torch.eye(dh) + 0.5 * torch.randn(dh, dh, generator=g) for _ in range(2))
                for part, m in ((0, mq), (1, torch.linalg.inv(mq).T), (2, mv)):
                    cols = slice(part * e + h * dh, part * e + h * dh + dh)
                    w[:, cols], b[cols] = w[:, cols] @ m.T, m @ b[cols]
                proj[h * dh:h * dh + dh] = torch.linalg.inv(mv).T @ proj[h * dh:h * dh + dh]
    x = torch.randint(4, 60, (3, 6), generator=g)
    assert torch.allclose(base(x).logits, twin(x).logits, atol=1e-4)
    fam = HFFamily(config=base.config.to_dict(), input_shape=(6,), n_out=H.EMBED_ROWS)
    groups = fam.hidden_mixable()
    assert sorted(groups) == [f"transformer.h.{i}.attn.{p}" for i in range(2) for p in ("qk", "vo")]
    params = {k: torch.stack([v.detach(), dict(twin.named_parameters())[k].detach()]) for k, v in base.named_parameters()}
    done = canonical_mixing(params, groups)
    assert all(torch.allclose(v[0], v[1], atol=1e-4) for v in done.values())
    assert not torch.allclose(params["transformer.h.0.attn.c_attn.weight"][0], params["transformer.h.0.attn.c_attn.weight"][1], atol=1e-2)
    logits = torch.func.functional_call(base, {k: v[0] for k, v in done.items()}, (x,)).logits
    assert torch.allclose(logits, base(x).logits, atol=1e-5)
    for kind in ("neox", "llama"):
        assert HFFamily(config=H.config(kind).to_dict(), input_shape=(6,), n_out=H.EMBED_ROWS).hidden_mixable() == {}


def _relabelled(base: nn.Module, groups: dict, g: torch.Generator) -> nn.Module:
    """A copy of ``base`` with the units of each permutation group in ``groups`` relabelled at random."""
    twin = copy.deepcopy(base)
    named = dict(twin.named_parameters())
    with torch.no_grad():
        for members in groups.values():
            perm = torch.randperm(named[members[0][0]].shape[members[0][1]], generator=g)
            for p, axis in members:
                named[p].copy_(named[p].index_select(axis, perm))
    return twin


@pytest.mark.parametrize("kind, group", [("gpt2", "transformer.h.1.mlp.c_fc"), ("neox", "gpt_neox.layers.1.mlp.dense_h_to_4h"),
                                         ("llama", "model.layers.1.mlp.up_proj")])
def test_hugging_face_mlp_units_permute(kind, group):
    """A Hugging Face causal LM's MLP units, by the block's class (GPT-2's Conv1D columns, GPT-NeoX's rows,
    a gated MLP's gate and up rows together): relabelled, the model computes the same, and weight matching
    puts the relabelled twin back on its original (an HF zoo declared none: lineage had no weight test)."""
    pytest.importorskip("transformers")
    import hf_models as H

    from fingerprint.extractors.mechanistic import apply_permutations, weight_match
    from fingerprint.hf_family import HFFamily

    g = torch.Generator().manual_seed(2)
    base = H.model(kind, seed=0)
    fam = HFFamily(config=base.config.to_dict(), input_shape=(6,), n_out=H.EMBED_ROWS)
    groups = fam.hidden_permutable()
    assert len(groups) == 2 and group in groups
    twin = _relabelled(base, groups, g)
    named = dict(twin.named_parameters())
    x = torch.randint(4, 60, (3, 6), generator=g)
    assert torch.allclose(base(x).logits, twin(x).logits, atol=1e-5)
    assert not torch.equal(named[groups[group][0][0]], dict(base.named_parameters())[groups[group][0][0]])
    params = {k: torch.stack([v.detach(), named[k].detach()]) for k, v in base.named_parameters()}
    back = apply_permutations(params, weight_match(params, {k: v[:1] for k, v in params.items()}, groups, 10), groups)
    assert all(torch.allclose(v[0], v[1]) for v in back.values())


def test_plain_mlps_of_other_hugging_face_architectures_permute():
    """An outside audit (77): Falcon, Bloom, GPT-Neo, GPT-BigCode, GPT-J and OPT have an MLP of two Linear
    layers under names of their own, and got no weight tests. Found by their names: relabelled, each computes
    the same."""
    pytest.importorskip("transformers")
    from transformers import (
        AutoModelForCausalLM,
        BloomConfig,
        FalconConfig,
        GPTBigCodeConfig,
        GPTJConfig,
        GPTNeoConfig,
        OPTConfig,
    )

    from fingerprint.hf_family import HFFamily

    ids = {"bos_token_id": 2, "eos_token_id": 3}
    configs = [("transformer.h.1.mlp.c_fc", GPTNeoConfig(vocab_size=80, max_position_embeddings=32, hidden_size=32, num_layers=2,
                                                        num_heads=4, attention_types=[[["global"], 2]], intermediate_size=64, **ids)),
               ("transformer.h.1.mlp.c_fc", GPTBigCodeConfig(vocab_size=80, n_positions=32, n_embd=32, n_layer=2, n_head=4, **ids)),
               ("transformer.h.1.mlp.fc_in", GPTJConfig(vocab_size=80, n_positions=32, n_embd=32, n_layer=2, n_head=4, rotary_dim=4, **ids)),
               ("model.decoder.layers.1.fc1", OPTConfig(vocab_size=80, max_position_embeddings=32, hidden_size=32, num_hidden_layers=2,
                                                      num_attention_heads=4, ffn_dim=64, word_embed_proj_dim=32, pad_token_id=0, **ids)),
               ("transformer.h.1.mlp.dense_h_to_4h", FalconConfig(vocab_size=80, hidden_size=32, num_hidden_layers=2,
                                                                 num_attention_heads=4, **ids)),
               ("transformer.h.1.mlp.dense_h_to_4h", BloomConfig(vocab_size=80, hidden_size=32, n_layer=2, n_head=4, **ids))]
    g = torch.Generator().manual_seed(1)
    for group, config in configs:
        torch.manual_seed(0)
        base = AutoModelForCausalLM.from_config(config, attn_implementation="eager").eval()
        groups = HFFamily(config=base.config.to_dict(), input_shape=(6,), n_out=80).hidden_permutable()
        assert len(groups) == 2 and group in groups, (config.model_type, groups)
        twin = _relabelled(base, groups, g)
        x = torch.randint(4, 60, (3, 6), generator=g)
        assert torch.allclose(base(x).logits, twin(x).logits, atol=1e-5), config.model_type
