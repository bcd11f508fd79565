"""`blip2_opt_region`: RegionVLM on BLIP-2 OPT (LAVIS's `blip2_opt`, a decoder-only LM).

The region part (ViT, Q-Former reading point text, loading, LAVIS's model API) is
`region_core.RegionBlip2`; this file adds OPT: its build, `opt_proj` (Q-Former width H -> OPT
width D) and the `RegionLM` view `lm` (`lm/opt.py`: soft prompt, BOS, prompt, then the target
ending in "\\n"; loss on the target tokens only). The attribute names are LAVIS's
(`opt_tokenizer`, `opt_model`, `opt_proj`), so BLIP-2 OPT checkpoints load as they are.
"""
from __future__ import annotations

from typing import Any

import torch
from lavis.common.registry import registry
from torch import nn

from lavis_regionvlm.models import builders
from lavis_regionvlm.models.lm.opt import OPTLM, opt_numerics
from lavis_regionvlm.models.region_core import RegionBlip2
from lavis_regionvlm.models.t5_numerics import T5Numerics
from lavis_regionvlm.paths import config_path

OPT_PRECISIONS = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


@registry.register_model("blip2_opt_region")
class Blip2OPTRegion(RegionBlip2):
    """BLIP-2 OPT with region (point-text) input to the Q-Former.

    Model types:
        - `tiny`: a few-MB model built offline from files the package ships (tests, quick start).
        - `pretrain_opt2.7b`, `pretrain_opt6.7b`: BLIP-2 OPT stage-2 weights plus the Q-Former
          text branch from the stage-1 checkpoint; EVA ViT-g at 224 px as LAVIS's OPT configs.
        The full-size types load leanly (`lean_load`); `opt_precision: fp32` runs them on CPU.

    Usage:
        >>> from lavis.models import load_model_and_preprocess
        >>> model, vis, txt = load_model_and_preprocess("blip2_opt_region", "tiny", is_eval=True)
    """

    PRETRAINED_MODEL_CONFIG_DICT = {
        "tiny": config_path("models/blip2_opt_region_tiny.yaml"),
        "pretrain_opt2.7b": config_path("models/blip2_opt_region_pretrain_opt2.7b.yaml"),
        "pretrain_opt6.7b": config_path("models/blip2_opt_region_pretrain_opt6.7b.yaml"),
    }

    def __init__(
        self,
        opt_model: str = "facebook/opt-2.7b",
        opt_init: str = "pretrained",
        opt_precision: str = "fp16",
        freeze_opt: bool = True,
        **region_args: Any,
    ):
        """Build the model. `region_args` are `RegionBlip2`'s (ViT, Q-Former, region and loading
        arguments, see `region_core.py`); every file reference may be a hub name, URL, local path
        or `regionvlm://...` package file.

        OPT arguments:
            opt_model: the OPT folder or hub name (config, tokenizer, weights).
            opt_init: "pretrained" (its weights) or "random" (the `tiny` model).
            opt_precision: OPT's weight dtype. "fp16" (as LAVIS; runs on GPU under fp16
                autocast with a float32 residual stream, see `lm/opt.py`); "bf16"; "fp32" (CPU,
                or GPUs where fp16 overflows).
            freeze_opt: keep OPT's weights frozen (as LAVIS).
        """
        super().__init__(
            **region_args,
            lm_args={"opt_model": opt_model, "opt_init": opt_init, "opt_precision": opt_precision,
                     "freeze_opt": freeze_opt},
        )

    def _check_lm_args(self, lm_args: dict) -> None:
        if lm_args["opt_precision"] not in OPT_PRECISIONS:
            raise ValueError(
                f"opt_precision must be one of {tuple(OPT_PRECISIONS)}, got {lm_args['opt_precision']!r}"
            )

    def _build_lm(self, lean: bool, device: str | None, opt_model: str, opt_init: str, opt_precision: str,
                  freeze_opt: bool) -> None:
        self.opt_tokenizer, self.opt_model = builders.build_opt(
            opt_model, opt_init, lean=lean, dtype=OPT_PRECISIONS[opt_precision], device=device
        )
        self.opt_proj = nn.Linear(self.Qformer.config.hidden_size, self.opt_model.config.word_embed_proj_dim)

    def _freeze_lm(self, freeze_opt: bool, **_: Any) -> None:
        if freeze_opt:
            for param in self.opt_model.parameters():
                param.requires_grad = False

    @property
    def lm_projection(self) -> nn.Module:
        return self.opt_proj

    @property
    def lm(self) -> OPTLM:
        return OPTLM(self.opt_model, self.opt_tokenizer, self.opt_numerics(), self.max_txt_len)

    def opt_numerics(self) -> T5Numerics:
        """OPT's input dtype and autocast for this model's device and weights (`opt_numerics`)."""
        return opt_numerics(
            self.device.type, self.opt_model.get_input_embeddings().weight.dtype, self.cpu_autocast
        )
