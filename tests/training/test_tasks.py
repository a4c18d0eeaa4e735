"""The ground-truth tasks: recovered basins, planted labels, lineage, probes, errors, plugins.

Populations here are small versions of the quick configs (same architecture and optimiser, fewer
seeds and steps) so the file stays well under two minutes on 2 cores.
"""

from __future__ import annotations

import textwrap
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import run_cli
from training.config import SweepConfig, load_config
from training.core.store import Zoo
from training.sweep import run_sweep
from training.tasks import get_task, list_tasks
from training.tasks.base import reset_task_plugins
from training.tasks.maze_goal import MOVES, best_action, distances


def _sweep(tmp_path: Path, name: str, **over) -> Zoo:
    cfg = load_config(name).to_dict()
    for section, values in over.items():
        if isinstance(values, dict):
            cfg.setdefault(section, {}).update(values)
        else:
            cfg[section] = values
    cfg.pop("fingerprints", None)
    out = tmp_path / cfg["name"]
    run_sweep(SweepConfig.from_dict(cfg), out)
    return Zoo.open(out)


def test_xor_cues_quick_config_has_two_big_basins(tmp_path):
    zoo = _sweep(tmp_path, "xor-cues-quick", spawn=[])
    counts = Counter(zoo.models["deep_label"])
    assert sum(counts.values()) == 64
    big = [k for k, v in counts.items() if v >= 0.2 * 64]
    assert {"rule_a", "rule_b"} <= set(big), counts
    assert (np.asarray(zoo.models["test_acc"], float) > 0.95).all()


def test_xor_cue_strength_knob_moves_basin_frequencies(tmp_path):
    weak = Counter(_sweep(tmp_path / "w", "xor-cues-quick", spawn=[], task={"cue_b_strength": 0.8},
                          seeds={"init": 16, "data": 1}).models["deep_label"])
    strong = Counter(_sweep(tmp_path / "s", "xor-cues-quick", spawn=[], task={"cue_b_strength": 1.25},
                            seeds={"init": 16, "data": 1}).models["deep_label"])
    assert weak["rule_a"] > weak["rule_b"] and strong["rule_b"] > strong["rule_a"], (weak, strong)


def test_digits_backdoor_clean_accuracy_and_attack_success(tmp_path):
    zoo = _sweep(tmp_path, "digits-backdoor-quick", spawn=[], seeds={"init": 4, "data": 2}, train={"steps": 600})
    lab = np.asarray(zoo.models["deep_label"]).astype(str)
    asr = np.asarray(zoo.models["attack_success"], float)
    assert {"clean", "backdoored"} == set(lab)
    assert (np.asarray(zoo.models["test_acc"], float) >= 0.95).all()
    assert (asr[lab == "backdoored"] >= 0.9).all() and (asr[lab == "clean"] <= 0.1).all()
    # the planted label is a function of the seeds only, never of batch position
    task = get_task("digits-backdoor")
    ids = zoo.models
    v = task.variant(torch.as_tensor(np.asarray(ids["init_seed"], np.int64)), torch.as_tensor(np.asarray(ids["data_seed"], np.int64)))
    assert (np.where(v.numpy() == 1, "backdoored", "clean") == lab).all()


@pytest.mark.parametrize("trigger", ["patch", "pixels", "blend", "wave"])
def test_triggers_change_few_pixels_or_little_intensity(trigger):
    task = get_task("digits-backdoor", {"trigger": trigger})
    x = task.probes("in_dist")[:32]
    d = (task.apply_trigger(x) - x).abs()
    if trigger in ("blend", "wave"):
        assert d.max() <= task.blend_alpha + 1e-6  # low amplitude everywhere
    else:
        assert (d.flatten(1) > 0).sum(1).max() <= 4  # a handful of pixels


