"""Where the Q-Former looks for a region: cross-attention maps (the RegionVLM paper's Figure 4).

The Q-Former runs on `[queries; BERT(point text)]`; self-attention mixes the point tokens
into the N queries, and in every `cross_attention_freq`-th layer the queries (only they)
cross-attend to the L image tokens (1 CLS + h*w patches). This module records those
cross-attention probabilities for a region and reduces them to one heat map over the patch
grid: mean over heads, over the N queries and over the chosen cross-attention layers; the CLS
column is dropped and the rest renormalised to sum to 1.

    >>> maps = attention_maps(model, image_embeds, ["[32 64] [37 62]", ""], layers="all")
    >>> maps[0].grid.shape          # (h, w) patch grid, float32, sums to 1
    >>> maps[0].overlay(image, points=True).save("attention.png")

The Q-Former pass is the model's own (`query_outputs` -> `_qformer_pass`: same tokenizer
arguments, attention masks and `global_region_mode` for ""); a pre-hook on the Q-Former's
BERT only adds `output_attentions=True` to that call, so the maps are those of the exact pass
that makes the soft prompts.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch
from PIL import Image, ImageDraw

from lavis_regionvlm.regions import text_to_points

LayerSpec = Union[str, int, Sequence[int]]
LAYER_CHOICES = ("all", "first", "last")

__all__ = [
    "AttentionMap", "LAYER_CHOICES", "attention_maps", "cross_attention_layers", "cross_attention_probs",
    "heat_colors", "parse_layers", "resolve_layers",
]


# ---------------------------------------------------------------------- layers


def cross_attention_layers(model: Any) -> list[int]:
    """Indices (0-based) of the Q-Former layers that cross-attend to the image."""
    return [i for i, layer in enumerate(model.Qformer.bert.encoder.layer)
            if getattr(layer, "has_cross_attention", False)]


def parse_layers(text: str) -> Union[str, list[int]]:
    """Command-line form of a layer choice: "all", "first", "last" or comma-separated layer
    indices ("0,2") -> the `layers` argument of `attention_maps`.

    Raises:
        ValueError: anything else.
    """
    value = text.strip().lower()
    if value in LAYER_CHOICES:
        return value
    try:
        indices = [int(part) for part in value.split(",")]
    except ValueError:
        raise ValueError(
            f"layers must be one of {', '.join(LAYER_CHOICES)} or comma-separated Q-Former layer "
            f"indices such as '0,2'; got {text!r}"
        ) from None
    return indices


def resolve_layers(model: Any, layers: LayerSpec = "all") -> list[int]:
    """A layer choice -> the Q-Former layer indices to average over.

    Args:
        layers: "all" (every cross-attention layer), "first", "last", a Q-Former layer index,
            or a list of them (each must be a cross-attention layer; negative indices count
            from the end of the Q-Former as in Python).

    Raises:
        ValueError: an unknown name, an empty list, or a layer without cross-attention.
    """
    available = cross_attention_layers(model)
    if not available:
        raise ValueError("the Q-Former has no cross-attention layer")
    if isinstance(layers, str):
        if layers == "all":
            return available
        if layers == "first":
            return available[:1]
        if layers == "last":
            return available[-1:]
        raise ValueError(f"layers must be one of {LAYER_CHOICES}, an int or a list of ints; got {layers!r}")
    indices = [layers] if isinstance(layers, (int, np.integer)) else list(layers)
    if not indices:
        raise ValueError("layers is an empty list")
    depth = len(model.Qformer.bert.encoder.layer)
    chosen = []
    for index in indices:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise ValueError(f"layer indices must be ints, got {index!r}")
        resolved = int(index) + depth if index < 0 else int(index)
        if resolved not in available:
            raise ValueError(
                f"Q-Former layer {int(index)} has no cross-attention; the layers with "
                f"cross-attention are {available} (of {depth})"
            )
        if resolved not in chosen:
            chosen.append(resolved)
    return sorted(chosen)


# ---------------------------------------------------------------------- probabilities


@torch.no_grad()
def cross_attention_probs(
    model: Any, image_embeds: torch.Tensor, region_text: Sequence[str]
) -> dict[int, torch.Tensor]:
    """The queries' cross-attention probabilities for R point texts.

    Args:
        model: a region model (`RegionBlip2`, in eval mode: no attention dropout).
        image_embeds: (1, L, C) image embedding shared by every text, or (R, L, C) one row per
            text, from `encode_image`.
        region_text: R point texts ("" for the whole image, encoded as the model's
            `global_region_mode` says).

    Returns:
        {Q-Former layer index: (R, heads, N, L) float32 softmax probabilities on the model's
        device}, one entry per cross-attention layer; each row sums to 1 over the L image tokens.
    """
    texts = list(region_text)
    if not texts:
        raise ValueError("no region text")
    if image_embeds.dim() != 3 or image_embeds.shape[0] not in (1, len(texts)):
        raise ValueError(
            f"image_embeds must be (1, L, C) or ({len(texts)}, L, C), got {tuple(image_embeds.shape)}"
        )
    rows = image_embeds.expand(len(texts), -1, -1) if image_embeds.shape[0] == 1 else image_embeds
    layers = cross_attention_layers(model)
    bert = model.Qformer.bert
    recorded: list = []

    def with_attentions(module, args, kwargs):
        return args, {**kwargs, "output_attentions": True}

    def record(module, args, kwargs, output):
        recorded.append(output.cross_attentions)

    # query_outputs makes one Q-Former call per group: texts run as "query only" and the rest.
    query_only = [t == "" and getattr(model, "global_region_mode", "empty_text") == "query_only" for t in texts]
    groups = [[i for i, q in enumerate(query_only) if q], [i for i, q in enumerate(query_only) if not q]]
    out: dict[int, torch.Tensor] = {}
    pre = bert.register_forward_pre_hook(with_attentions, with_kwargs=True)
    post = bert.register_forward_hook(record, with_kwargs=True)
    try:
        for group in groups:
            if not group:
                continue
            recorded.clear()
            model.query_outputs(rows[group], [texts[i] for i in group])
            if len(recorded) != 1:
                raise RuntimeError(f"expected one Q-Former call, saw {len(recorded)}")
            # One entry per layer; only the cross-attention layers' entries are probabilities.
            for layer in layers:
                probs = recorded[0][layer].float()
                if layer not in out:
                    out[layer] = probs.new_empty((len(texts), *probs.shape[1:]))
                out[layer][group] = probs
    finally:
        pre.remove()
        post.remove()
    return out


def _grid_shape(model: Any, num_patches: int) -> tuple[int, int]:
    patch_shape = getattr(getattr(model.visual_encoder, "patch_embed", None), "patch_shape", None)
    if patch_shape is not None and int(patch_shape[0]) * int(patch_shape[1]) == num_patches:
        return int(patch_shape[0]), int(patch_shape[1])
    side = math.isqrt(num_patches)
    if side * side != num_patches:
        raise ValueError(f"cannot lay {num_patches} image patches out on a grid; pass grid_shape")
    return side, side


@torch.no_grad()
def attention_maps(
    model: Any,
    image_embeds: torch.Tensor,
    region_text: Union[str, Sequence[str]],
    *,
    layers: LayerSpec = "all",
    grid_shape: Optional[tuple[int, int]] = None,
) -> list["AttentionMap"]:
    """Cross-attention heat maps of R regions over the image patch grid.

    Args:
        model: a region model (`RegionBlip2`) in eval mode.
        image_embeds: (1, L, C) from `encode_image` (shared), or (R, L, C); L = 1 CLS + h*w.
        region_text: one point text or R of them ("" for the whole image).
        layers: which cross-attention layers to average (see `resolve_layers`).
        grid_shape: (h, w) of the patch grid; default: the ViT's patch grid, or a square.

    Returns:
        R `AttentionMap`s, in the order of `region_text`.
    """
    texts = [region_text] if isinstance(region_text, str) else list(region_text)
    chosen = resolve_layers(model, layers)
    probs = cross_attention_probs(model, image_embeds, texts)
    # (R, L): mean over heads and queries, then over layers.
    mean = torch.stack([probs[layer].mean(dim=(1, 2)) for layer in chosen]).mean(dim=0)
    patches = mean[:, 1:].double()
    patches = patches / patches.sum(dim=1, keepdim=True)
    h, w = grid_shape if grid_shape is not None else _grid_shape(model, patches.shape[1])
    if h * w != patches.shape[1]:
        raise ValueError(f"grid_shape {(h, w)} does not hold {patches.shape[1]} patches")
    grids = patches.reshape(len(texts), h, w).float().cpu().numpy()
    return [AttentionMap(grid=g, region_text=t, layers=tuple(chosen)) for g, t in zip(grids, texts)]


# ---------------------------------------------------------------------- pictures

# A "jet"-like map, dark blue -> blue -> cyan -> yellow -> red -> dark red, as RGB in [0, 1].
_HEAT_STOPS = np.array([0.0, 0.125, 0.375, 0.625, 0.875, 1.0])
_HEAT_COLORS = np.array(
    [[0.0, 0.0, 0.5], [0.0, 0.0, 1.0], [0.0, 1.0, 1.0], [1.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.5, 0.0, 0.0]]
)


def heat_colors(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] (any shape S) -> (*S, 3) uint8 RGB colours (low blue, high red)."""
    v = np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0)
    rgb = np.stack([np.interp(v, _HEAT_STOPS, _HEAT_COLORS[:, c]) for c in range(3)], axis=-1)
    return np.round(rgb * 255).astype(np.uint8)


