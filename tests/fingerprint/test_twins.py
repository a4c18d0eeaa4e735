"""Near twins by their weights: told every model is its own init family (``--lineage model_id``), an import
whose models share initialisations is warned about (an outside audit, 80: two nulls of hidden families read
their families as candidate basins)."""

from __future__ import annotations

import warnings
from collections import Counter

import numpy as np
import pytest
import torch

from fingerprint import Zoo
from fingerprint import pipeline as pl
from fingerprint import twins as tw
from fingerprint.twins import TWIN_R, near_twins


def _nudge(params, seed: int) -> None:
    """Move each of ``params`` a little at random (``seed``): a relative, the same start trained a little otherwise."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in params:
            p.add_(0.3 * p.std() * torch.randn(p.shape, generator=g))


def _mlp(seed: int, nudge: int | None = None) -> torch.nn.Module:
    torch.manual_seed(seed)
    m = torch.nn.Sequential(torch.nn.Linear(6, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3))
    if nudge is not None:
        _nudge(m.parameters(), nudge)
    return m


def test_relatives_are_near_twins_and_independent_inits_are_not(tmp_path):
    mods = [_mlp(s) for s in range(6)] + [_mlp(100, nudge=k) for k in range(3)]
    ids = [f"m{i}" for i in range(6)] + ["r0", "r1", "r2"]
    zoo = Zoo.from_modules(mods, tmp_path / "z", model_ids=ids, probes={"in_dist": torch.randn(8, 6)})
    twins = near_twins(zoo)
    assert sorted((a, b) for a, b, _ in twins) == [("r0", "r1"), ("r0", "r2"), ("r1", "r2")]
    assert all(r >= TWIN_R for *_, r in twins)
    with pytest.warns(UserWarning, match=r"^--lineage model_id makes every model its own init family, but 3 pairs of "
                                         r"models \(3 models\) have near-twin weights"):
        pl.options_for(zoo, lineage="model_id")
    alone = Zoo.from_modules(mods[:6], tmp_path / "y", probes={"in_dist": torch.randn(8, 6)})
    assert near_twins(alone) == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pl.options_for(alone, lineage="model_id")  # independent inits: nothing to say


class _WithBuffer(torch.nn.Module):
    """A small MLP with a positional table every model shares (a buffer), as a transformer has."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(6, 64)
        self.out = torch.nn.Linear(64, 3)
        self.register_buffer("table", torch.arange(4096.0).reshape(64, 64))

    def forward(self, x):
        return self.out(torch.relu(self.fc(x)))


def test_shared_buffers_and_tiny_models_do_not_make_twins(tmp_path):
    """A review: a buffer the same in every model counted as a correlation of 1, and a model of 4 weights
    correlates near +-1 by chance."""
    probes = {"in_dist": torch.randn(8, 6)}
    mods = []
    for s in range(8):
        torch.manual_seed(s)
        mods.append(_WithBuffer())
    assert near_twins(Zoo.from_modules(mods, tmp_path / "b", probes=probes)) == []
    tiny = []
    for s in range(8):
        torch.manual_seed(s)
        tiny.append(torch.nn.Sequential(torch.nn.Linear(1, 2), torch.nn.Linear(2, 1)))
    assert near_twins(Zoo.from_modules(tiny, tmp_path / "t", probes={"in_dist": torch.randn(4, 1)})) is None


