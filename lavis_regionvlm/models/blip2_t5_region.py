"""`blip2_t5_region`: RegionVLM on BLIP-2 FlanT5 (the released model).

The region part (ViT, Q-Former reading point text, loading, LAVIS's model API) is
`region_core.RegionBlip2`; this file adds FlanT5: its build, `t5_proj` (Q-Former width H ->
T5 width D) and the `RegionLM` view `lm` (`lm/t5.py`) every caller goes through.
"""
from __future__ import annotations

from typing import Any

import torch
from lavis.common.registry import registry
from torch import nn

from lavis_regionvlm.models import builders
from lavis_regionvlm.models.lm.t5 import T5LM
from lavis_regionvlm.models.region_core import RegionBlip2, is_text_branch_key  # noqa: F401  (re-export)
from lavis_regionvlm.models.t5_numerics import T5_SOFT_PROMPT_DTYPES, T5Numerics, t5_numerics
from lavis_regionvlm.paths import config_path

T5_PRECISIONS = {"bf16": torch.bfloat16, "fp32": torch.float32}


@registry.register_model("blip2_t5_region")
class Blip2T5Region(RegionBlip2):
    """BLIP-2 FlanT5 with region (point-text) input to the Q-Former.

    Model types:
        - `tiny`: a few-MB model built offline from files the package ships (tests, quick start).
        - `pretrain_flant5xl`: BLIP-2 FlanT5-XL stage-2 weights plus the Q-Former text
          branch from the stage-1 checkpoint (or `bert-base-uncased` without it).
        - `regionvlm_flant5xl`: the authors' released RegionVLM checkpoint, from the
          path in `$REGIONVLM_CHECKPOINT` or the config's `finetuned`.
        - `pretrain_flant5xxl`, `regionvlm_flant5xxl`: the same with FlanT5-XXL (no released
          RegionVLM weights at this size: `regionvlm_flant5xxl` loads one you trained).
        The full-size types load leanly (`lean_load`); `t5_precision: fp32` runs them on GPUs
        without bfloat16.

    Usage:
        >>> from lavis.models import load_model_and_preprocess
        >>> model, vis, txt = load_model_and_preprocess("blip2_t5_region", "tiny", is_eval=True)
    """

    PRETRAINED_MODEL_CONFIG_DICT = {
        "tiny": config_path("models/blip2_t5_region_tiny.yaml"),
        "pretrain_flant5xl": config_path("models/blip2_t5_region_pretrain_flant5xl.yaml"),
        "regionvlm_flant5xl": config_path("models/blip2_t5_region_regionvlm_flant5xl.yaml"),
        "pretrain_flant5xxl": config_path("models/blip2_t5_region_pretrain_flant5xxl.yaml"),
        "regionvlm_flant5xxl": config_path("models/blip2_t5_region_regionvlm_flant5xxl.yaml"),
    }

    def __init__(
        self,
        t5_model: str = "google/flan-t5-xl",
        t5_init: str = "pretrained",
        t5_precision: str = "bf16",
        freeze_t5: bool = True,
        t5_soft_prompt_dtype: str = "float32",
        **region_args: Any,
    ):
        """Build the model. `region_args` are `RegionBlip2`'s (ViT, Q-Former, region and loading
        arguments, see `region_core.py`); every file reference may be a hub name, URL, local path
        or `regionvlm://...` package file.

        T5 arguments:
            t5_model: the FlanT5 folder or hub name (config, tokenizer, weights).
            t5_init: "pretrained" (its weights) or "random" (the `tiny` model).
            t5_precision: T5's weight dtype. "bf16" (as released); "fp32" for GPUs without
                bfloat16 (T4, V100), with the ViT still in fp16. "fp16" is refused: FlanT5
                overflows in float16.
            freeze_t5: keep T5's weights frozen (as released).
            t5_soft_prompt_dtype: how every T5 call runs (see `t5_numerics.py`). "float32"
                (default, as released): the soft prompt and token embeddings enter T5 in
                float32, under float32 autocast on GPU (bfloat16 weights are cast up).
                "model": they enter in T5's weight dtype, under bfloat16 autocast on GPU (less
                memory, faster; scores move by bfloat16 rounding).
        """
        super().__init__(
            **region_args,
            lm_args={"t5_model": t5_model, "t5_init": t5_init, "t5_precision": t5_precision,
                     "freeze_t5": freeze_t5, "t5_soft_prompt_dtype": t5_soft_prompt_dtype},
        )

    def _check_lm_args(self, lm_args: dict) -> None:
        if lm_args["t5_soft_prompt_dtype"] not in T5_SOFT_PROMPT_DTYPES:
            raise ValueError(
                f"t5_soft_prompt_dtype must be one of {T5_SOFT_PROMPT_DTYPES}, got {lm_args['t5_soft_prompt_dtype']!r}"
            )
        precision = lm_args["t5_precision"]
        if precision == "fp16":
            raise ValueError(
                "t5_precision 'fp16' is refused: FlanT5 overflows in float16 (its activations "
                "exceed 65504 and turn into inf/NaN). Use 'bf16', or 'fp32' on GPUs without "
                "bfloat16 (T4, V100), where the ViT still runs in fp16"
            )
        if precision not in T5_PRECISIONS:
            raise ValueError(f"t5_precision must be one of {tuple(T5_PRECISIONS)}, got {precision!r}")

    def _build_lm(self, lean: bool, device: str | None, t5_model: str, t5_init: str, t5_precision: str,
                  freeze_t5: bool, t5_soft_prompt_dtype: str) -> None:
        self.t5_soft_prompt_dtype = t5_soft_prompt_dtype
        self.t5_tokenizer, self.t5_model = builders.build_t5(
            t5_model, t5_init, lean=lean, dtype=T5_PRECISIONS[t5_precision], device=device
        )
        self.t5_proj = nn.Linear(self.Qformer.config.hidden_size, self.t5_model.config.hidden_size)

    def _freeze_lm(self, freeze_t5: bool, **_: Any) -> None:
        if freeze_t5:
            for param in self.t5_model.parameters():
                param.requires_grad = False

    @property
    def lm_projection(self) -> nn.Module:
        return self.t5_proj

    @property
    def lm(self) -> T5LM:
        return T5LM(self.t5_model, self.t5_tokenizer, self.t5_numerics(), self.max_txt_len)

    def t5_numerics(self) -> T5Numerics:
        """T5's input dtype and autocast for this model's device and weights: the one place
        every T5 call (loss, scores, RIS, VCR, generation) takes them from."""
        return t5_numerics(
            self.t5_soft_prompt_dtype, self.device.type,
            self.t5_model.encoder.embed_tokens.weight.dtype, self.cpu_autocast,
        )
