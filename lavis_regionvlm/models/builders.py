"""Build the parts of BLIP-2 (ViT, Q-Former, FlanT5 or OPT) from config values, with no hidden download.

LAVIS's `Blip2Base` hard-codes `bert-base-uncased` and the EVA ViT-g URL inside its
constructors. These builders take every name as an argument: a hub name, a URL, a
local path, or a `regionvlm://` file shipped with the package (the `tiny` model).
"""
from __future__ import annotations

import contextlib
import logging
from functools import partial

import torch
from torch import nn

from lavis_regionvlm.models.checkpoints import load_state_dict
from lavis_regionvlm.models.lean_load import meta_device, stream_hf_weights, stream_vit_weights
from lavis_regionvlm.paths import resolve_path

logger = logging.getLogger(__name__)

EVA_VIT_G_URL = (
    "https://storage.googleapis.com/sfr-vision-language-research/LAVIS/models/BLIP2/eva_vit_g.pth"
)
# EVA ViT-g as LAVIS's `create_eva_vit_g` builds it.
EVA_VIT_G_DIMS = {"patch_size": 14, "embed_dim": 1408, "depth": 39, "num_heads": 16,
                  "mlp_ratio": 4.3637}
VISION_MODELS = ("eva_clip_g", "eva_vit", "clip_L")


def build_vision_encoder(
    vit_model: str,
    img_size: int,
    drop_path_rate: float = 0.0,
    use_grad_checkpoint: bool = False,
    precision: str = "fp16",
    vit_config: dict | None = None,
    vit_weights: str | None = None,
    lean: bool = False,
    device: str | None = None,
) -> tuple[nn.Module, nn.Module]:
    """Return `(visual_encoder, ln_vision)`.

    - `eva_clip_g`: EVA ViT-g/14 (1408 wide, 39 blocks), weights from `vit_weights`
      (default: LAVIS's `eva_vit_g.pth` URL; a local path works the same).
    - `eva_vit`: the same EVA architecture with the dims in `vit_config`
      (`patch_size`, `embed_dim`, `depth`, `num_heads`, `mlp_ratio`); random
      weights unless `vit_weights` is given. The `tiny` model uses it.
    - `clip_L`: LAVIS's CLIP ViT-L builder, unchanged.
    lean: with `vit_weights`, build on the meta device and stream the file into the final
    dtype on `device` (default CPU) instead (see `lean_load.py`); same values.
    The encoder maps images (B, 3, img_size, img_size) to tokens (B, 1 + P, width).
    """
    from lavis.models.blip2_models.blip2 import LayerNorm

    if vit_model not in VISION_MODELS:
        raise ValueError(f"vit_model must be one of {VISION_MODELS}, got {vit_model!r}")
    if vit_model == "clip_L":
        from lavis.models.clip_vit import create_clip_vit_L

        encoder = create_clip_vit_L(img_size, use_grad_checkpoint, precision)
        return encoder, LayerNorm(encoder.num_features)

    from lavis.models.eva_vit import (
        VisionTransformer,
        convert_weights_to_fp16,
        interpolate_pos_embed,
    )

    if vit_model == "eva_clip_g":
        dims = dict(EVA_VIT_G_DIMS)
        vit_weights = vit_weights or EVA_VIT_G_URL
    else:
        required = ("patch_size", "embed_dim", "depth", "num_heads")
        if not vit_config or any(k not in vit_config for k in required):
            raise ValueError(f"vit_model 'eva_vit' needs vit_config with {required}, got {vit_config}")
        dims = {"mlp_ratio": 4.0, **dict(vit_config)}
    lean = lean and bool(vit_weights)  # random weights are built as usual
    with meta_device() if lean else contextlib.nullcontext():
        encoder = VisionTransformer(
            img_size=img_size,
            use_mean_pooling=False,
            qkv_bias=True,
            drop_path_rate=drop_path_rate,
            norm_layer=partial(nn.LayerNorm, eps=1e-6),
            use_checkpoint=use_grad_checkpoint,
            **dims,
        )
    if lean:
        if precision == "fp16":
            convert_weights_to_fp16(encoder)  # on meta: sets the final dtypes only
        stream_vit_weights(encoder, vit_weights, device or "cpu")
        return encoder, LayerNorm(encoder.num_features)
    if vit_weights:
        state_dict = load_state_dict(vit_weights)
        interpolate_pos_embed(encoder, state_dict)
        result = encoder.load_state_dict(state_dict, strict=False)
        if result.missing_keys:
            raise RuntimeError(f"{vit_weights} lacks ViT weights: {result.missing_keys[:5]}")
    if precision == "fp16":
        convert_weights_to_fp16(encoder)
    return encoder, LayerNorm(encoder.num_features)