def test_an_import_without_families_takes_them_from_near_twin_weights(tmp_path):
    """An outside audit (79): a custom module's models imported without metadata got no answer at all, and (80)
    told every model was its own family, hidden families read as candidates. With nothing else to go by, an
    import's families are its near-twin groups, said in one line; a column named with --lineage still wins."""
    from fingerprint import tables

    mods = [_mlp(s) for s in range(4)] + [_mlp(100, nudge=k) for k in range(3)] + [_mlp(200, nudge=k) for k in range(2)]
    ids = [f"m{i}" for i in range(4)] + ["r0", "r1", "r2", "s0", "s1"]
    zoo = Zoo.from_modules(mods, tmp_path / "z", model_ids=ids, probes={"in_dist": torch.randn(8, 6)})
    table = tables.model_table(zoo)
    fam = dict(zip(ids, table[tables.TWIN_FAMILY]))
    assert fam["r0"] == fam["r1"] == fam["r2"] != fam["s0"] == fam["s1"] and len({fam[f"m{i}"] for i in range(4)}) == 4
    # named so that a sentence listing families names models the user knows (audit 79 F5: "{L0, L1, L10, ...}")
    assert [fam[m] for m in ("m0", "r2", "s1")] == ["m0", "family of r0", "family of s0"]
    assert tables.unrecorded_lineage(table) == tables.TWIN_FAMILY
    assert pl.options_for(zoo).lineage == tables.TWIN_FAMILY
    assert tables.recovered_line(tables.TWIN_FAMILY, zoo) == (
        "lineage: the 2 families of models whose weights are near twins (3, 2 models, and 4 alone) (correlation 0.45 or "
        "more, as relatives keep their shared start), since the zoo records none: an estimate from the weights, not a "
        "column of the zoo; training that parts relatives' weights far enough would split a family along that "
        "difference, which then reads as lineage; models alone may be relatives whose weights drifted apart (long "
        f"training, strong weight decay): `fingerprint lineage {zoo.path}` tests every pair with the units aligned first "
        "where the architecture declares them (docs/lineage.md), and the families that weight test recovers come first "
        "(--lineage COLUMN names the families; "
        "docs/lineage.md, \"Near twins\")")
    assert pl.options_for(zoo, lineage="model_id").lineage == "model_id"
    # a stored analysis is reused only for the same near-twin families (their rule changed: audit 81's fresh heads)
    stamp = tables.options_stamp(zoo, pl.options_for(zoo))
    assert len(stamp["twins"]) == 16 and "twins" not in tables.options_stamp(zoo, pl.options_for(zoo, lineage="model_id"))
    tw._TWINS[tw._twin_key(zoo, "families")] = np.asarray([f"m{i}" for i in range(len(zoo))], dtype=object)
    assert tables.options_stamp(zoo, pl.options_for(zoo, lineage=tables.TWIN_FAMILY))["twins"] != stamp["twins"]


def test_a_linear_model_and_one_family_of_all_say_nothing(tmp_path):
    """A review: independent fits of one convex problem (a model of one weight matrix) reach one solution and
    correlate near 1, so near twins say nothing there; and a warning that groups may be families is no use when
    every model is a twin of the others (fine-tunes of one base)."""
    probes = {"in_dist": torch.randn(8, 64)}
    lin = []
    for s in range(6):
        torch.manual_seed(s)
        lin.append(torch.nn.Linear(64, 8))
    assert near_twins(Zoo.from_modules(lin, tmp_path / "l", probes=probes)) is None
    one = Zoo.from_modules([_mlp(300, nudge=k) for k in range(5)], tmp_path / "o", probes={"in_dist": torch.randn(8, 6)})
    assert len(near_twins(one)) == 10
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pl.options_for(one, lineage="model_id")


def _fresh_head(body_seed: int, head_seed: int) -> torch.nn.Module:
    """A fine-tune whose body starts from a base (``body_seed``, moved a little) and whose head is new (``head_seed``):
    the head holds 5 times the body's weights."""
    torch.manual_seed(body_seed)
    body = torch.nn.Linear(6, 64)
    _nudge(body.parameters(), head_seed)
    torch.manual_seed(1000 + head_seed)
    m = torch.nn.Sequential(torch.nn.Linear(6, 64), torch.nn.ReLU(), torch.nn.Linear(64, 30))
    m[0].load_state_dict(body.state_dict())
    return m


def test_fine_tunes_with_a_fresh_head_are_twins_by_their_shared_body(tmp_path):
    """An outside audit (81): fine-tunes given a new classifier head (75% of the weights) correlated 0.05-0.43 in all,
    every model read as its own family, and a null read as a candidate. Each tensor is read alone as well, beyond
    its chance spread; an unrelated body is not."""

    mods = [_fresh_head(b, b + h) for b in (10, 20, 30) for h in range(4)] + [_fresh_head(40 + k, 50 + k) for k in range(4)]
    zoo = Zoo.from_modules(mods, tmp_path / "z", probes={"in_dist": torch.randn(8, 6)})
    fam = tw.twin_families(zoo)
    assert [len(set(fam[i:i + 4])) for i in (0, 4, 8)] == [1, 1, 1] and len(set(fam[:12])) == 3
    assert len(set(fam[12:])) == 4 and not set(fam[12:]) & set(fam[:12])


