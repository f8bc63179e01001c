"""Evaluation: a resumable, sharded benchmark runner, scorers with the benchmarks' official rules,
results tables compared with the paper, and an lmms-eval model plugin (``fusion.eval.lmms_plugin``)."""