def build_qformer(
    bert: str,
    vision_width: int,
    num_query_token: int,
    cross_attention_freq: int = 2,
    init: str = "pretrained",
) -> tuple[nn.Module, nn.Parameter]:
    """Return `(Qformer, query_tokens)` as `Blip2Base.init_Qformer` does, from any BERT.

    `bert` names the config (and, with `init="pretrained"`, the weights): a hub name
    such as `bert-base-uncased` or a local folder. `init="random"` initialises the
    weights instead (the `tiny` model). `query_tokens` has shape (1, N, hidden).
    """
    from lavis.models.blip2_models.Qformer import BertConfig, BertLMHeadModel

    if init not in ("pretrained", "random"):
        raise ValueError(f"qformer_init must be 'pretrained' or 'random', got {init!r}")
    bert = resolve_path(bert)
    config = BertConfig.from_pretrained(bert)
    config.encoder_width = vision_width
    config.add_cross_attention = True
    config.cross_attention_freq = cross_attention_freq
    config.query_length = num_query_token
    if init == "pretrained":
        qformer = BertLMHeadModel.from_pretrained(bert, config=config)
    else:
        qformer = BertLMHeadModel(config)
    query_tokens = nn.Parameter(torch.zeros(1, num_query_token, config.hidden_size))
    query_tokens.data.normal_(mean=0.0, std=config.initializer_range)
    return qformer, query_tokens


def build_bert_tokenizer(bert: str):
    """The Q-Former's tokenizer, with BLIP-2's extra `[DEC]` token (ids 0..vocab)."""
    from transformers import BertTokenizer

    tokenizer = BertTokenizer.from_pretrained(resolve_path(bert))
    tokenizer.add_special_tokens({"bos_token": "[DEC]"})
    return tokenizer


def build_t5(
    t5_model: str,
    init: str = "pretrained",
    lean: bool = False,
    dtype: torch.dtype | None = None,
    device: str | None = None,
):
    """Return `(t5_tokenizer, t5_model)` as `Blip2T5` builds them, from any name or folder.

    `init="random"` builds the architecture of the folder's `config.json` with random
    weights (the `tiny` model). The feed-forward activation is set to "gelu", as
    LAVIS's `Blip2T5` does, so released checkpoints behave identically.
    lean: with `init="pretrained"`, build on the meta device in `dtype` and stream the
    weight files into it on `device` (default CPU) instead of `from_pretrained`'s float32
    copy (see `lean_load.py`); same values. Without lean, `dtype` is applied after loading.
    """
    from lavis.models.blip2_models.modeling_t5 import T5Config, T5ForConditionalGeneration
    from transformers import T5TokenizerFast

    if init not in ("pretrained", "random"):
        raise ValueError(f"t5_init must be 'pretrained' or 'random', got {init!r}")
    t5_model = resolve_path(t5_model)
    tokenizer = T5TokenizerFast.from_pretrained(t5_model)
    config = T5Config.from_pretrained(t5_model)
    config.dense_act_fn = "gelu"
    return tokenizer, _build_hf_model(T5ForConditionalGeneration, config, t5_model, init, lean, dtype, device, "T5")


def build_opt(
    opt_model: str,
    init: str = "pretrained",
    lean: bool = False,
    dtype: torch.dtype | None = None,
    device: str | None = None,
):
    """Return `(opt_tokenizer, opt_model)` as `Blip2OPT` builds them, from any name or folder.

    The tokenizer is OPT's slow `GPT2Tokenizer` (`use_fast=False`, as LAVIS), the model
    LAVIS's `OPTForCausalLM` with cached generation from embeddings (`lm.opt.OPTForRegionLM`).
    `init="random"` builds the architecture of the folder's `config.json` with random weights
    (the `tiny` model). lean: with `init="pretrained"`, build on the meta device in `dtype` and
    stream the weight files into it on `device` (default CPU) instead (see `lean_load.py`);
    same values. Without lean, `dtype` is applied after loading (LAVIS loads fp16).
    """
    from lavis.models.blip2_models.modeling_opt import OPTConfig
    from transformers import AutoTokenizer

    from lavis_regionvlm.models.lm.opt import OPTForRegionLM

    if init not in ("pretrained", "random"):
        raise ValueError(f"opt_init must be 'pretrained' or 'random', got {init!r}")
    opt_model = resolve_path(opt_model)
    tokenizer = AutoTokenizer.from_pretrained(opt_model, use_fast=False)
    config = OPTConfig.from_pretrained(opt_model)
    model = _build_hf_model(OPTForRegionLM, config, opt_model, init, lean, dtype, device, "OPT", torch_dtype=dtype)
    return tokenizer, model


def _build_hf_model(model_cls, config, folder: str, init: str, lean: bool, dtype: torch.dtype | None,
                    device: str | None, what: str, **from_pretrained_kwargs):
    """A Hugging Face model of `config`: random weights (`init="random"`), `from_pretrained(folder)`,
    or with `lean` built on the meta device in `dtype` and streamed from the folder's weight files
    (see `lean_load.py`); `dtype` applied in the end either way."""
    if init == "pretrained" and lean:
        config.name_or_path = folder  # as from_pretrained sets it
        with meta_device():
            model = model_cls(config)
        if dtype is not None:
            model.to(dtype)  # on meta: sets the final dtype only
        stream_hf_weights(model, folder, device or "cpu", what=what)
        return model
    if init == "pretrained":
        model = model_cls.from_pretrained(folder, config=config, **from_pretrained_kwargs)
    else:
        model = model_cls(config)
    if dtype is not None:
        model.to(dtype)
    return model