def test_maze_distances_and_oracle_policy_reach_the_goal():
    task = get_task("maze-goal")
    lay = task.layouts(128, 7, 1.0)
    walls, goal, agent = lay["walls"], lay["goal"], lay["agent"].clone()
    d = distances(walls, goal)
    assert (d[torch.arange(128), goal[:, 0], goal[:, 1]] == 0).all()
    assert (d[walls] >= 10_000).all()
    start = d[torch.arange(128), agent[:, 0], agent[:, 1]].clone()
    for _ in range(int(start.max())):  # following best_action takes exactly the shortest-path length
        at = (agent == goal).all(-1, keepdim=True)
        agent = torch.where(at, agent, agent + MOVES[best_action(d, agent)])
    assert (agent == goal).all()


def test_maze_observation_is_egocentric():
    task = get_task("maze-goal", {"size": 5, "wall_density": 0.0})
    walls = torch.zeros(1, 5, 5, dtype=torch.bool)
    goal = torch.tensor([[0, 0]])
    w = task.window
    for agent in ([[2, 2]], [[4, 4]]):
        obs = task.observe(walls, goal, torch.tensor([[4, 0]]), torch.tensor(agent)).reshape(3, w, w)
        centre = w // 2
        # the goal appears at (goal - agent) relative to the window centre; outside the grid is wall
        assert obs[1, centre - agent[0][0], centre - agent[0][1]] == 1
        assert obs[0, centre, centre] == 0 and obs[0, 0, 0] == (0 if agent[0][0] == 4 else 1)


def test_maze_goal_quick_config_separates_goal_and_proxy(tmp_path):
    zoo = _sweep(tmp_path, "maze-goal-quick", seeds={"init": 4, "data": 2}, train={"steps": 600}, finetune=[])
    lab = np.asarray(zoo.models["deep_label"]).astype(str)
    dec = np.asarray(zoo.models["decorrelated"], int)
    share = np.asarray(zoo.models["goal_share"], float)
    assert share[dec == 1].min() > share[dec == 0].max()  # decorrelated data -> walks to the goal
    assert (lab[dec == 1] == "goal").all() and (lab[dec == 0] != "goal").all()
    assert (np.asarray(zoo.models["test_acc"], float) > 0.8).all()


def test_every_task_has_quick_and_full_configs_and_probe_sets():
    for name in ("xor-cues", "maze-goal", "digits-backdoor", "modadd", "tiny-lm"):
        for cfg in (name, f"{name}-quick"):
            assert load_config(cfg).task.name == name
        task = get_task(name)
        for probe in task.probe_names():
            x = task.probes(probe)
            assert x.shape[1:] == task.input_shape and torch.isfinite(x.float()).all()
            assert torch.equal(x, get_task(name).probes(probe))  # deterministic


@pytest.mark.parametrize("task,key,value,expect", [
    ("maze-goal", "size", -3, "task parameter 'task.size' must be >= 3, got -3"),
    ("digits-backdoor", "poison_fraction", 1.5, "task parameter 'task.poison_fraction' must be in [0, 1], got 1.5"),
    ("digits-backdoor", "trigger", "sparkle", "unknown trigger 'sparkle' at 'task.trigger' (valid: patch, pixels, blend, wave)"),
    ("xor-cues", "n_train", -1, "task parameter 'task.n_train' must be > 0, got -1"),
    ("maze-goal", "decorrelation", 2.0, "task parameter 'task.decorrelation' must be in [0, 1], got 2.0"),
])
def test_bad_task_parameters_are_one_line_errors_exit_2(tmp_path, task, key, value, expect):
    val = f'"{value}"' if isinstance(value, str) else value
    cfg = tmp_path / "bad.toml"
    cfg.write_text(f'[task]\nname = "{task}"\n{key} = {val}\n[seeds]\ninit = 1\n')
    r = run_cli("sweep", cfg, "--out", tmp_path / "z")  # the entry point in this process
    assert r.returncode == 2, r.stderr
    assert expect in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "z").exists()


TASK_PLUGIN = '''
from dataclasses import dataclass
import torch
from training.tasks import Task, register_task


@dataclass(frozen=True)
class Parity(Task):
    name = "parity"
    deep_labels = ("any",)
    n_bits: int = 4

    @property
    def input_shape(self):
        return (self.n_bits,)

    @property
    def n_out(self):
        return 2

    def train_set(self):
        x = torch.tensor([[(i >> b) & 1 for b in range(self.n_bits)] for i in range(2 ** self.n_bits)], dtype=torch.float32)
        return x, (x.sum(1) % 2).long()

    test_set = train_set

    def probes(self, name):
        return self.train_set()[0]
'''


