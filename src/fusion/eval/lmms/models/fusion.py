"""``fusion.eval.lmms.models.fusion.FusionLmms``: the plugin class where ``LMMS_EVAL_PLUGINS`` looks for it."""

from fusion.eval.lmms_plugin import FusionLmms  # noqa: F401  (built on import, registered as "fusion")
