"""Far tails (analysis.rare): a rare camp a few SDs out, found by kurtosis, and named when fingerprints agree."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from analysis import rare

N_FAM, M = 80, 4  # 320 models in families of 4, as outside audit 111's CNN populations


def _population(seed: int, planted: np.ndarray | None, shift: float, dims: int = 20, df: float | None = None) -> np.ndarray:
    """``[320, dims]`` seed noise (a family effect and member noise, Gaussian or Student t with ``df``) and, for the
    ``planted`` rows, a shift of ``shift`` within-family SDs along one random direction."""
    rng = np.random.default_rng(seed)

    def noise(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape) if df is None else rng.standard_t(df, shape) / np.sqrt(df / (df - 2))

    x = np.repeat(noise(N_FAM, dims), M, axis=0) + noise(N_FAM * M, dims)
    if planted is not None:
        u = rng.standard_normal(dims)
        x[planted] += shift * np.sqrt(2) * u / np.linalg.norm(u)  # total SD sqrt(2): shift x that
    return x


PLANTED = np.array([3, 37, 61, 90, 118, 150, 181, 213, 240, 277, 302])  # 11 of 320 models, 11 families


def test_a_rare_camp_a_few_sds_out_is_the_far_tail():
    """11 of 320 models 9 SDs out along one direction in 20 (SDs of a model's whole seed noise: outside audit 111's
    missed CNN backdoors were 4-6 SDs of a cluster's spread, and 11/11 in their far tails): the most kurtotic
    direction's far tail is exactly them, at every seed; seed noise alone leaves a model or two. (At 6 SDs the camp's
    own spread leaves 5-11 of the 11 beyond FAR_Z.)"""
    for seed in range(3):
        tail = rare.far_tail(_population(seed, PLANTED, 9.0), random_state=seed)
        assert set(tail["rows"]) == set(PLANTED.tolist()), (seed, tail)
        assert tail["kurtosis"] > 10 and min(tail["z"]) >= rare.FAR_Z
        null = rare.far_tail(_population(seed, None, 0.0))
        assert len(null["rows"]) <= 2 and null["kurtosis"] < 5, null
    assert rare.far_tail(_population(0, PLANTED, 9.0)[:99]) is None  # below FAR_TAIL_MIN_MODELS: no tail
    assert rare.far_tail(np.zeros((320, 5))) is None  # no spread


def test_a_lead_needs_two_fingerprints_and_four_models():
    """Heavy-tailed seed noise puts models in one fingerprint's far tail on its own (Student t, 3 degrees of freedom:
    several per fingerprint); only the models two or more fingerprints' tails hold are a lead, only four or more of
    them, and not mostly one init family's."""
    tails = {f"fp{k}": [str(i) for i in rare.far_tail(_population(10 + k, None, 0.0, df=3.0))["rows"]] for k in range(4)}
    assert sum(len(t) for t in tails.values()) >= 4  # heavy tails: far models, each fingerprint its own
    assert rare.far_tail_leads(tails) == []
    camp = ["a", "b", "c", "d"]
    assert rare.far_tail_leads({"x": camp + ["e"], "y": camp, "z": ["q"]}) == [{"models": camp, "fingerprints": ["x", "y"]}]
    assert rare.far_tail_leads({"x": camp[:3], "y": camp[:3]}) == []  # three models: not yet a lead
    # each model in two tails, but no two fingerprints holding half of them: a union of pairs, not one set
    assert rare.far_tail_leads({"x": ["a", "b", "c", "d", "e", "f"], "y": ["a", "b"], "z": ["c", "d"], "w": ["e", "f"]}) == []
    # one init family far out (audit 112's nulls: a whole family of 4 in three output fingerprints), or mostly one: the
    # init seed's quirk; two families of two are a lead
    assert rare.far_tail_leads({"x": camp, "y": camp}, family={m: "f0" for m in camp}) == []
    assert rare.far_tail_leads({"x": camp, "y": camp}, family={"a": "f0", "b": "f0", "c": "f0", "d": "f1"}) == []
    assert rare.far_tail_leads({"x": camp, "y": camp}, family={"a": "f0", "b": "f0", "c": "f1", "d": "f1"})[0]["models"] == camp


def test_fingerprints_agreeing_on_a_rare_camp_are_a_lead_in_the_summary_and_the_report():
    """Through the analysis: two fingerprints with the 11 planted models 9 SDs out (each its own seed noise) and one
    without; the split tests miss the camp (it is smaller than their floor can split off with power), the far tails
    name it in summary.json ``far_tails`` and one sentence of the report's verdict box, not beside a candidate; a null
    population has none."""
    from analysis.answer import label_free_answer
    from analysis.report import headline, render
    from analysis.scorecard import AnalysisOptions, FingerprintInput, analyze, summary

    ids = [f"m{i:03d}" for i in range(N_FAM * M)]
    family = np.repeat([f"f{i}" for i in range(N_FAM)], M)
    opts = AnalysisOptions(n_perm=99, n_family_boot=20, n_boot=0, label="", embedding="pca")

    def run(xs: dict[str, np.ndarray]):
        fps = [FingerprintInput(name, x, ids, {"extractor": name, "output": "features"}) for name, x in xs.items()]
        return analyze(fps, {"model_id": np.asarray(ids), "init_seed": family}, opts)

    res = run({"a": _population(1, PLANTED, 9.0), "b": _population(2, PLANTED, 9.0), "c": _population(3, None, 0.0)})
    assert not label_free_answer(res).candidates  # the split tests: p 0.14-0.19
    leads = summary(res)["far_tails"]
    assert leads == [{"models": sorted(ids[i] for i in PLANTED), "fingerprints": ["a", "b"], "n_models": 320,
                      "n_families": 11}], leads
    (line,) = headline(res).tails
    assert "<b>Far out together</b>: a, b: 11 of 320 models (m003" in render(res)
    # beside a candidate the answer has said the deep difference: no far-tail lead (audit 112: 8-17 models of mixed kinds)
    assert rare.tail_leads(res, SimpleNamespace(candidates=[object()])) == []
    assert rare.tail_leads(res, SimpleNamespace(candidates=[])) == leads
    assert line.startswith("a, b: 11 of 320 models (m003, m037, m061, m090, m118, m150, ...) of 11 init families sit "
                           "together far out along one direction"), line
    null = run({"a": _population(4, None, 0.0, df=3.0), "b": _population(5, None, 0.0, df=3.0),
                "c": _population(6, None, 0.0, df=3.0)})
    assert summary(null)["far_tails"] == []
    assert all((r.scores or {}).get("far_tail") is not None for r in null.fingerprints)