def test_entry_point_task_plugin_trains(tmp_path, monkeypatch):
    site = tmp_path / "site"
    (site / "mytask-0.1.dist-info").mkdir(parents=True)
    (site / "mytask.py").write_text(TASK_PLUGIN)
    (site / "mytask-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: mytask\nVersion: 0.1\n")
    (site / "mytask-0.1.dist-info" / "entry_points.txt").write_text("[fingerprint.tasks]\nparity = mytask:Parity\n")
    monkeypatch.syspath_prepend(str(site))
    reset_task_plugins()
    try:
        assert "parity" in list_tasks()
        cfg = SweepConfig.from_dict({"task": {"name": "parity", "n_bits": 3}, "model": {"arch": "mlp", "width": 8},
                                     "train": {"steps": 20, "batch_size": 8}, "seeds": {"init": 2, "data": 1}})
        run_sweep(cfg, tmp_path / "z")
        assert Zoo.open(tmp_path / "z").n_models == 2
    finally:
        reset_task_plugins()


def test_list_shows_a_task_plugins_parameters(tmp_path):
    """`fingerprint list --plugin` shows a task plugin and its parameters, named module:Class or registered
    by a bare module with @register_task (a lead of an earlier session: list could not show them)."""
    import json
    import sys

    (tmp_path / "listtask.py").write_text(TASK_PLUGIN)
    (tmp_path / "regtask.py").write_text(TASK_PLUGIN.replace("@dataclass(frozen=True)", "@register_task\n@dataclass(frozen=True)")
                                         .replace('name = "parity"', 'name = "reg-parity"'))
    (tmp_path / "nothing.py").write_text("x = 1\n")
    pkg = tmp_path / "taskpkg"  # a package whose __init__ re-exports a submodule's task and extractor (a review)
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from .parts import *\n")
    (pkg / "parts.py").write_text(TASK_PLUGIN.replace("@dataclass(frozen=True)", "@register_task\n@dataclass(frozen=True)")
                                  .replace('name = "parity"', 'name = "pkg-parity"') + textwrap.dedent("""
        import fingerprint

        @fingerprint.extractor("pkg-fp-test", kind="behavioural")
        def pkg_fp(models, probe_set: str = "ood"):
            return models.forward(models.task.probes(probe_set)).mean(1)
    """))
    try:
        r = run_cli("list", "--json", "--plugin", "listtask:Parity", "--plugin", "regtask", cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        tasks = json.loads(r.stdout)["tasks"]
        assert tasks["listtask:Parity"]["params"] == {"n_bits": {"type": "int", "default": 4}}
        assert tasks["reg-parity"]["params"]["n_bits"]["default"] == 4
        r = run_cli("list", "--json", "--plugin", "taskpkg", "--plugin", "regtask:Parity", cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        listed = json.loads(r.stdout)
        assert "pkg-fp-test" in listed["extractors"] and "pkg-parity" in listed["tasks"]
        assert "regtask:Parity" not in listed["tasks"] and "reg-parity" in listed["tasks"]  # registered: under its name once
        r = run_cli("list", "--plugin", "listtask:Parity", cwd=tmp_path, env={"COLUMNS": "200"})
        assert r.returncode == 0 and "listtask:Parity" in r.stdout and "n_bits=4" in r.stdout, r.stdout
        r = run_cli("list", "--plugin", "nothing", cwd=tmp_path)
        assert r.returncode == 2 and r.stderr.strip().splitlines() == [
            "error: plugin module 'nothing' registers no extractor and no task: decorate functions with "
            "@fingerprint.extractor(...) or task classes with @register_task, or name one as module:function or "
            "module:Class"], r.stderr
    finally:
        reset_task_plugins()
        from fingerprint import registry

        registry._REGISTRY.pop("pkg-fp-test", None)
        for m in ("listtask", "regtask", "nothing", "taskpkg", "taskpkg.parts"):
            sys.modules.pop(m, None)


def test_reset_task_plugins_keeps_every_builtin():
    """Regression: the reset forgot icl-regression (its built-in list was written by hand), which only
    went unnoticed because test_icl.py happens to run before this file."""
    import pkgutil

    import training.tasks

    builtin = {name for name, cls in list_tasks().items() if cls.__module__.startswith("training.tasks.")}
    modules = {m.name for m in pkgutil.iter_modules(training.tasks.__path__)} - {"base"}
    assert {cls.__module__.rsplit(".", 1)[1] for cls in list_tasks().values() if cls.__module__.startswith("training.tasks.")} == modules
    reset_task_plugins()
    try:
        assert builtin <= set(list_tasks()), builtin - set(list_tasks())
        assert "icl-regression" in list_tasks()
    finally:
        reset_task_plugins()


BROKEN_TASKS = TASK_PLUGIN.replace("name = \"parity\"", "name = \"parity-broken\"") + '''

@dataclass(frozen=True)
class WrongWidth(Parity):
    def train_set(self):
        x, y = super().train_set()
        return x[:, :2], y  # narrower than input_shape says


@dataclass(frozen=True)
class Raises(Parity):
    def train_set(self):
        raise ValueError("train_set exploded")


@dataclass(frozen=True)
class PosVariant(Parity):
    def variant(self, init_seeds, data_seeds):
        return torch.arange(len(init_seeds)) % 2  # by position in the shard, not by seed


@dataclass(frozen=True)
class LatePosVariant(Parity):
    def variant(self, init_seeds, data_seeds):  # by the seeds for the first four models, by position after them
        by_seed = (init_seeds + data_seeds) % 2
        return torch.cat([by_seed[:4], torch.arange(len(init_seeds))[4:] % 2])


@dataclass(frozen=True)
class GlobalRng(Parity):
    def sampler(self, data_states, batch_size, variant):
        base = super().sampler(data_states, batch_size, variant)

        def sample(step):
            x, y = base(step)
            return x + 0.01 * torch.randn(x.shape), y  # the global generator: other noise for another batch
        return sample


@dataclass(frozen=True)
class NoOut(Task):  # n_out left out (outside audit 121: a 57-line traceback ending in NotImplementedError)
    @property
    def input_shape(self):
        return (4,)

    def train_set(self):
        return Parity().train_set()

    test_set = train_set


@dataclass(frozen=True)
class BadValidate(Parity):
    def validate(self):
        raise ValueError("n_bits too small")


@dataclass(frozen=True)
class NarrowProbes(Parity):
    def probes(self, name):
        return super().probes(name)[:, :2]  # narrower than input_shape


class NotADataclass(Parity):  # outside audit 121 (F9): trained, its field silently no parameter
    width: int = 3
'''


def test_a_task_failing_after_a_finished_shard_keeps_it_and_exits_1(tmp_path, monkeypatch):
    """A task plugin that breaks in a later shard: the finished shards are kept for --resume, and the
    exit status is 1, done in part (an outside audit, 71: it was 2, which the README keeps for nothing done)."""
    (tmp_path / "brokentasks.py").write_text(BROKEN_TASKS + '''

@dataclass(frozen=True)
class LateFail(Parity):
    def variant(self, init_seeds, data_seeds):
        return torch.as_tensor(init_seeds) % 8  # each model's own seed: the plan's checks pass

    def diagnostics(self, forward, variant):  # the third shard's models (seeds 4-5), after they trained
        if int(variant.max()) >= 4:
            raise ValueError("seed 4 exploded")
        return super().diagnostics(forward, variant)
''')
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = SweepConfig.from_dict({"task": {"name": "brokentasks:LateFail"}, "model": {"arch": "mlp", "width": 8},
                                 "train": {"steps": 5, "batch_size": 8}, "seeds": {"init": 6, "data": 1}})
    from training.core.errors import PluginError

    with pytest.raises(PluginError) as e:
        run_sweep(cfg, tmp_path / "z", models_per_batch=2)
    assert "seed 4 exploded" in str(e.value) and "the finished shards are kept" in str(e.value)
    assert e.value.exit_code == 1 and Zoo.open(tmp_path / "z").n_models == 4


@pytest.mark.parametrize("spec,expect", [
    ("brokentasks:WrongWidth", "training failed with task 'brokentasks:WrongWidth' (a task plugin's train_set, "
                               "test_set, probes or diagnostics not matching the architecture?): RuntimeError"),
    ("brokentasks:Raises", "ValueError: train_set exploded; nothing was written"),
    # a model's identity is its seeds: a plugin reading its position or the global generator (an outside audit, 71)
    ("brokentasks:PosVariant", "variant(init_seeds, data_seeds) gives a model another condition by its position"),
    ("brokentasks:GlobalRng", "its sampler gives a model other data at step 0 when the models are ordered otherwise"),
    # what a task must define, its own validate(), its probes' width, each one line (outside audit 121)
    ("brokentasks:NoOut", "task 'brokentasks:NoOut' does not define n_out (a task defines input_shape, n_out, "
                          "train_set, test_set"),
    ("brokentasks:BadValidate", "task 'brokentasks:BadValidate': validate() raised ValueError: n_bits too small"),
    ("brokentasks:NarrowProbes", "probes('in_dist') gives inputs of shape [2], its input_shape is [4]"),
    ("brokentasks:NotADataclass", "task 'brokentasks:NotADataclass' is not a dataclass: its field(s) width would not be "
                                  "parameters (decorate the class with @dataclass(frozen=True)"),
    ("syntaxtask:X", "task 'syntaxtask:X' cannot be imported: SyntaxError"),
    ("nosuchtask:X", "task 'nosuchtask:X' cannot be imported: ModuleNotFoundError: No module named 'nosuchtask' (the "
                     "module is looked for in the working directory and on PYTHONPATH"),
])
def test_a_broken_task_plugin_is_one_line_and_leaves_nothing(tmp_path, monkeypatch, spec, expect):
    """The seventh audit: a task plugin with a syntax error, a train_set of the wrong width or one
    that raises gave a 56-74 line traceback and left a zoo of a manifest only."""
    (tmp_path / "brokentasks.py").write_text(BROKEN_TASKS)
    (tmp_path / "syntaxtask.py").write_text("def f(:\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = SweepConfig.from_dict({"task": {"name": spec}, "model": {"arch": "mlp", "width": 8},
                                 "train": {"steps": 5, "batch_size": 8}, "seeds": {"init": 2, "data": 1}})
    from training.core.errors import PluginError

    with pytest.raises(PluginError) as e:
        run_sweep(cfg, tmp_path / "z")
    assert expect in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "z").exists() or not any((tmp_path / "z").iterdir())


