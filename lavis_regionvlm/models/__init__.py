"""Models registered with LAVIS: `blip2_t5_region`."""
from lavis_regionvlm.models.blip2_t5_region import Blip2T5Region

__all__ = ["Blip2T5Region"]
