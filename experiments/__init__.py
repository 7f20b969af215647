"""Experiments: one module per family, each with its frozen config presets and a `run` function.

`experiments.registry.EXPERIMENTS` maps every `--exp` name to its `Experiment`; `experiments.run`
is the command-line entry point.
"""