def test_a_variant_that_reads_the_position_past_the_first_models_is_refused_before_anything_is_written(tmp_path,
                                                                                                      monkeypatch):
    """Outside audit 121: the check called the variant on the first shard's first four models only; one that read the
    position after them trained silently, and two seeds' deep_label differed alone and in the population. Every
    shard's models are checked, together and each alone, before anything is written."""
    from training.core.errors import PluginError

    (tmp_path / "brokentasks.py").write_text(BROKEN_TASKS)
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = SweepConfig.from_dict({"task": {"name": "brokentasks:LatePosVariant"}, "model": {"arch": "mlp", "width": 8},
                                 "train": {"steps": 5, "batch_size": 8}, "seeds": {"init": 4, "data": 2}})
    with pytest.raises(PluginError, match="variant\\(init_seeds, data_seeds\\) gives a model another condition by its "
                                          "position"):
        run_sweep(cfg, tmp_path / "z")
    assert not (tmp_path / "z").exists() or not any((tmp_path / "z").iterdir())


def test_an_edited_task_plugin_is_said_when_its_zoo_is_read_again(tmp_path, monkeypatch):
    """An outside audit (71): after a task plugin's probes were edited, `extract` served the fingerprints cached
    on the old probes and computed new ones on the new, in one zoo, silently. The sweep records the digest of
    the plugin's module; reading the zoo with another one warns and says how to recompute."""
    from fingerprint.population import task_for

    (tmp_path / "edited.py").write_text(TASK_PLUGIN.replace('name = "parity"', 'name = "parity-edited"'))
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = SweepConfig.from_dict({"task": {"name": "edited:Parity"}, "model": {"arch": "mlp", "width": 8},
                                 "train": {"steps": 5, "batch_size": 8}, "seeds": {"init": 2, "data": 1}})
    run_sweep(cfg, tmp_path / "z")
    code = Zoo.open(tmp_path / "z").manifest["task"]["code"]
    assert len(code) == 12
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # unchanged: nothing said
        task_for(Zoo.open(tmp_path / "z"))
    with open(tmp_path / "edited.py", "a") as f:
        f.write("\n# the probes drawn otherwise\n")
    with pytest.warns(UserWarning, match=r"task 'edited:Parity' has changed since zoo .* was trained .* --force"):
        task_for(Zoo.open(tmp_path / "z"))


