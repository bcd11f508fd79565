"""Language models behind one interface (`RegionLM`): what every region model's `lm` is."""
from lavis_regionvlm.models.lm.base import Piece, RegionLM

__all__ = ["Piece", "RegionLM"]
