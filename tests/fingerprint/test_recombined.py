"""``recombined-outputs``: cue-conflict inputs made from in-distribution ones, with no labels.

A seed-decided choice between two cues that always agree in training is invisible on training-like
inputs and shows on recombinations of them; that is what lets the label-free tests see the rule of
``xor-cues`` (docs/results.md, "Recombined inputs").
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from label_free_run import label_free
from sklearn.metrics import adjusted_mutual_info_score
from torch import nn

from fingerprint import Zoo
from fingerprint.extraction import extract
from fingerprint.extractors.behavioural import recombined_batch
from fingerprint.pipeline import PREDICTIONS, default_fingerprints, skipped_defaults
from training.core.errors import UserError


def test_each_coordinate_comes_from_one_of_two_reference_inputs_and_the_seed_fixes_which():
    ref = torch.arange(10.0)[:, None] * 10 + torch.arange(4.0)  # every value names its row
    x = recombined_batch(ref, 64, "coord", seed=3)
    assert x.shape == (64, 4)
    rows = (x // 10).long()  # [64, 4]: the reference row each coordinate came from
    assert torch.equal(x % 10, torch.arange(4.0).expand(64, 4))  # coordinates keep their position
    assert all(len(set(r.tolist())) <= 2 for r in rows)
    assert (rows != rows[:, :1]).any()  # some inputs really mix two references
    assert torch.equal(x, recombined_batch(ref, 64, "coord", seed=3))
    assert not torch.equal(x, recombined_batch(ref, 64, "coord", seed=4))
    blk = (recombined_batch(ref, 64, "block", seed=3) // 10).long()
    for r in blk:  # a prefix from one reference, the rest from another
        change = (r[1:] != r[:-1]).sum()
        assert change <= 1


def test_token_inputs_stay_tokens_and_bad_arguments_are_one_line_errors():
    ref = torch.randint(0, 7, (12, 5))
    x = recombined_batch(ref, 20, "coord", seed=0)
    assert x.dtype == ref.dtype and int(x.min()) >= 0 and int(x.max()) < 7
    with pytest.raises(UserError, match=r"unknown recombination mode 'patch' \(valid: coord, block\)"):
        recombined_batch(ref, 4, "patch", seed=0)
    with pytest.raises(UserError, match="at least 2 reference probes"):
        recombined_batch(ref[:1], 4, "coord", seed=0)


def test_left_padded_prompts_recombine_on_their_real_tokens_into_valid_prompts():
    # prompts of 2 to 6 real tokens left-padded with 0 to 7 positions, as an HF import stores them;
    # token 10 * r + t + 1 is reference r's token at position t (counted from its first real token)
    lengths = [2, 3, 3, 4, 5, 6, 6, 2]
    ref = torch.zeros(len(lengths), 7, dtype=torch.long)
    for r, k in enumerate(lengths):
        ref[r, 7 - k:] = 10 * r + torch.arange(k) + 1
    for mode in ("coord", "block"):
        x = recombined_batch(ref, 200, mode, seed=1, pad_id=0)
        assert x.shape == (200, 7)
        started = (x != 0).long().cummax(1).values.bool()
        assert not ((x == 0) & started).any()  # no padding inside a prompt, only its leading run
        plain = recombined_batch(ref, 200, mode, seed=1)  # mixing the padded rows puts padding inside some
        assert ((plain == 0) & (plain != 0).long().cummax(1).values.bool()).any()
        mixed = 0
        for row in x:
            toks = row[row != 0] - 1
            parents, pos = (toks // 10).tolist(), (toks % 10).tolist()
            assert pos == list(range(len(toks)))  # every token at its own position, counted from the first
            assert len(set(parents)) <= 2 and len(toks) == max(lengths[p] for p in parents)  # as long as the longer
            mixed += len({lengths[p] for p in parents}) == 2
        assert mixed > 20  # prompts of different lengths do recombine
    # prompts of one length recombine exactly as without padding (the same draws)
    same = torch.cat([torch.zeros(8, 2, dtype=torch.long), torch.randint(1, 10, (8, 5))], 1)
    assert torch.equal(recombined_batch(same, 50, "coord", 2, pad_id=0), recombined_batch(same, 50, "coord", 2))


def _two_cue_population(tmp_path, n_families: int = 12, members: int = 3):
    """Linear models that read cue 0 (camp 0) or cue 1 (camp 1), the camp decided by the family; the
    two cues are equal on every in-distribution input, so the camps agree there."""
    g = torch.Generator().manual_seed(0)
    mods, fam, camp = [], [], []
    for f in range(n_families):
        base = 0.05 * torch.randn(2, 4, generator=g)
        base[0, f % 2], base[1, f % 2] = 1.5, -1.5
        for _ in range(members):
            m = torch.nn.Linear(4, 2)
            with torch.no_grad():
                m.weight.copy_(base + 0.01 * torch.randn(2, 4, generator=g))
                m.bias.zero_()
            mods.append(m)
            fam.append(f"fam{f}")
            camp.append(f % 2)
    cue = torch.randn(128, 1, generator=g)
    in_dist = torch.cat([cue, cue, 0.3 * torch.randn(128, 2, generator=g)], 1)
    zoo = Zoo.from_modules(mods, out=tmp_path / "two-cues", metadata={"family": fam},
                           probes={"in_dist": in_dist})
    return zoo, np.asarray(camp)


def test_a_seed_decided_cue_choice_is_found_without_labels_on_recombined_inputs_only(tmp_path):
    zoo, camp = _two_cue_population(tmp_path)
    fps = extract(zoo, ["probe-outputs:transform=prob", "recombined-outputs"])
    assert all(r.error is None for r in fps), [r.error for r in fps]
    plain, recombined = label_free(zoo, fps)
    assert recombined.label_free["verdict"] == "groups lineages"
    cand = [recombined.label_free["candidate_basins"][m] for m in zoo.model_ids]
    assert adjusted_mutual_info_score(camp, cand) == pytest.approx(1.0)
    assert plain.label_free["verdict"] not in ("groups lineages", "crosses lineage")


def test_one_coordinate_inputs_leave_recombined_outputs_out_of_the_default_set_and_asking_for_it_says_why(tmp_path):
    """A 1-D regression input has nothing to recombine (each "recombined" input would be one of the
    references, an outside audit's regression zoos): the default set says so; asked for, one line."""
    torch.manual_seed(0)
    mods = [nn.Sequential(nn.Linear(1, 8), nn.Tanh(), nn.Linear(8, 1)) for _ in range(4)]
    zoo = Zoo.from_modules(mods, out=tmp_path / "zoo", probes={"in_dist": torch.linspace(-3, 3, 32)[:, None],
                                                               "ood": torch.linspace(5, 9, 16)[:, None]})
    assert "recombined-outputs" not in default_fingerprints(zoo) and "probe-outputs" in default_fingerprints(zoo)
    assert "single coordinate" in skipped_defaults(zoo)["recombined-outputs"]
    assert "single input value" in skipped_defaults(zoo)["input-saliency"]  # its share would be 1 for every model
    with pytest.raises(UserError, match="recombined-outputs: the reference inputs have a single coordinate"):
        recombined_batch(torch.linspace(-3, 3, 32)[:, None], 8, "coord", 0)


def test_an_import_without_in_dist_probes_leaves_the_in_dist_predictions_out_and_says_why(tmp_path):
    """The default set's `disagreement:probe_set=in_dist` reads the `in_dist` probes: an import without
    them leaves it out, with the reason, as it does `probe-outputs`; the `ood` one stays."""
    mods = [nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)) for _ in range(3)]
    zoo = Zoo.from_modules(mods, out=tmp_path / "imp", probes={"ood": torch.randn(8, 4)})
    why = skipped_defaults(zoo)
    assert why[PREDICTIONS] == why["probe-outputs"] == "no probe set 'in_dist'"
    assert PREDICTIONS not in default_fingerprints(zoo) and "disagreement" in default_fingerprints(zoo)
    both = Zoo.from_modules(mods, out=tmp_path / "both", probes={"ood": torch.randn(8, 4), "in_dist": torch.randn(8, 4)})
    (res,) = extract(both, [PREDICTIONS])
    assert res.error is None and res.values.shape == (3, 3) and np.allclose(np.diag(res.values), 0)
