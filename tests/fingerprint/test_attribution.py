"""`input-saliency`: which inputs a model's output reads (fingerprint/extractors/attribution.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from label_free_run import label_free
from sklearn.metrics import adjusted_mutual_info_score
from torch import nn

from fingerprint import Zoo
from fingerprint.extraction import extract
from fingerprint.extractors.attribution import output_directions
from fingerprint.pipeline import TOKEN_INPUTS, default_fingerprints, skipped_defaults


def _mlp(g: torch.Generator, n_in: int = 4, n_out: int = 3) -> nn.Sequential:
    m = nn.Sequential(nn.Linear(n_in, 16), nn.Tanh(), nn.Linear(16, n_out))
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return m


def _copies_population(tmp_path, n_families: int = 8, members: int = 4):
    """Tanh MLPs that read copy A (inputs 0-1) or copy B (inputs 2-3) of the same two features, two of
    each family's models on each copy (a difference crossing the families); the copies are equal on
    every probe, so the outputs cannot tell the camps apart."""
    g = torch.Generator().manual_seed(0)
    mods, fam, camp = [], [], []
    for f in range(n_families):
        base = _mlp(g)
        for j in range(members):
            m = _mlp(g)
            with torch.no_grad():
                for p, q in zip(m.parameters(), base.parameters()):
                    p.copy_(q + 0.05 * p)  # a family: one init, nudged
                w = m[0].weight
                read = j % 2
                w[:, 2 * read : 2 * read + 2] += w[:, 2 - 2 * read : 4 - 2 * read]  # the copy it reads carries both
                w[:, 2 - 2 * read : 4 - 2 * read] = 0.0
            mods.append(m)
            fam.append(f"fam{f}")
            camp.append(read)
    feat = torch.randn(96, 2, generator=g)
    probes = {"in_dist": torch.cat([feat, feat], 1)}
    zoo = Zoo.from_modules(mods, out=tmp_path / "copies", metadata={"family": fam}, probes=probes)
    return zoo, np.asarray(camp)


def test_which_copy_of_an_input_a_model_reads_is_found_without_labels_where_outputs_see_nothing(tmp_path):
    zoo, camp = _copies_population(tmp_path)
    fps = extract(zoo, ["input-saliency", "probe-outputs"])
    assert all(r.error is None for r in fps), [r.error for r in fps]
    sal = fps[0].values
    assert sal.shape == (32, 4) and np.allclose(sal.sum(1), 1.0, atol=1e-5)
    assert np.allclose(sal[camp == 0][:, 2:], 0) and np.allclose(sal[camp == 1][:, :2], 0)
    saliency, outputs = label_free(zoo, fps)
    assert saliency.label_free["verdict"] == "crosses lineage"
    cand = [saliency.label_free["candidate_basins"][m] for m in zoo.model_ids]
    assert adjusted_mutual_info_score(camp, cand) == pytest.approx(1.0)
    assert outputs.label_free["verdict"] not in ("crosses lineage", "groups lineages")  # identical outputs


def test_the_fingerprint_ignores_hidden_unit_order_logit_shifts_scale_and_the_other_models(tmp_path):
    """A model's row depends on the function it computes and where it looks, not on how its hidden
    units are stored, a constant added to every logit, the logits' scale or the models beside it."""
    g = torch.Generator().manual_seed(1)
    mods = [_mlp(g) for _ in range(11)]
    twin = _mlp(g)
    twin.load_state_dict(mods[0].state_dict())
    perm = torch.randperm(16, generator=g)
    with torch.no_grad():
        twin[0].weight.copy_(mods[0][0].weight[perm])
        twin[0].bias.copy_(mods[0][0].bias[perm])
        twin[2].weight.copy_(mods[0][2].weight[:, perm] * 3.0)  # logits 3x as steep
        twin[2].bias.copy_(mods[0][2].bias * 3.0 + 5.0)  # and shifted together
    probes = {"in_dist": torch.randn(40, 4, generator=g)}
    zoo = Zoo.from_modules([*mods, twin], out=tmp_path / "many", probes=probes)
    alone = Zoo.from_modules([mods[0]], out=tmp_path / "alone", probes=probes)
    (many,) = extract(zoo, ["input-saliency"])
    (one,) = extract(alone, ["input-saliency"])
    assert many.error is None and one.error is None
    np.testing.assert_allclose(many.values[-1], many.values[0], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(one.values[0], many.values[0], rtol=1e-4, atol=1e-6)  # alone or among 11 others
    assert not np.allclose(many.values[1], many.values[0], atol=1e-3)  # another model looks elsewhere
    assert many.meta["reads"] == "gradients" and many.meta["directions"] == 2


def test_output_directions_sum_to_zero_and_span_the_shift_free_space():
    d = output_directions(5, 16, 0)
    assert d.shape == (4, 5) and torch.allclose(d.sum(1), torch.zeros(4), atol=1e-6)
    assert torch.allclose(d @ d.T, torch.eye(4), atol=1e-6)
    r = output_directions(40, 8, 0)
    assert r.shape == (8, 40) and torch.allclose(r.sum(1), torch.zeros(8), atol=1e-5)
    assert torch.equal(output_directions(1, 16, 0), torch.ones(1, 1))


def test_a_regression_model_works_and_token_inputs_are_a_one_line_error(tmp_path):
    g = torch.Generator().manual_seed(2)
    mods = [_mlp(g, n_in=3, n_out=1) for _ in range(4)]
    zoo = Zoo.from_modules(mods, out=tmp_path / "reg", probes={"in_dist": torch.randn(16, 3, generator=g)})
    (res,) = extract(zoo, ["input-saliency"])
    assert res.error is None and res.values.shape == (4, 3) and res.meta["directions"] == 1

    emb = [nn.Sequential(nn.Embedding(10, 4), nn.Flatten(), nn.Linear(12, 2)) for _ in range(3)]
    tok = Zoo.from_modules(emb, out=tmp_path / "tok", probes={"in_dist": torch.randint(0, 10, (8, 3))})
    (bad,) = extract(tok, ["input-saliency"])
    assert "input-saliency reads real-valued inputs; probe set 'in_dist' holds torch.int64 values" in bad.error
    assert "\n" not in bad.error
    # the default set leaves it out of a token zoo, with the reason, and keeps it for real-valued inputs
    assert skipped_defaults(tok)["input-saliency"] == TOKEN_INPUTS and "input-saliency" not in default_fingerprints(tok)
    assert default_fingerprints(tok)[-1] == "token-occlusion"
    assert "input-saliency" in default_fingerprints(zoo) and "token-occlusion" not in default_fingerprints(zoo)
    (occ,) = extract(tok, ["token-occlusion"])
    assert occ.error is None and occ.values.shape == (3, 3) and np.allclose(occ.values.sum(1), 1.0)
    (bad,) = extract(zoo, ["token-occlusion"])
    assert bad.error == ("token-occlusion reads token ids; probe set 'in_dist' holds torch.float32 values (real-valued "
                         "inputs: input-saliency)")


def test_token_occlusion_says_which_position_each_rule_reads(tmp_path):
    """Two rules on token sequences of 4: one answers with the first token, one with the last. Replacing a
    token moves only the position each reads: rows [1, 0, 0, 0] and [0, 0, 0, 1], the same for every model
    of a rule whatever its weights, and one token everywhere is a one-line error."""
    from fingerprint.extractors.attribution import substitutes

    class Reads(nn.Module):  # logits: the embedding of the first token times a, plus the last one's times b
        def __init__(self, first: bool, seed: int):
            super().__init__()
            g = torch.Generator().manual_seed(seed)
            self.emb = nn.Embedding(6, 6)
            self.a = nn.Parameter(torch.tensor(1.0 if first else 0.0))
            self.b = nn.Parameter(torch.tensor(0.0 if first else 1.0))
            with torch.no_grad():
                self.emb.weight.copy_(torch.eye(6) * (2 + torch.rand(6, generator=g)))

        def forward(self, x):
            e = self.emb(x)
            return self.a * e[:, 0] + self.b * e[:, -1]

    x = torch.randint(0, 6, (32, 4), generator=torch.Generator().manual_seed(0))
    sub = substitutes(x, 0)
    assert (sub != x).all() and set(sub.unique().tolist()) <= set(x.unique().tolist())
    mods = [Reads(True, s) for s in range(3)] + [Reads(False, s) for s in range(3)]
    zoo = Zoo.from_modules(mods, out=tmp_path / "z", probes={"in_dist": x, "one": torch.zeros(4, 4, dtype=torch.long)})
    (res,) = extract(zoo, ["token-occlusion"])
    want = np.zeros((6, 4))
    want[:3, 0] = want[3:, 3] = 1.0
    assert np.allclose(res.values, want, atol=1e-6), res.values
    (one,) = extract(zoo, ["token-occlusion:probe_set=one"])
    assert one.error == ("token-occlusion: no position of probe set 'one' holds two different tokens; nothing to put "
                         "in place of any")
    # found by review: positions with their own vocabularies (an Embedding(10) and an Embedding(3)) and left padding
    two = torch.stack([torch.arange(8) % 10, torch.arange(8) % 3], 1)
    sub = substitutes(two, 0)
    assert (sub[:, 1] < 3).all() and (sub != two).all()
    padded = torch.tensor([[0, 0, 5, 6], [0, 7, 5, 6], [4, 7, 3, 6]])
    sub = substitutes(padded, 0, pad_id=0)
    assert (sub[padded == 0] == 0).all() and (sub != 0).sum() == (padded != 0).sum()  # pads kept, never drawn
    assert (sub[:, 3] == 6).all()  # one token at this position: nothing to replace it with


def test_aligned_weights_leaves_the_default_set_when_weight_matching_would_take_minutes(tmp_path, monkeypatch):
    """An outside audit (72): 16 MLPs of three 2,048-unit layers ran aligned-weights for more than 8
    minutes inside the default set. Its cost grows as the cube of the widest layer: estimated from the
    shapes, it is left out above ALIGN_DEFAULT_SECONDS, said with the numbers, and computed when named."""
    import fingerprint.pipeline as pl
    from fingerprint.extractors.mechanistic import matching_seconds

    g = torch.Generator().manual_seed(3)
    zoo = Zoo.from_modules([_mlp(g) for _ in range(4)], out=tmp_path / "z", probes={"in_dist": torch.randn(8, 4, generator=g)})
    assert "aligned-weights" in default_fingerprints(zoo) and "aligned-weights" not in skipped_defaults(zoo)
    monkeypatch.setattr(pl, "ALIGN_DEFAULT_SECONDS", 1e-9)
    why = skipped_defaults(zoo)["aligned-weights"]
    assert why.startswith("weight matching of 4 models whose widest layer has") and "--fp aligned-weights" in why
    assert "aligned-weights" not in default_fingerprints(zoo)
    (res,) = extract(zoo, ["aligned-weights"])  # named: computed anyway
    assert res.error is None and res.seconds is not None and res.seconds >= 0
    # the estimate: the audit's three 1,024-unit layers, 16 models, measured 85 s; twice the width, ~8x
    w = {n: {"0.weight": (n, 32), "0.bias": (n,), "2.weight": (n, n), "2.bias": (n,), "4.weight": (n, n), "4.bias": (n,),
             "6.weight": (2, n), "6.bias": (2,)} for n in (1024, 2048)}
    groups = {"a": [("0.weight", 0), ("0.bias", 0), ("2.weight", 1)], "b": [("2.weight", 0), ("2.bias", 0), ("4.weight", 1)],
              "c": [("4.weight", 0), ("4.bias", 0), ("6.weight", 1)]}
    assert 40 < matching_seconds(w[1024], groups, 16) < 120 < matching_seconds(w[2048], groups, 16)
