"""The code Batch jobs run (`foldstack step <name>`): msa and predict.

Shared step contract (attempt dirs, done.json, exit codes): :mod:`foldstack.steps.common`.
"""
