"""Interactive use: `RegionPredictor` (set an image once, ask about many regions) and `Chat`
(multi-turn conversations about regions, with export and replay)."""
from lavis_regionvlm.interactive.chat import Chat, ChatError, ChatReply, Turn, find_references
from lavis_regionvlm.models.pieces import count_tokens, embed_pieces
from lavis_regionvlm.interactive.predictor import NoImageError, RegionPredictor, image_sha256, load_image
from lavis_regionvlm.interactive.regions_input import as_region, parse_points

__all__ = [
    "Chat", "ChatError", "ChatReply", "NoImageError", "RegionPredictor", "Turn", "as_region",
    "count_tokens", "embed_pieces", "find_references", "image_sha256", "load_image", "parse_points",
]
