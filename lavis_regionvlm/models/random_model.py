"""`Blip2T5Region` of any size with random weights, built offline (benchmarks and tests).

The Q-Former and T5 configs are written to a folder next to copies of the `tiny` model's
tokenizers, so no hub download happens. Random weights are fine for timing and for checking
that two computations agree; they say nothing about accuracy.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from lavis_regionvlm.models import Blip2T5Region
from lavis_regionvlm.paths import PACKAGE_DIR

TINY_ASSETS = PACKAGE_DIR / "assets" / "tiny"

# The Q-Former of BLIP-2 is BERT-base (12 layers of 768, cross-attention every 2nd, 32 queries)
# at every size except `tiny`; the ViT and the T5 grow:
# - "base": EVA ViT-B/16-like at 224 px (197 tokens x 768) and flan-t5-small's architecture;
# - "large": EVA ViT-L/14-like at 224 px (257 tokens x 1024) and flan-t5-base's architecture;
# - "full": the released model's architecture, EVA ViT-g/14 at 364 px (677 tokens x 1408, 39
#   blocks, as LAVIS's `create_eva_vit_g`) and flan-t5-xl's (2048 wide, 24 + 24 layers).
#   About 4.0 B parameters: for a GPU, or for the meta device (FLOP counts).
_QFORMER_BASE = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072}
SIZES: dict[str, dict] = {
    "base": {
        "image_size": 224,
        "vit": {"patch_size": 16, "embed_dim": 768, "depth": 12, "num_heads": 12, "mlp_ratio": 4.0},
        "qformer": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                    "intermediate_size": 3072},
        "num_query_token": 32,
        "cross_attention_freq": 2,
        "t5": {"d_model": 512, "d_kv": 64, "d_ff": 1024, "num_layers": 8, "num_decoder_layers": 8,
               "num_heads": 6, "vocab_size": 32128},
    },
    "large": {
        "image_size": 224,
        "vit": {"patch_size": 14, "embed_dim": 1024, "depth": 24, "num_heads": 16, "mlp_ratio": 4.0},
        "qformer": _QFORMER_BASE,
        "num_query_token": 32,
        "cross_attention_freq": 2,
        "t5": {"d_model": 768, "d_kv": 64, "d_ff": 2048, "num_layers": 12, "num_decoder_layers": 12,
               "num_heads": 12, "vocab_size": 32128},
    },
    "full": {
        "image_size": 364,
        "vit": {"patch_size": 14, "embed_dim": 1408, "depth": 39, "num_heads": 16, "mlp_ratio": 4.3637},
        "qformer": _QFORMER_BASE,
        "num_query_token": 32,
        "cross_attention_freq": 2,
        "t5": {"d_model": 2048, "d_kv": 64, "d_ff": 5120, "num_layers": 24, "num_decoder_layers": 24,
               "num_heads": 32, "vocab_size": 32128},
    },
}


def build_random_model(
    workdir: str | Path,
    *,
    image_size: int,
    vit: dict,
    qformer: dict,
    t5: dict,
    num_query_token: int,
    cross_attention_freq: int,
    seed: int = 0,
    vit_precision: str = "fp32",
    t5_precision: str = "fp32",
    **model_kwargs,
) -> Blip2T5Region:
    """A random-weight fp32 model in eval mode.

    Args:
        workdir: folder for the written configs and tokenizer copies (`qformer/`, `t5/`).
        image_size: input side in pixels.
        vit: EVA ViT dims (`patch_size`, `embed_dim`, `depth`, `num_heads`, `mlp_ratio`).
        qformer: keys that override the tiny BERT config (e.g. `hidden_size`, `num_hidden_layers`).
        t5: keys that override the tiny T5 config (e.g. `d_model`, `num_layers`, `vocab_size`;
            a vocabulary larger than the tokenizer's only makes the LM head realistic in size).
        num_query_token, cross_attention_freq: Q-Former queries and cross-attention period.
        seed: weight initialisation seed.
        vit_precision, t5_precision: as the model's arguments ("fp16"/"fp32", "bf16"/"fp32");
            fp32 (the default) is what a CPU runs.
        model_kwargs: further `Blip2T5Region` arguments (e.g. `global_region_mode`).
    """
    workdir = Path(workdir)
    bert_dir = _write_config(TINY_ASSETS / "bert", workdir / "qformer", {"max_position_embeddings": 512, **qformer})
    t5_dir = _write_config(TINY_ASSETS / "t5", workdir / "t5", t5)
    model = Blip2T5Region(
        vit_model="eva_vit", img_size=image_size, vit_config=vit,
        num_query_token=num_query_token, qformer_bert=str(bert_dir), qformer_init="random",
        cross_attention_freq=cross_attention_freq, t5_model=str(t5_dir), t5_init="random",
        t5_precision=t5_precision, init_seed=seed, vit_precision=vit_precision, **model_kwargs,
    )
    return model.eval()


def build_sized_model(size: str, workdir: str | Path, seed: int = 0, **kwargs) -> Blip2T5Region:
    """`build_random_model` with a preset from `SIZES`; kwargs go to `build_random_model`."""
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; presets: {sorted(SIZES)}")
    return build_random_model(workdir, seed=seed, **SIZES[size], **kwargs)


def _write_config(source: Path, target: Path, overrides: dict) -> Path:
    """Copy a tokenizer folder and write its config.json with `overrides` applied."""
    target.mkdir(parents=True, exist_ok=True)
    for path in source.iterdir():
        if path.name != "config.json":
            shutil.copy(path, target / path.name)
    config = {**json.loads((source / "config.json").read_text()), **overrides}
    (target / "config.json").write_text(json.dumps(config, indent=2))
    return target
