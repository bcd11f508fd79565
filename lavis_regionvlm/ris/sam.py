"""Build a segment-anything model: a released type from a checkpoint, or `tiny` (random weights).

`tiny` is SAM's architecture at toy size (a 1-block 64-wide ViT on 256 px, 32-wide prompt
encoder and mask decoder), seeded: it runs the real `SamAutomaticMaskGenerator` code path in
tests and quick starts in well under a second per image. Its masks are meaningless.
"""
from __future__ import annotations

from functools import partial
from typing import Optional

import torch

TINY = "tiny"


def build_sam(model_type: str, checkpoint: Optional[str] = None, device: str = "cpu", seed: int = 0):
    """A `segment_anything.modeling.Sam` in eval mode on `device`.

    Args:
        model_type: a key of `segment_anything.sam_model_registry` ("vit_h", "vit_l",
            "vit_b", "default") or "tiny".
        checkpoint: the released weights for a registry type (required there); must be None
            for "tiny".
        seed: initialisation seed of "tiny".
    """
    from segment_anything import sam_model_registry

    if model_type == TINY:
        if checkpoint is not None:
            raise ValueError("the tiny SAM has random weights; checkpoint must be null")
        model = build_tiny_sam(seed)
    elif model_type in sam_model_registry:
        if not checkpoint:
            raise ValueError(f"SAM model type {model_type!r} needs a checkpoint (e.g. sam_vit_h_4b8939.pth)")
        model = sam_model_registry[model_type](checkpoint=checkpoint)
    else:
        raise ValueError(f"unknown SAM model type {model_type!r}; use one of {sorted(sam_model_registry)} or 'tiny'")
    return model.to(device).eval()


def build_tiny_sam(seed: int = 0, img_size: int = 256, embed_dim: int = 64, prompt_dim: int = 32):
    """SAM with a small image encoder and small prompt encoder / mask decoder, random weights."""
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    patch = 16
    grid = img_size // patch
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return Sam(
            image_encoder=ImageEncoderViT(
                img_size=img_size, patch_size=patch, embed_dim=embed_dim, depth=1, num_heads=2,
                mlp_ratio=2.0, out_chans=prompt_dim, qkv_bias=True,
                norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), window_size=0, global_attn_indexes=(0,),
            ),
            prompt_encoder=PromptEncoder(
                embed_dim=prompt_dim, image_embedding_size=(grid, grid),
                input_image_size=(img_size, img_size), mask_in_chans=4,
            ),
            mask_decoder=MaskDecoder(
                num_multimask_outputs=3,
                transformer=TwoWayTransformer(depth=1, embedding_dim=prompt_dim, mlp_dim=64, num_heads=2),
                transformer_dim=prompt_dim, iou_head_depth=2, iou_head_hidden_dim=32,
            ),
            pixel_mean=[123.675, 116.28, 103.53],
            pixel_std=[58.395, 57.12, 57.375],
        )
