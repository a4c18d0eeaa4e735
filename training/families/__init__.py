"""Batched model families: one definition, many models, over stacked parameters ``[n_models, ...]``.

A family knows its per-model parameter shapes, how to initialise one model from a generator, how to
run the whole population forward (exposing named activations such as ``layer0.pre``), and how to
build a plain single-model ``nn.Module`` whose ``state_dict`` keys are the same parameter names.
"""

from training.families.base import Family, get_family, list_families, register_family
from training.families.cnn import CNNFamily
from training.families.mlp import MLPFamily
from training.families.module import ModuleFamily
from training.families.transformer import TransformerFamily

__all__ = ["Family", "MLPFamily", "CNNFamily", "ModuleFamily", "TransformerFamily", "get_family", "list_families", "register_family"]
