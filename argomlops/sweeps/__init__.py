"""Sweeps: the search shared by the operator (trials as MLOps objects) and `argomlops sweep` (trials as processes).

- `study`: Optuna's samplers and pruners made from a `SweepSpec` (argomlops/config/sweep.py), trial records,
  a study rebuilt from them, asking for a trial and reporting its epochs to the pruner;
- `objective`: a trial's per-epoch values and final objective from its metrics.jsonl / evaluation.json;
- `table`: the table of trials both print;
- `local`: `argomlops sweep`, the laptop runner.

This package imports neither TensorFlow nor kopf: both the operator image and a trainer install use it.
"""
