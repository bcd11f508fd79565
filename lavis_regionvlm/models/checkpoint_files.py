"""Write a LAVIS-layout checkpoint set of any size filled with random values (tests, benchmarks).

The files a full-size `blip2_t5_region` reads, in the layouts LAVIS and the authors use:
- `eva_vit.pth`: EVA ViT weights as a bare state dict at 224 px (257 positions; the model
  interpolates them to its image size), in half precision as LAVIS's `eva_vit_g.pth` (about
  2 GB at ViT-g, 1.0 B parameters) stores them (`vit_dtype`);
- `bert/`: a BERT folder (`config.json`, `vocab.txt`, `pytorch_model.bin` with
  `BertForPreTraining`'s keys) standing for `bert-base-uncased`;
- `t5/`: a Hugging Face T5 folder (`config.json`, the tiny model's tokenizer files, float32
  `pytorch_model.bin`, or shards of at most `max_shard_size` and their index, as
  `save_pretrained` writes them: FlanT5-XL comes in two shards of 9.45 and 1.95 GB);
- `stage1.pth`: BLIP-2's stage-1 file, `{"model": ...}` with the whole Q-Former (text branch
  and LM head, vocabulary + [DEC] rows), queries, `ln_vision` and the stage-1 heads;
- `stage2.pth`: BLIP-2's stage-2 FlanT5 file: the Q-Former without its text branch (as
  `Blip2T5` deletes it), queries, `t5_proj`, `ln_vision`;
- `regionvlm.pth`: a released-style RegionVLM file: the Q-Former with its text branch,
  queries, `t5_proj`, `ln_vision`.
Frozen ViT and T5 weights are in none of the `{"model": ...}` files, as LAVIS's runner saves
trainable weights only. Values are seeded random numbers (std 0.02): right for memory and for
comparing two loading paths, meaningless as a model.
"""
from __future__ import annotations

import json
import shutil
from functools import partial
from pathlib import Path

import torch
from torch import nn

from lavis_regionvlm.models.lean_load import meta_device
from lavis_regionvlm.paths import PACKAGE_DIR

TINY_ASSETS = PACKAGE_DIR / "assets" / "tiny"
FLAN_T5_CONFIGS = PACKAGE_DIR / "assets" / "flan_t5"
VIT_FILE_IMAGE_SIZE = 224  # eva_vit_g.pth's position table is for 224 px (16 x 16 patches + 1)
EVA_VIT_G = {"patch_size": 14, "embed_dim": 1408, "depth": 39, "num_heads": 16, "mlp_ratio": 4.3637}
BERT_BASE = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
             "intermediate_size": 3072, "vocab_size": 30522, "max_position_embeddings": 512}
STAGE1_HEADS = {"vision_proj": 256, "text_proj": 256, "itm_head": 2}  # Blip2Qformer's embed_dim 256


def _random_state(shapes: dict[str, tuple[torch.Size, torch.dtype]],
                  generator: torch.Generator) -> dict[str, torch.Tensor]:
    """key -> (shape, dtype) to seeded random tensors (normal, std 0.02; integer buffers: arange)."""
    out = {}
    for key, (shape, own_dtype) in shapes.items():
        if own_dtype.is_floating_point:
            tensor = torch.empty(shape, dtype=torch.float32).normal_(0.0, 0.02, generator=generator)
            out[key] = tensor.to(own_dtype)
        else:  # e.g. BERT's position_ids: the values the model itself registers
            out[key] = torch.arange(shape[-1], dtype=own_dtype).expand(shape).clone()
    return out


def _shapes(module: nn.Module, skip=lambda key: False) -> dict[str, tuple[torch.Size, torch.dtype]]:
    return {k: (v.shape, v.dtype) for k, v in module.state_dict().items() if not skip(k)}


def write_vocab(target: Path, vocab_size: int) -> None:
    """The tiny BERT vocabulary (point-text tokens and specials) padded with `[unusedN]` to
    `vocab_size` tokens, so the Q-Former's embedding table has the real number of rows."""
    tokens = (TINY_ASSETS / "bert" / "vocab.txt").read_text().splitlines()
    tokens += [f"[unused{i}]" for i in range(vocab_size - len(tokens))]
    (target / "vocab.txt").write_text("\n".join(tokens[:vocab_size]) + "\n")


Shapes = dict[str, tuple[torch.Size, torch.dtype]]


