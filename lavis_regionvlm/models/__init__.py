"""Models registered with LAVIS: `blip2_t5_region`, `blip2_opt_region`.

LAVIS builds `lavis.models.model_zoo` (what `print(model_zoo)` lists) once, when
`lavis.models` is imported, before any plugin registers; the plugin's architectures are
added to that object's table here.
"""
from lavis.models import model_zoo

from lavis_regionvlm.models.blip2_opt_region import Blip2OPTRegion
from lavis_regionvlm.models.blip2_t5_region import Blip2T5Region

__all__ = ["Blip2T5Region", "Blip2OPTRegion"]


def list_in_model_zoo(name: str, model_cls) -> None:
    """Add a registered architecture and its model types to LAVIS's `model_zoo` table."""
    model_zoo.model_zoo[name] = list(model_cls.PRETRAINED_MODEL_CONFIG_DICT.keys())


list_in_model_zoo("blip2_t5_region", Blip2T5Region)
list_in_model_zoo("blip2_opt_region", Blip2OPTRegion)
