"""Evaluation: a resumable, sharded benchmark runner and scorers with the benchmarks' own rules."""
