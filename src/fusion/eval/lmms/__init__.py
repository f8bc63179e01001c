"""lmms-eval plugin package for versions before entry points: ``LMMS_EVAL_PLUGINS=fusion.eval.lmms``."""
