"""Shared-initialization tests on cheap arrays: calibration under the null, power, invariances, the forest."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.errors import AnalysisError
from analysis.lineage import (
    PairTests,
    all_pairs,
    behaviour_test,
    between_families,
    canonical_scale,
    families,
    families_of,
    match_units,
    weight_test,
)
from analysis.lineage_tree import (
    lineage_forest,
    orientation,
    shared_init_rates,
    sibling_or_child,
    tree_accuracy,
)

GROUPS = {"l0": [("l0.weight", 0), ("l0.bias", 0), ("l1.weight", 1)],
          "l1": [("l1.weight", 0), ("l1.bias", 0), ("out.weight", 1)]}


def _mlps(n: int, rng: np.random.Generator, h: int = 8, d: int = 5, prototypes: int = 3) -> dict[str, np.ndarray]:
    """``n`` independent 2-hidden-layer MLPs whose units are drawn i.i.d. around a few shared
    prototypes: functionally alike (as trained models are), yet independently initialized."""
    proto0 = rng.normal(size=(prototypes, d + 1))
    u0 = proto0[rng.integers(0, prototypes, (n, h))] + 0.3 * rng.normal(size=(n, h, d + 1))
    return {"l0.weight": u0[..., :d], "l0.bias": u0[..., d], "l1.weight": rng.normal(size=(n, h, h)),
            "l1.bias": rng.normal(size=(n, h)), "out.weight": rng.normal(size=(n, 2, h)), "out.bias": rng.normal(size=(n, 2))}


def _relabel(params: dict[str, np.ndarray], rng: np.random.Generator, rescale: bool = True) -> dict[str, np.ndarray]:
    """Every model's hidden units permuted, and (ReLU's symmetry) rescaled by positive factors."""
    out = {k: v.copy() for k, v in params.items()}
    n = len(out["l0.weight"])
    for g, members in GROUPS.items():
        h = out[members[0][0]].shape[1]
        for m in range(n):
            perm = rng.permutation(h)
            c = rng.uniform(0.2, 5.0, h) if rescale else np.ones(h)
            for p, ax in members:
                w = np.take(out[p][m], perm, axis=ax)
                shape = [1] * w.ndim
                shape[ax] = h
                out[p][m] = w * (c.reshape(shape) if ax == 0 else 1.0 / c.reshape(shape))
    return out


def test_exact_test_is_calibrated_on_independent_inits():
    rng = np.random.default_rng(0)
    params = _mlps(80, rng)
    exact, _ = weight_test(params, GROUPS, all_pairs(80), n_perm=999)
    rate = float(np.mean(exact.p_value <= 0.05))
    assert rate <= 0.065, rate  # 3,160 null pairs: ~0.05 expected, and never above by more than noise
    assert not exact.related.any() or exact.related.mean() < 0.005  # BH finds (almost) nothing


def test_exact_test_detects_shared_init_and_ignores_relu_rescaling():
    rng = np.random.default_rng(1)
    base = _mlps(20, rng)
    # each model's sibling: the same init, trained apart (a perturbation as large as a fifth of the weights)
    both = {k: np.concatenate([v, v + 0.2 * np.abs(v).mean() * rng.normal(size=v.shape)]) for k, v in base.items()}
    pairs = all_pairs(40)
    exact, matched = weight_test(both, GROUPS, pairs, n_perm=9999)
    same = pairs[1] - pairs[0] == 20
    assert (exact.p_value[same] < 1e-4).all() and exact.related[same].all()
    assert shared_init_rates(exact, np.arange(40) % 20)["shared_init_power"] == 1.0
    assert matched.related[same].all()
    # rescaling every model's units (no permutation) changes neither p-value
    scaled = _relabel(both, np.random.default_rng(2), rescale=True)
    rescaled = {k: v.copy() for k, v in both.items()}
    c = np.random.default_rng(3).uniform(0.2, 5.0, (40, 8))
    rescaled["l0.weight"] *= c[:, :, None]
    rescaled["l0.bias"] *= c
    rescaled["l1.weight"] /= c[:, None, :]
    exact2, _ = weight_test(rescaled, GROUPS, pairs, n_perm=9999)
    assert np.allclose(exact2.p_value, exact.p_value)
    # permuting and rescaling every model: the matched test is unchanged, and still finds every sibling
    _, matched2 = weight_test(scaled, GROUPS, pairs, n_perm=99)
    assert np.allclose(matched2.p_value, matched.p_value, atol=1e-9)
    assert matched2.related[same].all()


def test_matching_recovers_a_permutation_layer_by_layer():
    rng = np.random.default_rng(4)
    one = _mlps(1, rng)
    moved = _relabel(one, rng, rescale=True)
    both = canonical_scale({k: np.concatenate([one[k], moved[k]]) for k in one}, GROUPS)
    perms, sim = match_units(both, GROUPS, np.array([0]), np.array([1]))
    assert np.allclose(sim, 1.0)
    aligned_l0 = both["l0.weight"][1][perms["l0"][0]]
    cos = (aligned_l0 * one["l0.weight"][0]).sum(1) / np.linalg.norm(aligned_l0, axis=1) / np.linalg.norm(one["l0.weight"][0], axis=1)
    assert np.allclose(cos, 1.0)


def test_all_pairs_samples_distinct_ordered_pairs():
    a, b = all_pairs(50, max_pairs=300, seed=1)
    assert len(a) == 300 and (a < b).all() and b.max() < 50
    assert len(set(zip(a.tolist(), b.tolist()))) == 300
    full = all_pairs(50)
    assert len(full[0]) == 50 * 49 // 2
    with pytest.raises(AnalysisError, match="at least 2 models"):
        all_pairs(1)


def test_behaviour_test_finds_near_duplicates_and_families():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(60, 20))
    x[30:] = x[:30] + 0.05 * rng.normal(size=(30, 20))  # model i+30 is a close relative of model i
    t = behaviour_test(x, all_pairs(60))
    same = t.b - t.a == 30
    assert t.related[same].mean() >= 0.95 and t.related[~same].mean() < 0.01
    fam = families(60, t)
    assert (fam[:30] == fam[30:]).mean() >= 0.95
    with pytest.raises(AnalysisError, match="non-finite"):
        behaviour_test(np.full((12, 3), np.nan), all_pairs(12))


def test_forest_places_and_orients_parent_child_edges():
    rng = np.random.default_rng(6)
    roots = rng.normal(size=(10, 30))
    kids = roots + 0.1 * rng.normal(size=(10, 30))
    x = np.concatenate([roots, kids])
    t = behaviour_test(x, all_pairs(20))
    true_parent = np.r_[np.full(10, -1), np.arange(10)]
    order = np.r_[np.zeros(10), np.ones(10)]  # training raised the statistic: children are higher
    parent = lineage_forest(20, t, order)
    assert tree_accuracy(parent, true_parent) == (1.0, 1.0)
    flipped = lineage_forest(20, t, -order)
    assert tree_accuracy(flipped, true_parent)[1] == 0.0
    o = orientation({"kurtosis": np.zeros(5), "norm": np.zeros(5)}, {"kurtosis": np.r_[1, -1, 1, -1, 1.0], "norm": -np.ones(5)})
    assert (o.statistic, o.sign, o.consistency) == ("norm", -1, 1.0)
    with pytest.raises(AnalysisError, match="valid: auto, kurtosis, norm"):
        orientation({}, {}, "skew")


def test_siblings_the_tree_chains_are_marked_and_a_true_chain_is_not():
    """Fine-tunes of one base on one task share a step (nearer each other than to their base), so the
    least-cost tree chains them (base -> c1 -> c2 -> c3: parent accuracy 1/3 in an outside audit).
    Final weights cannot tell such a sibling from a child, so the forest keeps its edges and
    sibling_or_child marks exactly the chained siblings, not a child that continued from its parent."""
    rng = np.random.default_rng(3)
    d, rows, true_parent, order = 4000, [], [], []
    for f in range(6):  # a base and three fine-tunes on one task: the shared step, then their own
        base, step = rng.normal(size=d), 0.4 * rng.normal(size=d)
        first = len(rows)
        rows += [base] + [base + step + 0.05 * rng.normal(size=d) for _ in range(3)]
        true_parent += [-1, first, first, first]
        order += [0.0, 1.0, 1.1, 1.2]  # the orientation ranks siblings too: it cannot tell them apart
    for f in range(4):  # a base -> child -> grandchild chain: each fine-tune continued the last
        base = rng.normal(size=d)
        child = base + 0.4 * rng.normal(size=d)
        first = len(rows)
        rows += [base, child, child + 0.1 * rng.normal(size=d)]
        true_parent += [-1, first, first + 1]
        order += [0.0, 1.0, 2.0]
    x, true_parent = np.array(rows), np.array(true_parent)
    n, family = len(x), np.repeat(np.arange(10), [4] * 6 + [3] * 4)
    a, b = all_pairs(n)
    related, dist = family[a] == family[b], np.linalg.norm(x[a] - x[b], axis=1)
    p = np.where(related, 1e-6, 0.5)
    parent = lineage_forest(n, PairTests(a, b, p, p, related, dist, "exact", 0.05), np.array(order))
    assert tree_accuracy(parent, true_parent)[0] == pytest.approx(14 / 26)  # 12 of 18 siblings chained
    assert (sibling_or_child(parent, a, b, dist) == (parent != true_parent)).all()
    assert not sibling_or_child(true_parent, a, b, dist).any()
    # a pair without a distance, or a copy (no gap of its own), is not marked
    assert not sibling_or_child(parent, a[:0], b[:0], dist[:0]).any()
    same = np.array([0, 1, 2]), np.array([1, 2, 0])
    assert not sibling_or_child(np.array([-1, 0, 1]), *same, np.array([1.0, 0.0, 1.0])).any()


def test_edmonds_matches_networkx_and_covers_the_graph_networkx_fails_on():
    """The forest's fallback (Chu-Liu/Edmonds over every root) gives networkx's optimum on random
    graphs, and a spanning arborescence on a 185-model family graph from a 1,000-model population
    (scripts/bench_lineage.py) for which networkx 3.6 raises "No minimum spanning arborescence"."""
    from pathlib import Path

    import networkx as nx

    from analysis.lineage_tree import _edmonds

    rng = np.random.default_rng(0)
    for t in range(30):
        und = nx.connected_watts_strogatz_graph(int(rng.integers(4, 25)), 4, 0.3, seed=t)
        edges = [e for u, v in und.edges() for e in ((u, v, float(rng.uniform(1, 9))), (v, u, float(rng.uniform(1, 9))))]
        cost = {(u, v): w for u, v, w in edges}
        g = nx.DiGraph()
        g.add_weighted_edges_from(edges)
        ours = _edmonds(edges)
        assert len(ours) == len(g) - 1 and nx.is_arborescence(nx.DiGraph(ours))
        assert abs(sum(cost[e] for e in ours) - sum(cost[e] for e in nx.minimum_spanning_arborescence(g).edges())) < 1e-9
    g = nx.read_weighted_edgelist(Path(__file__).parent / "data" / "networkx_no_arborescence.txt",
                                  create_using=nx.DiGraph, nodetype=int)
    tree = nx.DiGraph(_edmonds(list(g.edges(data="weight"))))
    assert tree.number_of_nodes() == len(g) == 185 and nx.is_arborescence(tree)


def _related(n: int, edges: list[tuple[int, int]]) -> PairTests:
    """Every pair of ``n`` models tested, ``edges`` the significant ones."""
    a, b = all_pairs(n)
    sig = {(min(u, v), max(u, v)) for u, v in edges}
    r = np.asarray([(int(x), int(y)) in sig for x, y in zip(a, b)])
    p = np.where(r, 1e-6, 0.5)
    return PairTests(a, b, p, p, r, np.ones(len(a)), "exact", 0.05)


def _clique(members) -> list[tuple[int, int]]:
    return [(u, v) for i, u in enumerate(members) for v in members[i + 1:]]


def test_one_false_pair_between_two_families_leaves_them_two():
    """Connected components merged them (audit 45: 21 false pairs of 27,840 chained 30 families
    into 14); a false pair between families of 8 and 5 shares 2 of 13 relatives."""
    edges = _clique(list(range(8))) + _clique(list(range(8, 13))) + [(3, 10)]
    t = _related(15, edges)
    fam = families(15, t)
    assert len(set(fam[:8])) == 1 and len(set(fam[8:13])) == 1 and fam[0] != fam[8]
    assert len(set(fam.tolist())) == 4  # and the two models without relatives alone
    assert between_families(fam, t) == 1
    # a chain of families joined by one false pair each stays apart too
    chain = [e for k in range(5) for e in _clique(list(range(4 * k, 4 * k + 4)))] + [(4 * k + 3, 4 * k + 4) for k in range(4)]
    fam = families(20, _related(20, chain))
    assert len(set(fam.tolist())) == 5 and all(len(set(fam[4 * k:4 * k + 4])) == 1 for k in range(5))


def test_true_families_stay_whole_pairs_chains_and_weak_cliques():
    # a pair is a family; a parent -> child -> grandchild chain whose grandparent pair was missed is one;
    # a family of 8 with a quarter of its pairs missed (deterministically) is one
    weak = [e for i, e in enumerate(_clique(list(range(5, 13)))) if i % 4]
    t = _related(13, [(0, 1), (2, 3), (3, 4)] + weak)
    fam = families(13, t)
    assert fam[0] == fam[1] and fam[2] == fam[3] == fam[4] and len(set(fam[5:13])) == 1
    assert len({fam[0], fam[2], fam[5]}) == 3 and between_families(fam, t) == 0
    assert (families_of(4, np.array([], dtype=int), np.array([], dtype=int)) == np.arange(4)).all()


def test_relabelling_models_permutes_the_families():
    rng = np.random.default_rng(11)
    edges = _clique(list(range(6))) + _clique(list(range(6, 9))) + [(6, 9)] + _clique(list(range(10, 16))) + [(2, 12), (0, 7)]
    n = 18
    fam = families(n, _related(n, edges))
    for _ in range(5):
        perm = rng.permutation(n)  # model i is called perm[i]
        fam2 = families(n, _related(n, [(perm[u], perm[v]) for u, v in edges]))
        same = fam[:, None] == fam[None, :]
        assert (same == (fam2[perm][:, None] == fam2[perm][None, :])).all()
    # and the forest is built inside each family: no edge between the recovered families
    parent = lineage_forest(n, _related(n, edges), np.arange(n, dtype=float))
    assert all(fam[p] == fam[c] for c, p in enumerate(parent) if p >= 0)


def test_sampled_pairs_do_not_read_as_unrelated():
    """With --max-pairs, untested pairs are not evidence against relatedness: 5 families of 8 with
    40% of the pairs tested stay 5 (counting untested pairs as unrelated shattered them into 17)."""
    n, truth = 40, np.repeat(np.arange(5), 8)
    a, b = all_pairs(n, 312, seed=0)
    r = truth[a] == truth[b]
    p = np.where(r, 1e-6, 0.5)
    fam = families(n, PairTests(a, b, p, p, r, np.ones(len(a)), "exact", 0.05))
    assert len(set(fam.tolist())) == 5 and all(len(set(fam[truth == k].tolist())) == 1 for k in range(5))
    assert len(set(families_of(n, a[r], b[r]).tolist())) > 5  # the same pairs read as if every pair were tested


def test_a_model_with_one_relative_joins_its_family_but_families_do_not_merge():
    """A relative whose other pairs were missed (one significant pair into a family of 6) joins
    that family; a model whose pairs go into two families stays alone; two families stay two."""
    edges = _clique(list(range(6))) + [(6, 2)] + _clique(list(range(7, 11))) + [(11, 0), (11, 8)] + [(5, 9)]
    t = _related(12, edges)
    fam = families(12, t)
    assert len(set(fam[:7])) == 1 and len(set(fam[7:11])) == 1 and fam[0] != fam[7]
    assert fam[11] not in (fam[0], fam[7]) and between_families(fam, t) == 3


def test_the_family_rule_equals_its_definition_and_a_big_family_stays_cheap():
    """Each pair's common relatives come from one sparse product: on random graphs, tested in full or
    sampled, the families are the Jaccard rule's as written with sets; one family of 600 models (179,700
    pairs: the row-by-row product took gigabytes at this size) is one family."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    from analysis.lineage import _attach_lone, families_of

    def by_sets(n, a, b, tested=None):
        rel = [set() for _ in range(n)]
        for u, v in zip(a, b):
            rel[u].add(v), rel[v].add(u)
        pairs_tested = None if tested is None else {frozenset(p) for p in zip(*tested)}
        keep = []
        for u, v in zip(a, b):
            both = rel[u] & rel[v]
            if pairs_tested is None:
                either = (rel[u] | rel[v]) - {u, v}
            else:
                either = {c for c in rel[u] if frozenset((c, v)) in pairs_tested} | \
                         {c for c in rel[v] if frozenset((c, u)) in pairs_tested}
                either -= {u, v}
            keep.append(2 * (len(both) + 2) >= len(either | both) + 2)
        keep = np.asarray(keep, bool)
        kept = coo_matrix((np.ones(int(keep.sum())), (a[keep], b[keep])), shape=(n, n))
        return _attach_lone(connected_components(kept, directed=False)[1], a, b)

    rng = np.random.default_rng(0)
    for _ in range(10):
        n = int(rng.integers(10, 80))
        fam = rng.integers(0, n // 4 + 1, n)
        i, j = np.triu_indices(n, 1)
        rel = (fam[i] == fam[j]) & (rng.random(len(i)) < 0.8) | (rng.random(len(i)) < 0.02)
        assert (families_of(n, i[rel], j[rel]) == by_sets(n, i[rel], j[rel])).all()
        sampled = rng.random(len(i)) < 0.6
        both = rel & sampled
        assert (families_of(n, i[both], j[both], (i[sampled], j[sampled])) ==
                by_sets(n, i[both], j[both], (i[sampled], j[sampled]))).all()
    i, j = np.triu_indices(600, 1)
    assert len(set(families_of(600, i, j).tolist())) == 1


def test_family_scores_count_merges_and_splits_as_defined():
    """n_merged: recovered families holding models of two or more true families; n_split: true
    families of two or more models spread over two or more recovered ones (counted in one pass,
    checked against the definition on random labellings, integer and string)."""
    from analysis.lineage_tree import family_scores

    got = family_scores(np.array([0, 0, 1, 1, 2]), np.array([0, 0, 1, 2, 3]))  # recovered 1 holds true 1 and 2
    assert (got["n_merged"], got["n_split"]) == (1, 0)
    got = family_scores(np.array([0, 1, 2, 2]), np.array([0, 0, 1, 1]))  # true 0 over recovered 0 and 1
    assert (got["n_merged"], got["n_split"]) == (0, 1)
    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(2, 60))
        f = rng.integers(0, int(rng.integers(1, 15)), n)
        t = rng.integers(0, int(rng.integers(1, 15)), n).astype(str)
        merged = sum(len(set(t[f == g].tolist())) > 1 for g in np.unique(f))
        split = sum(len(set(f[t == g].tolist())) > 1 for g in np.unique(t) if (t == g).sum() >= 2)
        got = family_scores(f, t)
        assert (got["n_merged"], got["n_split"]) == (merged, split)