def plan_checkpoint_set(
    folder: str | Path,
    *,
    image_size: int = 364,
    vit: dict | None = None,
    bert: dict | None = None,
    t5_config: str | Path | dict = FLAN_T5_CONFIGS / "xl" / "config.json",
    num_query_token: int = 32,
    cross_attention_freq: int = 2,
    vit_dtype: torch.dtype = torch.float16,
    max_shard_size: str | int = "10GB",
) -> dict[str, Shapes]:
    """Write the set's small text files (configs, vocabularies, tokenizer, T5 shard index) into
    `folder` and return what each weight file will hold: relative path -> {key: (shape, dtype)}.
    Files whose name ends in `.pth` and is not the ViT's are saved as `{"model": state_dict}`.

    Args:
        vit: EVA ViT dims (`patch_size`, `embed_dim`, `depth`, `num_heads`, `mlp_ratio`);
            default EVA ViT-g.
        bert: BERT config keys over the tiny BERT's (`hidden_size`, `vocab_size`, ...);
            default BERT-base.
        t5_config: a T5 `config.json` path or dict (`FLAN_T5_CONFIGS / "xl" / "config.json"`).
        vit_dtype: dtype of the ViT file (half, as `eva_vit_g.pth`).
        max_shard_size: T5 shard limit, as `save_pretrained`'s (HF's "10GB" default).
    """
    from lavis.models.eva_vit import VisionTransformer
    from transformers import BertConfig, BertForPreTraining
    from transformers.modeling_utils import shard_checkpoint

    from lavis_regionvlm.models.blip2_t5_region import Blip2T5Region, is_text_branch_key

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vit = dict(EVA_VIT_G if vit is None else vit)
    plan: dict[str, Shapes] = {}

    # BERT folder (stands for bert-base-uncased)
    bert_dir = folder / "bert"
    bert_dir.mkdir(exist_ok=True)
    bert_config = {**json.loads((TINY_ASSETS / "bert" / "config.json").read_text()),
                   **(BERT_BASE if bert is None else bert)}
    (bert_dir / "config.json").write_text(json.dumps(bert_config, indent=2))
    shutil.copy(TINY_ASSETS / "bert" / "tokenizer_config.json", bert_dir)
    write_vocab(bert_dir, bert_config["vocab_size"])
    with meta_device():
        # the LM head's decoder is tied to the word embeddings: stored once, as in bert-base-uncased
        plan["bert/pytorch_model.bin"] = _shapes(BertForPreTraining(BertConfig(**bert_config)),
                                                 skip=lambda k: k == "cls.predictions.decoder.weight")

    # T5 folder: config and the tiny tokenizer
    t5_dir = folder / "t5"
    t5_dir.mkdir(exist_ok=True)
    config = t5_config if isinstance(t5_config, dict) else json.loads(Path(t5_config).read_text())
    (t5_dir / "config.json").write_text(json.dumps(config, indent=2))
    for path in (TINY_ASSETS / "t5").iterdir():
        if path.name != "config.json":
            shutil.copy(path, t5_dir / path.name)

    # ViT file at 224 px
    with meta_device():
        vit_file_model = VisionTransformer(
            img_size=VIT_FILE_IMAGE_SIZE, use_mean_pooling=False, qkv_bias=True,
            norm_layer=partial(nn.LayerNorm, eps=1e-6), **vit,
        )
    plan["eva_vit.pth"] = {k: (shape, vit_dtype) for k, (shape, _) in _shapes(vit_file_model).items()}

    # the whole model on meta: the keys and shapes of T5 and of the Q-Former files
    with meta_device():
        template = Blip2T5Region(
            vit_model="eva_vit", img_size=image_size, vit_config=vit, vit_precision="fp32",
            num_query_token=num_query_token, qformer_bert=str(bert_dir), qformer_init="random",
            cross_attention_freq=cross_attention_freq, t5_model=str(t5_dir), t5_init="random",
            t5_precision="fp32", train_word_embeddings="all", init_seed=None,
        )
    t5_keys = _shapes(template.t5_model, skip=lambda k: k.endswith("embed_tokens.weight"))  # tied to `shared`
    shards, index = shard_checkpoint(_meta_placeholders(t5_keys), max_shard_size=max_shard_size)
    for name, shard in shards.items():
        plan[f"t5/{name}"] = {k: t5_keys[k] for k in shard}
    if index is not None:
        (t5_dir / "pytorch_model.bin.index.json").write_text(json.dumps(index, indent=2))

    trainable = _shapes(template, skip=lambda k: k.startswith(("visual_encoder.", "t5_model.")))
    # stage 1: the whole Q-Former (LM head included) and the stage-1 heads, no t5_proj
    with meta_device():
        stage1_qformer = _stage1_qformer(template, bert_config, vit["embed_dim"], num_query_token,
                                         cross_attention_freq)
    stage1 = {k: v for k, v in trainable.items() if not k.startswith("t5_proj.")}
    stage1.update({f"Qformer.{k}": v for k, v in _shapes(stage1_qformer).items() if k.startswith("cls.")})
    hidden = bert_config["hidden_size"]
    for head, width in STAGE1_HEADS.items():
        stage1[f"{head}.weight"] = (torch.Size([width, hidden]), torch.float32)
        stage1[f"{head}.bias"] = (torch.Size([width]), torch.float32)
    stage1["temp"] = (torch.Size([]), torch.float32)
    plan["stage1.pth"] = stage1
    # stage 2: no text branch (Blip2T5 deletes it)
    plan["stage2.pth"] = {k: v for k, v in trainable.items() if not is_text_branch_key(k)}
    # released-style RegionVLM file: Q-Former with its text branch, queries, projection, ln_vision
    plan["regionvlm.pth"] = dict(trainable)
    return plan


