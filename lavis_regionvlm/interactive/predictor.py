"""`RegionPredictor`: set an image once, then ask many cheap questions about its regions.

The pattern of segment-anything's `SamPredictor`: `set_image` runs the ViT (the expensive
step) and keeps the image embedding (1, L, C); every later call (caption, ask, score,
segment) runs only the Q-Former, its projection and the language model (`model.lm`) on that
embedding.

    >>> predictor = RegionPredictor.from_pretrained("tiny")
    >>> predictor.set_image("photo.jpg")
    >>> predictor.caption({"points": [[0.3, 0.6], [0.35, 0.62]]})
    >>> predictor.ask("what colour is it?", "[32 64] [37 62]")   # Z, "what colour is it?", </s>
    >>> predictor.score(["a dog", "a cat"], {"box": [0.1, 0.1, 0.5, 0.6]})

Regions: a `Region`, anything `Region.from_json` reads (dict or JSON text), or point text
"[32 64] [37 62]"; None or "" is the whole image, alone or in a list (see
`lavis_regionvlm.regions.region_input`). Point text is used as given; any other region becomes
point text with the model's K (`num_points`) and quantisation, drawn with the predictor's seed,
so the same region and seed always give the same text, hence the same answer.
Every method takes one region (returns one result) or a list of them (returns a list,
computed as one batch).
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
from os import PathLike
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np
import torch
from PIL import Image
from torch import nn

from lavis_regionvlm import image_io
from lavis_regionvlm.interactive.attention import AttentionMap, LayerSpec, attention_maps
from lavis_regionvlm.models.lm import Piece
from lavis_regionvlm.regions import QUANTIZE_MODES
from lavis_regionvlm.regions.region_input import is_single_region, region_point_text

logger = logging.getLogger(__name__)

ImageLike = Union[Image.Image, np.ndarray, str, PathLike]

CAPTION_DEFAULTS: dict[str, Any] = {"num_beams": 5, "max_new_tokens": 30, "min_length": 1}
ASK_DEFAULTS: dict[str, Any] = {"num_beams": 5, "max_new_tokens": 10, "min_length": 1, "length_penalty": -1.0}
ASK_PROMPT = "{}"  # the raw question right after the region, as their region QA feeds it
QUESTION_PROMPT = "Question: {} Answer:"  # our wrapped form, `ask(..., prompt=QUESTION_PROMPT)`

__all__ = ["RegionPredictor", "NoImageError", "load_image", "image_sha256", "CAPTION_DEFAULTS", "ASK_DEFAULTS",
           "ASK_PROMPT", "QUESTION_PROMPT"]


class NoImageError(RuntimeError):
    """A region call was made before `set_image`."""


def load_image(image: ImageLike) -> Image.Image:
    """A PIL image, an (H, W) / (H, W, 3|4) uint8 array (or float in [0, 1]) or a file path
    -> RGB PIL image. A file is read by `image_io.load_image`: its EXIF orientation applied,
    a truncated or corrupt file refused.

    Raises:
        FileNotFoundError: no such file (`image_io.ImageNotFoundError`).
        ValueError: a file that is not an image, truncated or corrupt (`image_io.ImageInputError`),
            or an array of the wrong shape or range.
    """
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if isinstance(image, (str, PathLike)):  # EXIF-transposed, truncation refused (see image_io)
        return image_io.load_image(image)
    if isinstance(image, np.ndarray):
        array = image
        if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
            raise ValueError(f"an image array must be (H, W), (H, W, 3) or (H, W, 4), got {array.shape}")
        if array.dtype != np.uint8:
            if array.dtype.kind != "f" or not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
                raise ValueError(f"an image array must be uint8, or float in [0, 1]; got {array.dtype}")
            array = np.round(array * 255).astype(np.uint8)
        return Image.fromarray(array).convert("RGB")
    raise TypeError(f"image must be a PIL image, a numpy array or a file path, got {type(image).__name__}")


def image_sha256(image: Image.Image) -> str:
    """sha256 of the decoded RGB pixels (with the size), so a file, its PIL image and its array
    hash the same."""
    rgb = image.convert("RGB")
    digest = hashlib.sha256(f"RGB {rgb.width}x{rgb.height}\n".encode())
    digest.update(np.asarray(rgb, dtype=np.uint8).tobytes())
    return digest.hexdigest()


@dataclasses.dataclass
class _ImageState:
    """What `set_image` keeps (shared by predictors made with `with_settings`)."""

    image: Optional[Image.Image] = None
    embeds: Optional[torch.Tensor] = None  # (1, L, C) float32
    sha256: Optional[str] = None
    proposals: Optional[list[dict]] = None  # SAM proposals of this image, made on demand


class RegionPredictor:
    """Region captioning, question answering, text scoring and segmentation on a cached image.

    Args:
        model: a registered region model (`RegionBlip2`: `blip2_t5_region`, ...), moved to
            eval mode.
        vis_processor: its eval image processor, PIL -> (3, S, S) tensor.
        seed: seed of the region point draws (int).
        num_points: K points per region; None: the model's `num_points`.
        quantize: "floor" | "round" for the point text; None: the model's `point_quantize`.
        model_type: the model type name, recorded in chat exports (informational).
    """

    def __init__(
        self,
        model: nn.Module,
        vis_processor: Callable[[Image.Image], torch.Tensor],
        *,
        seed: int = 0,
        num_points: Optional[int] = None,
        quantize: Optional[str] = None,
        model_type: Optional[str] = None,
    ):
        self.model = model.eval()
        self.vis_processor = vis_processor
        self.seed = int(seed)
        self.num_points = int(num_points if num_points is not None else getattr(model, "num_points", 10))
        self.quantize = quantize if quantize is not None else getattr(model, "point_quantize", "floor")
        if self.num_points < 1:
            raise ValueError(f"num_points must be >= 1, got {self.num_points}")
        if self.quantize not in QUANTIZE_MODES:
            raise ValueError(f"quantize must be one of {QUANTIZE_MODES}, got {self.quantize!r}")
        self.model_type = model_type
        self._state = _ImageState()

    # ------------------------------------------------------------------ building

    @classmethod
    def from_pretrained(
        cls,
        model_type: str = "tiny",
        device: Union[str, torch.device] = "cpu",
        checkpoint: Optional[str] = None,
        *,
        name: str = "blip2_t5_region",
        **kwargs: Any,
    ) -> "RegionPredictor":
        """Load a registered LAVIS model and its eval image processor.

        Args:
            model_type: a model type of `name` ("tiny", "pretrain_flant5xl", "regionvlm_flant5xl", ...).
            device: where the model runs ("cpu", "cuda", "cuda:1", ...).
            checkpoint: a fine-tuned checkpoint (path or URL) loaded instead of the one the
                model type names (e.g. the released RegionVLM weights).
            name: the registered region model (`blip2_t5_region`, or any `RegionBlip2` subclass).
            kwargs: `seed`, `num_points`, `quantize` for the predictor.
        """
        from lavis.common.registry import registry
        from lavis.models import load_preprocess
        from omegaconf import OmegaConf

        import lavis_regionvlm  # noqa: F401  (registers the model)
        from lavis_regionvlm.models.region_core import RegionBlip2

        model_cls = registry.get_model_class(name)
        if model_cls is None:
            raise ValueError(f"no model named {name!r} in the LAVIS registry")
        if not (isinstance(model_cls, type) and issubclass(model_cls, RegionBlip2)):
            raise ValueError(f"{name!r} is not a region model (a RegionBlip2); the predictor needs one, "
                             "e.g. 'blip2_t5_region'")
        if model_type not in model_cls.PRETRAINED_MODEL_CONFIG_DICT:
            raise ValueError(
                f"unknown model type {model_type!r} for {name}; "
                f"known: {sorted(model_cls.PRETRAINED_MODEL_CONFIG_DICT)}"
            )
        cfg = OmegaConf.load(model_cls.default_config_path(model_type))
        if checkpoint:
            cfg.model.load_finetuned = True
            cfg.model.finetuned = str(checkpoint)
        model = model_cls.from_config(cfg.model).eval()
        if torch.device(device).type == "cpu":
            model = model.float()
        vis_processors, _ = load_preprocess(cfg.preprocess)
        return cls(model.to(device), vis_processors["eval"], model_type=model_type, **kwargs)

    def with_settings(
        self, *, seed: Optional[int] = None, num_points: Optional[int] = None, quantize: Optional[str] = None
    ) -> "RegionPredictor":
        """A predictor on the same model AND the same image state, with other point settings
        (a later `set_image` on either changes both)."""
        other = RegionPredictor(
            self.model, self.vis_processor,
            seed=self.seed if seed is None else seed,
            num_points=self.num_points if num_points is None else num_points,
            quantize=self.quantize if quantize is None else quantize,
            model_type=self.model_type,
        )
        other._state = self._state
        return other

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def settings(self) -> dict[str, Any]:
        """What decides the point text: model type, seed, K, quantisation."""
        return {"model_type": self.model_type, "seed": self.seed, "num_points": self.num_points,
                "quantize": self.quantize}

    # ------------------------------------------------------------------ the image

    @torch.inference_mode()
    def set_image(self, image: ImageLike) -> None:
        """Run the ViT once on `image` (PIL, array or path) and keep its embedding."""
        rgb = load_image(image)
        pixels = self.vis_processor(rgb)[None].to(self.device)
        embeds = self.model.encode_image(pixels)
        self._state.image, self._state.embeds = rgb, embeds
        self._state.sha256, self._state.proposals = image_sha256(rgb), None

    def reset_image(self) -> None:
        """Forget the image and its embedding."""
        self._state.image = self._state.embeds = self._state.sha256 = self._state.proposals = None

    @property
    def is_image_set(self) -> bool:
        return self._state.embeds is not None

    @property
    def image(self) -> Image.Image:
        """The RGB image given to `set_image`."""
        self._require_image()
        return self._state.image

    @property
    def image_size(self) -> tuple[int, int]:
        """(width, height) in pixels of the image given to `set_image`."""
        return self.image.size

    @property
    def image_embeds(self) -> torch.Tensor:
        """(1, L, C) float32 image embedding from `set_image`."""
        self._require_image()
        return self._state.embeds

    @property
    def image_sha256(self) -> str:
        """sha256 of the image's RGB pixels (see `image_sha256`)."""
        self._require_image()
        return self._state.sha256

    def _require_image(self) -> None:
        if self._state.embeds is None:
            raise NoImageError("no image is set: call predictor.set_image(image) before asking about regions")

    # ------------------------------------------------------------------ regions

    def region_text(self, region: Any, what: str = "region") -> str:
        """One region (None or "": whole image) -> its point text ("" for the whole image);
        point text is returned as given (`regions.region_input.region_point_text`)."""
        return region_point_text(region, self.num_points, self.seed, quantize=self.quantize, what=what)

    def region_texts(self, regions: Any) -> list[str]:
        """One region or a list of them (None / "" in it: the whole image) -> list of point texts."""
        if is_single_region(regions):
            return [self.region_text(regions)]
        return [self.region_text(r, f"region {i}") for i, r in enumerate(regions)]

    @torch.inference_mode()
    def region_embeds(self, regions: Any) -> torch.Tensor:
        """Soft prompts (R, N, D) of one region (R = 1) or a list, from the cached image."""
        texts = self.region_texts(regions)
        embeds = self.image_embeds
        index = torch.zeros(len(texts), dtype=torch.long, device=embeds.device)
        return self.model.encode_regions(embeds, texts, index)

    # ------------------------------------------------------------------ queries

    @torch.inference_mode()
    def generate(self, batch: Sequence[Sequence[Piece]], **generate_kwargs: Any) -> list[str]:
        """Generate from B piece lists (text and soft prompts, see `models/lm/base.py`), the
        prompts cut at the model's `max_prompt_tokens` (None: no cut); answers stripped."""
        model = self.model
        return [text.strip() for text in model.lm.generate(batch, model.max_prompt_tokens, **generate_kwargs)]

    def caption(self, regions: Any = None, *, prompt: str = "", **generate_kwargs: Any) -> Union[str, list[str]]:
        """Describe a region (None: the whole image), or each of a list of regions.

        The language model's input is the region's soft prompt and `prompt` (default "": no
        text, how RegionVLM was trained). Generation: beam search, `CAPTION_DEFAULTS`, overridable
        with any Hugging Face `generate` keyword.
        """
        single = is_single_region(regions)
        embeds = self.region_embeds(regions)
        answers = self.generate([[z, prompt] for z in embeds], **{**CAPTION_DEFAULTS, **generate_kwargs})
        return answers[0] if single else answers

    def ask(
        self, question: Union[str, Sequence[str]], regions: Any = None, *, prompt: str = ASK_PROMPT,
        **generate_kwargs: Any,
    ) -> Union[str, list[str]]:
        """Answer a question about a region (None: the whole image, i.e. empty point text).

        The language model's input is the region's soft prompt, then `prompt` formatted with the
        question (T5: then `</s>`), cut at the model's `max_prompt_tokens` (None: no cut), as
        `model.predict_answers` builds it. With the default `ASK_PROMPT` ("{}": the raw
        question) this is their single-turn region QA (`predict_answers_qformer_first`) as
        released: Z, then `tokenizer(question)`; generation `ASK_DEFAULTS` (5 beams, at most 10
        new tokens, min length 1, length penalty -1), overridable with any Hugging Face
        `generate` keyword.
        `prompt=QUESTION_PROMPT` gives our wrapped form "Question: {} Answer:".

        `question` may be one string (asked about every region) or a list, one per region
        (with `regions` None meaning the whole image for each). Returns a str for one region
        and one question, else a list.
        """
        single_region = is_single_region(regions)
        questions = [question] if isinstance(question, str) else list(question)
        if not questions or not all(isinstance(q, str) for q in questions):
            raise TypeError("question must be a str or a non-empty list of str")
        if single_region:
            region_list = [regions] * len(questions)
        else:
            region_list = list(regions)
            if len(questions) == 1:
                questions = questions * len(region_list)
            elif len(questions) != len(region_list):
                raise ValueError(f"{len(questions)} questions for {len(region_list)} regions")
        embeds = self.region_embeds(region_list)
        answers = self.generate(
            [[z, prompt.format(q)] for z, q in zip(embeds, questions)], **{**ASK_DEFAULTS, **generate_kwargs}
        )
        return answers[0] if single_region and isinstance(question, str) else answers

    @torch.inference_mode()
    def score(self, texts: Union[str, Sequence[str]], regions: Any = None, *, prompt: str = "") -> torch.Tensor:
        """LM loss of each text given a region: mean token NLL in nats (`</s>` included), lower
        is more likely; `exp(-loss)` is the per-token geometric-mean probability.

        Returns (T,) float32 for one region (None: whole image), (R, T) for a list of R regions.
        `model.lm.score`, the one scorer (the language model's input part runs once per region);
        the prompt is cut at the model's `max_prompt_tokens` (None: no cut).
        """
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not texts or not all(isinstance(t, str) for t in texts):
            raise TypeError("texts must be a str or a non-empty list of str")
        single = is_single_region(regions)
        model = self.model
        embeds = self.region_embeds(regions)
        losses = model.lm.score([[z, prompt] for z in embeds], texts, max_text_tokens=model.max_prompt_tokens)
        losses = losses.float().cpu()
        return losses[0] if single else losses

    @torch.inference_mode()
    def attention_map(
        self, regions: Any = None, *, layers: LayerSpec = "all"
    ) -> Union[AttentionMap, list[AttentionMap]]:
        """Where the Q-Former's queries look for a region (None: the whole image): their
        cross-attention over the image patches, averaged over heads, queries and `layers`
        ("all", "first", "last", or Q-Former layer indices), as an `AttentionMap` ((h, w)
        grid summing to 1; `overlay` draws it on the image). Uses the cached image embedding.

        Returns one map for one region, a list for a list of regions.
        """
        single = is_single_region(regions)
        maps = attention_maps(self.model, self.image_embeds, self.region_texts(regions), layers=layers)
        return maps[0] if single else maps

    def segment(
        self,
        expression: str,
        proposals: Union[None, str, PathLike, Sequence[dict]] = None,
        *,
        mask_generator: Any = None,
        options: Any = None,
    ):
        """Referring segmentation: the proposal mask that `expression` describes.

        Reuses the RIS code (`lavis_regionvlm.ris.segment.segment`) with the cached image
        embedding; `expression` is scored as the RIS evaluation scores it (`ris.expression`:
        "The dog." -> "the dog"). Proposals: records with a COCO RLE `segmentation` (a list, or a proposal
        cache file), or made by `mask_generator` (e.g. segment-anything's
        `SamAutomaticMaskGenerator(sam, output_mode="coco_rle")`), run once per image.
        `options`: a `RisOptions`; default: K, quantisation and seed of this predictor.
        Returns a `SegmentResult` (mask (H, W) bool or None, proposal index, scores).
        """
        from lavis_regionvlm.ris.pipeline import RisOptions
        from lavis_regionvlm.ris.proposal_cache import read_proposals
        from lavis_regionvlm.ris.segment import segment

        image = self.image
        if proposals is None:
            if mask_generator is None:
                raise ValueError("segment needs proposals (records or a proposal file) or a mask_generator (SAM)")
            if self._state.proposals is None:
                self._state.proposals = list(mask_generator.generate(np.asarray(image)))
            proposals = self._state.proposals
        elif isinstance(proposals, (str, PathLike)):
            proposals = read_proposals(proposals)
        if options is None:
            options = RisOptions(num_points=self.num_points, quantize=self.quantize, seed=self.seed)
        return segment(self.model, self.vis_processor, image, expression, list(proposals), options,
                       image_embeds=self.image_embeds)