def _graph_pairs(p: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair of ``len(p)`` models, related with probability ``p [n, n]``."""
    a, b = np.triu_indices(len(p), 1)
    return a, b, rng.random(len(a)) < p[a, b]


def test_two_families_joined_by_chance_pairs_are_said_and_a_family_with_missed_pairs_is_not():
    """An outside audit (79): on a null of 4 inits x 6, 8 chance pairs between two inits' relatives (of 36) joined them
    into one recovered family of 12. The cut is along the two; a family whose pairs are missed at random is not cut."""
    from analysis.lineage_merges import two_in_one

    rng = np.random.default_rng(0)
    p = np.full((12, 12), 8 / 36)
    p[:6, :6] = p[6:, 6:] = 1.0
    a, b, rel = _graph_pairs(p, rng)
    (found,) = two_in_one(np.zeros(12, int), a, b, rel, 12)
    assert sorted(map(sorted, found["parts"])) == [list(range(6)), list(range(6, 12))]
    assert found["within"] == 1.0 and found["pairs"] == 36 and found["between"] == int(rel[(a < 6) != (b < 6)].sum())
    assert found["q_value"] <= 0.05
    # a family of 12 whose test has power 0.75: a cut exists, but no more than random graphs of its share give
    flagged = sum(bool(two_in_one(np.zeros(12, int), *_graph_pairs(np.full((12, 12), 0.75), rng), 12)) for _ in range(40))
    assert flagged <= 3
    # two families side by side (the rule kept them apart) are each whole; a sample of the pairs is not judged
    fam = np.repeat([0, 1], 6)
    assert two_in_one(fam, a, b, rel, 12) == []
    assert two_in_one(np.zeros(12, int), a[:-1], b[:-1], rel[:-1], 12) == []