class _Skip(torch.nn.Module):
    """An MLP with a linear shortcut from inputs to outputs: a tensor with no hidden-unit axis."""

    def __init__(self):
        super().__init__()
        self.fc, self.out, self.skip = torch.nn.Linear(32, 64), torch.nn.Linear(64, 16), torch.nn.Linear(32, 16, bias=False)

    def forward(self, x):
        return self.out(torch.relu(self.fc(x))) + self.skip(x)


def _skips(n: int, shortcut) -> list[torch.nn.Module]:
    """``n`` independently initialised :class:`_Skip` models whose shortcut weights are ``shortcut(seed)``."""
    mods = []
    for s in range(n):
        torch.manual_seed(s)
        m = _Skip()
        with torch.no_grad():
            m.skip.weight.copy_(shortcut(s))
        mods.append(m)
    return mods


def test_a_tensor_every_model_converges_to_makes_no_twins(tmp_path):
    """A review of audit 81's fix: independent inits trained on the same data reach the same shortcut weights (no
    hidden unit to put them in another order), and read alone that tensor joined all 8 into one family. Each tensor
    read alone is centred across the models first: what they all share is no shared start."""

    solution = torch.randn(16, 32)
    mods = _skips(8, lambda s: solution + 0.05 * torch.randn(16, 32))  # where training takes every model
    zoo = Zoo.from_modules(mods, tmp_path / "z", probes={"in_dist": torch.randn(8, 32)})
    assert tw.near_twins(zoo) == []


def test_one_family_of_all_says_what_else_could_join_them(tmp_path):
    """An outside audit (83): recurrent matrices initialised to the identity joined 24 independent seeds into one
    family, and the line called them relatives that keep their shared start."""
    from fingerprint import tables

    mods = [_mlp(100, nudge=k) for k in range(6)]
    zoo = Zoo.from_modules(mods, tmp_path / "z", probes={"in_dist": torch.randn(8, 6)})
    line = tables.recovered_line(tables.TWIN_FAMILY, zoo)
    assert "(6 models)" in line and ("; all 6 models are one family: if they were initialised independently, a tensor "
                                     "they all start from (an identity, a fixed table, a shared pretrained part) joins "
                                     "them, and --lineage model_id says each is its own") in line



class _Irnn(torch.nn.Module):
    """A recurrent-style MLP whose square hidden layer starts from the identity (an IRNN's recurrent matrix)."""

    def __init__(self):
        super().__init__()
        self.inp, self.rec, self.out = torch.nn.Linear(8, 48), torch.nn.Linear(48, 48), torch.nn.Linear(48, 4)
        with torch.no_grad():
            self.rec.weight.copy_(torch.eye(48) + 0.02 * torch.randn(48, 48))  # the start, moved a little by training

    def forward(self, x):
        return self.out(torch.relu(self.rec(torch.relu(self.inp(x)))))


def test_a_tensor_every_model_starts_from_makes_no_twins(tmp_path):
    """An outside audit (83): recurrent matrices initialised to the identity (the larger part of the weights) made 24
    independent seeds one family by the whole correlation. A tensor nearly the same in every model while the others
    are not is compared by what the models learned away from it; relatives of a base still are twins."""

    mods = []
    for s in range(8):
        torch.manual_seed(s)
        mods.append(_Irnn())
    probes = {"in_dist": torch.randn(8, 8)}
    assert tw.near_twins(Zoo.from_modules(mods, tmp_path / "i", probes=probes)) == []
    relatives = []
    for k in range(3):
        torch.manual_seed(100)
        m = _Irnn()
        _nudge((m.inp.weight, m.out.weight), k)
        relatives.append(m)
    zoo = Zoo.from_modules(mods + relatives, tmp_path / "r", probes=probes)
    twins = tw.near_twins(zoo)
    assert len(twins) == 3 and {m for a, b, _ in twins for m in (a, b)} == {"m8", "m9", "m10"}


class _Trunk(torch.nn.Module):
    """A conv trunk (most of the weights) and a head of three small linear layers."""

    def __init__(self):
        super().__init__()
        self.c1, self.c2 = torch.nn.Conv2d(3, 32, 3), torch.nn.Conv2d(32, 32, 3)
        self.head = torch.nn.Sequential(torch.nn.Linear(32, 32), torch.nn.Linear(32, 32), torch.nn.Linear(32, 4))

    def forward(self, x):
        return self.head(torch.relu(self.c2(torch.relu(self.c1(x.reshape(-1, 3, 8, 8))))).mean((2, 3)))