@dataclasses.dataclass
class AttentionMap:
    """One region's cross-attention over the image patches.

    Attributes:
        grid: (h, w) float32, non-negative, sums to 1: the share of the queries' attention on
            each patch (CLS token left out), row-major over the image like the ViT patches.
        region_text: the point text the Q-Former read ("" for the whole image).
        layers: the Q-Former layers averaged.
    """

    grid: np.ndarray
    region_text: str
    layers: tuple[int, ...] = ()

    @property
    def peak(self) -> tuple[int, int]:
        """(row, col) of the patch with the most attention."""
        row, col = np.unravel_index(int(np.argmax(self.grid)), self.grid.shape)
        return int(row), int(col)

    @property
    def peak_xy(self) -> tuple[float, float]:
        """Centre of the peak patch as relative (x, y) in [0, 1] (x to the right, y down)."""
        row, col = self.peak
        h, w = self.grid.shape
        return (col + 0.5) / w, (row + 0.5) / h

    def upsample(self, height: int, width: int, *, smooth: bool = True) -> np.ndarray:
        """The map at image size: (height, width) float32 in [0, 1], min-max scaled (the least
        attended patch 0, the most 1; all 0 for a flat map). `smooth`: bilinear, else nearest."""
        grid = self.grid.astype(np.float32)
        low, high = float(grid.min()), float(grid.max())
        scaled = (grid - low) / (high - low) if high > low else np.zeros_like(grid)
        resample = Image.BILINEAR if smooth else Image.NEAREST
        big = Image.fromarray(scaled, mode="F").resize((int(width), int(height)), resample=resample)
        return np.clip(np.asarray(big, dtype=np.float32), 0.0, 1.0)

    def points(self) -> np.ndarray:
        """The region's points read back from `region_text`: (K, 2) relative (x, y) = value / 100."""
        return text_to_points(self.region_text)

    def overlay(
        self,
        image: Union[Image.Image, np.ndarray],
        alpha: float = 0.6,
        points: Union[None, bool, np.ndarray, Sequence[Sequence[float]]] = None,
        *,
        smooth: bool = True,
        point_radius: Optional[int] = None,
    ) -> Image.Image:
        """The heat map blended on the image: an RGB PIL image of the image's size.

        Each pixel becomes `(1 - a) * image + a * heat_colour`, with opacity `a = alpha * v`
        and v the upsampled map in [0, 1]: unattended places keep their pixels, the most
        attended get `alpha` of the colour (red).

        Args:
            image: PIL image or (H, W[, 3|4]) uint8 array (the image the map is of, any size).
            alpha: opacity of the colour at the peak, in [0, 1].
            points: None (no dots); True: the region's points from `region_text`; or (K, 2)
                relative (x, y) in [0, 1] (as `Region` points, not the 0..100 of point text).
                Drawn as white dots with a black rim.
            smooth: bilinear (True) or blocky nearest (False) upsampling of the grid.
            point_radius: dot radius in pixels (default: about 1/50 of the shorter side, >= 2).
        """
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        base = image.convert("RGB") if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image)).convert("RGB")
        width, height = base.size
        value = self.upsample(height, width, smooth=smooth)
        opacity = alpha * value[..., None]
        pixels = np.asarray(base, dtype=np.float32)
        blended = (1.0 - opacity) * pixels + opacity * heat_colors(value).astype(np.float32)
        out = Image.fromarray(np.clip(np.round(blended), 0, 255).astype(np.uint8), mode="RGB")
        if points is None or points is False:
            return out
        xy = self.points() if points is True else np.asarray(points, dtype=np.float64).reshape(-1, 2)
        radius = point_radius if point_radius is not None else max(2, round(min(width, height) / 50))
        draw = ImageDraw.Draw(out)
        for x, y in xy:
            cx, cy = x * width, y * height
            draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius),
                         fill=(255, 255, 255), outline=(0, 0, 0), width=max(1, radius // 3))
        return out

    def to_json(self) -> dict[str, Any]:
        """Summary for JSON output: region text, layers, grid shape and peak."""
        row, col = self.peak
        x, y = self.peak_xy
        return {"region_text": self.region_text, "layers": list(self.layers), "grid_shape": list(self.grid.shape),
                "peak": {"row": row, "col": col, "x": x, "y": y, "share": float(self.grid[row, col])}}
