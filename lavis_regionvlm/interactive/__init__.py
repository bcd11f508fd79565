"""Interactive use: `RegionPredictor` (set an image once, ask about many regions), `Chat`
(multi-turn conversations about regions, with export and replay) and `AttentionMap` (where
the Q-Former's queries look for a region)."""
from lavis_regionvlm.interactive.attention import AttentionMap, attention_maps
from lavis_regionvlm.interactive.chat import Chat, ChatError, ChatReply, Turn, find_references
from lavis_regionvlm.models.lm import Piece
from lavis_regionvlm.interactive.predictor import NoImageError, RegionPredictor, image_sha256, load_image
from lavis_regionvlm.interactive.regions_input import as_region, parse_points

__all__ = [
    "AttentionMap", "attention_maps", "Chat", "ChatError", "ChatReply", "NoImageError", "RegionPredictor", "Turn", "as_region",
    "Piece", "find_references", "image_sha256", "load_image", "parse_points",
]