def planned_bytes(plan: dict[str, Shapes]) -> dict[str, int]:
    """Bytes of tensor data each planned file will hold (the file adds a few KB)."""
    return {name: sum(shape.numel() * dtype.itemsize for shape, dtype in shapes.values())
            for name, shapes in plan.items()}


def write_checkpoint_set(folder: str | Path, seed: int = 0, **plan_kwargs) -> dict[str, str]:
    """Write the set into `folder` (see `plan_checkpoint_set` for the arguments) with seeded
    random values, one file in memory at a time; return {"vit_weights", "bert", "t5_model",
    "stage1", "stage2", "regionvlm"} -> path. At the defaults (EVA ViT-g at 364 px, BERT-base
    Q-Former, FlanT5-XL) about 17 GB, the largest file (the first T5 shard) 9.4 GB."""
    folder = Path(folder)
    plan = plan_checkpoint_set(folder, **plan_kwargs)
    generator = torch.Generator().manual_seed(seed)
    for name, shapes in plan.items():
        state = _random_state(shapes, generator)
        wrapped = name.endswith(".pth") and name != "eva_vit.pth"
        torch.save({"model": state} if wrapped else state, folder / name)
        del state
    return {"vit_weights": str(folder / "eva_vit.pth"), "bert": str(folder / "bert"),
            "t5_model": str(folder / "t5"), "stage1": str(folder / "stage1.pth"),
            "stage2": str(folder / "stage2.pth"), "regionvlm": str(folder / "regionvlm.pth")}


def _meta_placeholders(shapes: dict[str, tuple[torch.Size, torch.dtype]]) -> dict[str, torch.Tensor]:
    """Meta tensors of the given shapes: enough for `shard_checkpoint` to plan the shards."""
    return {k: torch.empty(shape, dtype=dtype, device="meta") for k, (shape, dtype) in shapes.items()}


def _stage1_qformer(template, bert_config: dict, vision_width: int, num_query_token: int,
                    cross_attention_freq: int) -> nn.Module:
    """LAVIS's stage-1 Q-Former (with its LM head), sized as the template's, on the current device."""
    from lavis.models.blip2_models.Qformer import BertConfig, BertLMHeadModel

    config = BertConfig(**bert_config)
    config.encoder_width = vision_width
    config.add_cross_attention = True
    config.cross_attention_freq = cross_attention_freq
    config.query_length = num_query_token
    qformer = BertLMHeadModel(config)
    qformer.resize_token_embeddings(template.Qformer.bert.embeddings.word_embeddings.num_embeddings)
    return qformer


def file_bytes(paths: dict[str, str]) -> dict[str, int]:
    """Bytes on disk of each entry of `write_checkpoint_set`'s result (folders summed)."""
    out = {}
    for name, path in paths.items():
        p = Path(path)
        out[name] = sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir() else p.stat().st_size
    return out