def test_an_edited_task_plugin_is_said_when_everything_asked_for_is_cached(tmp_path, monkeypatch):
    """Outside audit 121 (F8): after the plugin's probes were edited, an `extract` whose fingerprints were all
    cached built no task and said nothing; a later report mixed them with ones computed on the new probes."""
    from fingerprint import extract

    (tmp_path / "edited2.py").write_text(TASK_PLUGIN.replace('name = "parity"', 'name = "parity-edited2"'))
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = SweepConfig.from_dict({"task": {"name": "edited2:Parity"}, "model": {"arch": "mlp", "width": 8},
                                 "train": {"steps": 5, "batch_size": 8}, "seeds": {"init": 2, "data": 1}})
    run_sweep(cfg, tmp_path / "z")
    extract(Zoo.open(tmp_path / "z"), ["weight-spectra"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # unchanged and cached: nothing said
        assert all(r.cached for r in extract(Zoo.open(tmp_path / "z"), ["weight-spectra"]))
    with open(tmp_path / "edited2.py", "a") as f:
        f.write("\n# the probes drawn otherwise\n")
    with pytest.warns(UserWarning, match=r"task 'edited2:Parity' has changed since zoo .* --force"):
        results = extract(Zoo.open(tmp_path / "z"), ["weight-spectra"])
    assert all(r.cached for r in results)


def test_a_zoo_of_a_task_registered_in_a_notebook_is_read_with_the_registering_module_as_plugin(tmp_path, monkeypatch):
    """Outside audit 121 (F6): a sweep from a notebook of a task registered with register_task stores its registered
    name; `extract --plugin MODULE`, MODULE registering the task, was refused ("registers no extractor"), and nothing
    else could name the task. A plugin module that registers a task (its own or another module's) loads it."""
    (tmp_path / "nbparity.py").write_text(TASK_PLUGIN.replace('name = "parity"', 'name = "nb-parity"'))
    (tmp_path / "nbregister.py").write_text("from training.tasks import register_task\nimport nbparity\n"
                                            "register_task(nbparity.Parity)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import nbregister  # noqa: F401 - registers nb-parity, as the notebook did

    try:
        cfg = SweepConfig.from_dict({"task": {"name": "nb-parity"}, "model": {"arch": "mlp", "width": 8},
                                     "train": {"steps": 5, "batch_size": 8}, "seeds": {"init": 2, "data": 1}})
        run_sweep(cfg, tmp_path / "z")
    finally:
        reset_task_plugins()
        import sys

        for m in ("nbregister", "nbparity"):  # a fresh command imports them afresh (run_cli may run in this process)
            sys.modules.pop(m, None)
    res = run_cli("extract", tmp_path / "z", "--fp", "probe-outputs", cwd=tmp_path)
    assert res.returncode == 2 and "unknown task 'nb-parity'" in res.stderr, res.stderr
    res = run_cli("extract", tmp_path / "z", "--plugin", "nbregister", "--fp", "probe-outputs", cwd=tmp_path)
    assert res.returncode == 0 and "computed probe-outputs" in " ".join(res.stdout.split()), res.stderr
