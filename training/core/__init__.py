"""The floor: what every other package stands on, importing nothing of ours from above.

``errors`` (one-line errors for people), ``validate`` (the one parameter validator), ``seeds``
(a model's identity is its seeds), ``numerics`` (reproducible BLAS), ``outputs`` (what may be
overwritten) and the zoo store (``store`` and the modules behind it: the only code that touches a
zoo's files). ``tests/test_layers.py`` holds the rule: a module here imports only ``training.core``.
"""