def _tuned(base_seed: int, k: int) -> torch.nn.Module:
    """A fine-tune of base ``base_seed``: its trunk moved a little, a fresh head of three layers."""
    torch.manual_seed(base_seed)
    m = _Trunk()
    _nudge((m.c1.weight, m.c2.weight), 1000 + k)
    torch.manual_seed(5000 + k)
    with torch.no_grad():
        for layer in m.head:
            layer.reset_parameters()
    return m


def test_a_base_most_models_share_stays_a_family_and_tables_at_an_offset_are_no_start(tmp_path):
    """A review of audit 83's fix: set aside by the median tensor, a trunk that 20 fine-tunes of one base share (their
    heads more tensors than it) read all 20 alone; a dense pattern is a base and stays. Identity starts are set aside
    with as few as 3 models, and a fixed table each model holds at its own offset is no family."""

    probes = {"in_dist": torch.randn(8, 192)}
    outsiders = []
    for s in range(4):
        torch.manual_seed(50 + s)
        outsiders.append(_Trunk())
    zoo = Zoo.from_modules([_tuned(0, k) for k in range(20)] + outsiders, tmp_path / "t", probes=probes)
    sizes = sorted(Counter(tw.twin_families(zoo).tolist()).values())
    assert sizes == [1, 1, 1, 1, 20]
    irnn = []
    for s in range(3):
        torch.manual_seed(s)
        irnn.append(_Irnn())
    assert tw.near_twins(Zoo.from_modules(irnn, tmp_path / "i", probes={"in_dist": torch.randn(8, 8)})) == []
    table = torch.randn(16, 16)
    offset = _skips(6, lambda s: table.repeat(1, 2) + float(s))  # the same table, each at its own offset
    assert tw.near_twins(Zoo.from_modules(offset, tmp_path / "o", probes={"in_dist": torch.randn(8, 32)})) == []


def test_outsiders_beside_one_family_of_most_models_stay_alone(tmp_path):
    """An outside audit (85): beside one family of 36, four unrelated models correlated 0.31-0.46 in every tensor once
    each was centred across the models (each took on the negative of the family's base), and three were joined, so a
    null read a lead (here: 60 and 3, all three joined). The models' mean direction is projected out instead."""

    family = []
    for k in range(60):
        torch.manual_seed(0)
        m = _Trunk()
        _nudge(m.parameters(), k)
        family.append(m)
    outsiders = []
    for s in range(3):
        torch.manual_seed(200 + s)
        outsiders.append(_Trunk())
    zoo = Zoo.from_modules(family + outsiders, tmp_path / "z", probes={"in_dist": torch.randn(8, 192)})
    assert sorted(Counter(tw.twin_families(zoo).tolist()).values()) == [1, 1, 1, 60]


def test_a_part_every_model_holds_the_same_is_said_beside_the_families(tmp_path):
    """An outside audit (85): 16 LoRA fine-tunes of one frozen base (85% of the entries the same in all) read "no
    two of the 16 have near-twin weights", said of the adapters alone; the frozen part is now said and counted."""
    from fingerprint import tables

    torch.manual_seed(0)
    base = torch.nn.Linear(16, 64)

    def adapted(seed: int) -> torch.nn.Module:
        torch.manual_seed(seed)  # a frozen base (one weight tensor, 1,024 entries), then each model's own layers
        m = torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.ReLU(), torch.nn.Linear(16, 64), torch.nn.ReLU(),
                                torch.nn.Linear(64, 4))
        m[2].load_state_dict(base.state_dict())
        return m

    zoo = Zoo.from_modules([adapted(s) for s in range(8)], tmp_path / "z", probes={"in_dist": torch.randn(8, 16)})
    assert tw.frozen_tensors(zoo) == (1, 1024 / (256 + 1024 + 256))
    line = tables.recovered_line(tables.TWIN_FAMILY, zoo)
    assert line.startswith("lineage: every model its own family: no two of the 8 have near-twin weights")
    assert ("; one weight tensor (67% of the weight tensors' entries) is the same in every model and left out (a part no "
            "model trained: a frozen base under adapters, a fixed table), so these families are those of the parts "
            "trained") in line
    plain = Zoo.from_modules([_mlp(s) for s in range(4)], tmp_path / "p", probes={"in_dist": torch.randn(8, 6)})
    assert tw.frozen_tensors(plain) == (0, 0.0) and "the same in every model" not in tables.recovered_line(
        tables.TWIN_FAMILY, plain)
