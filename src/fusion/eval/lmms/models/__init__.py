"""Models of the ``fusion.eval.lmms`` plugin, in the layout ``LMMS_EVAL_PLUGINS`` expects:
``AVAILABLE_MODELS`` maps a model name to the class in ``fusion.eval.lmms.models.<name>``."""

AVAILABLE_MODELS = {"fusion": "FusionLmms"}
