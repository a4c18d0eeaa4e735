"""The trainer's Penalty: an extra per-model term on outputs on fixed inputs, weighted per model."""

from __future__ import annotations

import pytest
import torch

from training.config import TrainConfig
from training.families import get_family
from training.tasks import get_task
from training.trainer import Penalty, train_population


@pytest.mark.parametrize("activation", ["tanh", "relu"])  # the hand-written backward and the fused kernels' path
def test_the_penalty_moves_only_the_models_it_weighs_and_only_them(activation):
    task = get_task("xor-cues", {"n_train": 128})
    fam = get_family("mlp", task.input_shape, task.n_out, {"width": 16, "depth": 1, "activation": activation})
    probes = task.probes("ood")[:32]
    seeds = [0, 1, 2, 0, 1, 2]  # the same three models twice: unweighted, then weighted
    weight = torch.tensor([0.0, 0.0, 0.0, 0.3, 0.3, 0.3])
    # the penalty: cross-entropy towards class 1 on the probes, bounded below (as goodhart's -log p(B))
    pen = Penalty(probes, lambda out: -torch.log_softmax(out, -1)[..., 1].mean(1), weight)
    cfg = TrainConfig(steps=40, batch_size=32, lr=0.05, checkpoints=[])
    res = train_population(fam, task, cfg, fam.init(seeds), seeds, torch.zeros(6, dtype=torch.long), penalty=pen)
    p = res.checkpoints[40]
    plain = train_population(fam, task, cfg, fam.init(seeds[:3]), seeds[:3], torch.zeros(3, dtype=torch.long)).checkpoints[40]
    with torch.no_grad():
        p1 = torch.softmax(fam.outputs(p, probes), -1)[..., 1].mean(1)
        acc = (fam.outputs(p, task.test_set()[0]).argmax(-1) == task.test_set()[1]).float().mean(1)
    assert (p1[3:] > p1[:3] + 0.2).all(), p1  # pushed towards class 1 on the probes
    assert (acc[3:] > 0.8).all(), acc  # while still fitting the task (the probes are not the training data)
    for k in plain:  # weight 0: the models train as without a penalty (up to float sums in another order)
        assert torch.allclose(p[k][:3], plain[k], atol=1e-4), k
