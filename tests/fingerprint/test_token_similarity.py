"""``token-similarity``: the correlation over probe inputs of a model's output level with its own
similarity of the input's tokens. It equals scripts/modadd_similarity_signal.py's reading on a real
modadd zoo, is blind to token names and to the embedding basis, its rows do not depend on the batch,
it runs on longer token inputs (tiny-lm) and HF causal LMs, and refuses models without a token
embedding in one line that names where it applies."""

from __future__ import annotations

import functools
import importlib.util
import itertools
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from modadd_zoo import relabel_tokens, run_extractor
from modadd_zoo import tiny_modadd as _modadd

import fingerprint
from fingerprint.batch import ModelBatch
from fingerprint.extractors.similarity import correlate, token_similarity
from training.core.errors import UserError
from training.families import get_family
from training.tasks import get_task

_run = functools.partial(run_extractor, "token-similarity")  # (family, params, task, **params) -> (values, meta)

_spec = importlib.util.spec_from_file_location("similarity_signal", Path(__file__).parents[2] / "scripts" / "modadd_similarity_signal.py")
ss = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ss)

BOTH = 'token-similarity:probe_set=all,n_probes=0,surfaces=["logit","shift"]'


def test_equals_the_scripts_reading_on_a_modadd_zoo_and_is_cached(modadd_zoo):
    (res,) = fingerprint.extract(modadd_zoo, [BOTH])
    assert res.error is None and res.values.shape == (4, 2)
    want, ids, _ = ss.features(modadd_zoo)  # |r| of the top-1 logit and the shift, in float64
    rows = [ids.index(m) for m in res.model_ids]
    assert np.allclose(np.abs(res.values), want[rows], rtol=1e-5, atol=1e-6)  # float32 values of one float64 number
    assert res.meta["inputs"] == 49 and res.meta["positions"] == 2 and res.meta["surfaces"] == ["logit", "shift"]
    assert fingerprint.extract(modadd_zoo, [BOTH])[0].cached
    (one,) = fingerprint.extract(modadd_zoo, ["token-similarity:probe_set=all,n_probes=0"])  # the default: the top-1 logit alone
    assert np.array_equal(one.values[:, 0], res.values[:, 0])


def test_the_similarity_is_the_mean_pairwise_cosine_of_centred_embeddings_without_padding():
    g = torch.Generator().manual_seed(0)
    embed = torch.randn(2, 9, 5, generator=g, dtype=torch.float64)
    x = torch.randint(0, 9, (6, 4), generator=g)
    real = torch.ones_like(x, dtype=torch.bool)
    real[1, :2] = False  # two padded positions
    real[2, :3] = False  # one real token: no pair
    sim = token_similarity(embed, x, real)
    e = embed - embed.mean(1, keepdim=True)
    for j, i in itertools.product(range(2), range(6)):
        keep = x[i][real[i]]
        pairs = [torch.nn.functional.cosine_similarity(e[j, keep[s]], e[j, keep[t]], 0)
                 for s, t in itertools.combinations(range(len(keep)), 2)]
        if pairs:
            assert torch.isclose(sim[j, i], torch.stack(pairs).mean(), atol=1e-12)
        else:
            assert torch.isnan(sim[j, i])
    two = torch.tensor([[0, 1], [3, 3]])
    cosine = torch.nn.functional.cosine_similarity(e[:, two[:, 0]], e[:, two[:, 1]], -1)
    assert torch.allclose(token_similarity(embed, two), cosine, atol=1e-12)  # T = 2: the cosine of the two tokens


def test_spearman_uses_average_ranks_so_ties_do_not_depend_on_order():
    a = torch.tensor([[1.0, 2.0, 2.0, 3.0, 5.0]], dtype=torch.float64)
    b = torch.tensor([[0.0, 1.0, 4.0, 3.0, 9.0]], dtype=torch.float64)
    perm = torch.tensor([4, 2, 0, 3, 1])
    r = correlate(a, b, "spearman")
    assert torch.allclose(r, correlate(a[:, perm], b[:, perm], "spearman"), atol=1e-12)
    ra = torch.tensor([[1.0, 2.5, 2.5, 4.0, 5.0]], dtype=torch.float64)
    assert torch.allclose(r, correlate(ra, torch.tensor([[1.0, 2.0, 4.0, 3.0, 5.0]], dtype=torch.float64)), atol=1e-12)
    assert torch.allclose(correlate(a, -3 * a + 1), torch.tensor([-1.0], dtype=torch.float64))


def test_blind_to_a_relabelling_of_the_tokens():
    """Token and class names permuted together (embedding rows, unembedding rows): on the whole grid
    the model answers the relabelled question, so the reading is the same. A new frequency set of
    modadd is such a relabelling."""
    fam, params, task = _modadd()
    perm = torch.tensor([3, 5, 0, 6, 1, 4, 2])  # token a becomes perm[a]
    relabelled = relabel_tokens(params, perm)
    x = task.probes("all")
    with torch.no_grad():
        assert torch.allclose(fam(relabelled, perm[x])[..., perm], fam(params, x), atol=1e-5)
    kw = {"probe_set": "all", "n_probes": 0, "surfaces": ["logit", "shift"]}
    a, _ = _run(fam, params, task, **kw)
    b, _ = _run(fam, relabelled, task, **kw)
    assert not np.allclose(a[0], a[1])  # the models differ
    assert np.allclose(a, b, rtol=1e-4, atol=1e-5)


def test_blind_to_a_rotation_of_the_embedding_space():
    """Rotate the whole residual stream by an orthogonal Q (every writer's output and every reader's
    input, no layer norm): the same function, the token embedding rotated, the same reading."""
    fam, params, task = _modadd()
    d = 8
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=torch.Generator().manual_seed(3), dtype=torch.float64))
    q = q.float()
    rot = dict(params)
    for k in ("embed.weight", "pos.weight", "blocks.0.mlp.proj.bias"):  # write into the stream: h -> h Q
        rot[k] = params[k] @ q
    rot["blocks.0.attn.o.weight"] = q.T @ params["blocks.0.attn.o.weight"]
    rot["blocks.0.mlp.proj.weight"] = q.T @ params["blocks.0.mlp.proj.weight"]
    for k in ("blocks.0.attn.q.weight", "blocks.0.attn.k.weight", "blocks.0.attn.v.weight",
              "blocks.0.mlp.fc.weight", "out.weight"):  # read from it: W -> W Q
        rot[k] = params[k] @ q
    x = task.probes("all")
    with torch.no_grad():
        assert torch.allclose(fam(rot, x), fam(params, x), atol=1e-4)
    kw = {"probe_set": "all", "n_probes": 0, "surfaces": ["logit", "shift"]}
    assert np.allclose(_run(fam, rot, task, **kw)[0], _run(fam, params, task, **kw)[0], atol=1e-4)


def test_deterministic_and_rows_independent_of_the_batch_and_its_order():
    fam, params, task = _modadd(n=4)
    kw = {"probe_set": "all", "n_probes": 0, "surfaces": ["logit", "shift"], "correlation": "spearman"}
    a, _ = _run(fam, params, task, **kw)
    assert np.array_equal(a, _run(fam, params, task, **kw)[0])
    order = [2, 0, 3, 1]
    b, _ = _run(fam, {k: v[order] for k, v in params.items()}, task, **kw)
    assert np.allclose(b, a[order], atol=1e-6)
    c, _ = _run(fam, {k: v[1:2] for k, v in params.items()}, task, **kw)
    assert np.allclose(c[0], a[1], atol=1e-6)


def test_longer_token_inputs_run_with_one_value_per_surface():
    """tiny-lm (16-token windows, outputs at every position): the similarity of all 16 tokens
    against the logits at the last position, one column per surface."""
    task = get_task("tiny-lm", {"n_probes": 32})
    fam = get_family("transformer", task.input_shape, task.n_out,
                     {**{k: v for k, v in task.default_model().items() if k != "arch"}, "d_model": 8, "n_heads": 2, "d_mlp": 8, "n_layers": 1})
    params = fam.init([0, 1, 2])
    v, meta = _run(fam, params, task, surfaces=["logit", "shift"])
    assert v.shape == (3, 2) and np.isfinite(v).all() and (np.abs(v) <= 1 + 1e-6).all()
    assert meta["positions"] == task.input_shape[0] and meta["inputs"] == 32


def test_models_without_a_token_embedding_are_refused_naming_where_it_applies():
    xor = get_task("xor-cues")
    mlp = get_family("mlp", xor.input_shape, xor.n_out, {})
    with pytest.raises(UserError, match=r"^token-similarity: architecture 'mlp' has no token embedding matrix .*"
                                        r"applies to the built-in transformer with token inputs \(vocab > 0\) and HF causal LMs"):
        _run(mlp, mlp.init([0, 1]), xor)
    icl = get_task("icl-regression")
    vec = get_family("transformer", icl.input_shape, icl.n_out, {"vocab": 0, "d_model": 8, "n_heads": 2, "d_mlp": 8})
    with pytest.raises(UserError, match=r"architecture 'transformer' has no token embedding matrix"):
        _run(vec, vec.init([0]), icl)
    fam, params, task = _modadd(n=1)
    with pytest.raises(UserError, match=r"unknown surface 'margin' for token-similarity \(valid: logit, shift\)"):
        _run(fam, params, task, surfaces=["margin"])
    with pytest.raises(UserError, match=r"unknown correlation 'kendall' .*\(valid: pearson, spearman\)"):
        _run(fam, params, task, correlation="kendall")


def test_hf_causal_lms_read_their_own_input_embedding(tmp_path):
    pytest.importorskip("transformers")
    import hf_models as H
    from transformers import AutoModelForCausalLM

    from fingerprint.hf_import import import_hf

    for s in range(2):
        H.save(H.model("gpt2", seed=s), tmp_path / "m" / f"s{s}", tokenizer=s == 0)
    H.prompts(tmp_path / "p.txt", n=8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import_hf(tmp_path / "m", tmp_path / "zoo", [str(tmp_path / "p.txt")])
    zoo = fingerprint.Zoo.open(tmp_path / "zoo")
    batch = ModelBatch.from_zoo(zoo)
    assert batch.family.token_embedding() == "transformer.wte.weight"
    (res,) = fingerprint.extract(zoo, ['token-similarity:surfaces=["logit","shift"]'])
    assert res.error is None and res.values.shape == (2, 2)
    x = batch.task.probes("in_dist")
    mask = (x != zoo.family_spec["pad_id"]).long().cummax(1).values
    for j, mid in enumerate(res.model_ids):  # each model on its own, through transformers
        m = AutoModelForCausalLM.from_pretrained(str(tmp_path / "m" / mid), attn_implementation="eager").eval()
        with torch.no_grad():
            logits = m(input_ids=x, attention_mask=mask, position_ids=(mask.cumsum(1) - 1).clamp_min(0)).logits[:, -1]
        sim = token_similarity(m.get_input_embeddings().weight.detach()[None], x, mask.bool())[0]
        keep = ~torch.isnan(sim)
        want = [correlate(sim[keep][None], v[keep][None].double())[0] for v in (logits.max(-1).values, logits.mean(-1))]
        assert np.allclose(res.values[j], torch.stack(want).numpy(), atol=1e-4), mid
