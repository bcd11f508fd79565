"""`lean_load`: the ViT and T5 built on the meta device and streamed from memory-mapped files
give the same model as the standard path (LAVIS's: random float32 build, whole-file reads,
casts), bit for bit, with the same load report.

The checkpoint set is LAVIS's layout at a small size (`checkpoint_files.write_checkpoint_set`):
a half-precision EVA ViT file at 224 px (interpolated to the model's 64 px), a BERT folder, a
sharded float32 T5 folder, BLIP-2 stage-1 and stage-2 files and a released-style RegionVLM file.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import shutil

import pytest
import torch
from omegaconf import OmegaConf

from lavis_regionvlm.models import Blip2T5Region
from lavis_regionvlm.models.checkpoint_files import TINY_ASSETS, write_checkpoint_set
from lavis_regionvlm.models.checkpoints import CheckpointError

VIT = {"patch_size": 8, "embed_dim": 96, "depth": 2, "num_heads": 4, "mlp_ratio": 2.0}
BERT = {"hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 256,
        "vocab_size": 350, "max_position_embeddings": 128}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lavis_layout")
    t5_config = json.loads((TINY_ASSETS / "t5" / "config.json").read_text())
    paths = write_checkpoint_set(folder, image_size=64, vit=VIT, bert=BERT, t5_config=t5_config,
                                 num_query_token=8, cross_attention_freq=1, max_shard_size="1MB")
    assert (folder / "t5" / "pytorch_model.bin.index.json").exists()  # sharded, as FlanT5-XL
    # legacy (non-zip) copies, which cannot be memory-mapped
    for name in ("vit_weights", "stage2"):
        legacy = folder / f"legacy_{name}.pth"
        torch.save(torch.load(paths[name], weights_only=True), legacy, _use_new_zipfile_serialization=False)
        paths[f"legacy_{name}"] = str(legacy)
    return paths


def model_config(files, lean: bool, kind: str, legacy: bool = False) -> dict:
    config = dict(
        arch="blip2_t5_region", model_type="test", vit_model="eva_vit", vit_config=VIT,
        vit_weights=files["legacy_vit_weights" if legacy else "vit_weights"], image_size=64,
        vit_precision="fp16", num_query_token=8, qformer_bert=files["bert"], qformer_init="pretrained",
        cross_attention_freq=1, t5_model=files["t5_model"], t5_init="pretrained", t5_precision="bf16",
        lean_load=lean,
    )
    if kind == "pretrain":  # as pretrain_flant5xl: stage 2, then the stage-1 text branch
        config.update(load_finetuned=False, load_pretrained=True, text_branch_pretrained=files["stage1"],
                      pretrained=files["legacy_stage2" if legacy else "stage2"])
    else:  # as regionvlm_flant5xl: the released-style file
        config.update(load_finetuned=True, finetuned=files["regionvlm"])
    return config


class LoadSpy:
    """Records how every checkpoint file is read, and whether T5's `from_pretrained` runs."""

    def __init__(self, monkeypatch):
        from lavis.models.blip2_models.modeling_t5 import T5ForConditionalGeneration

        self.reads: dict[str, bool] = {}
        self.from_pretrained = 0
        real_load, real_from_pretrained = torch.load, T5ForConditionalGeneration.from_pretrained.__func__

        def load(path, *args, **kwargs):
            self.reads[str(path)] = bool(kwargs.get("mmap"))
            return real_load(path, *args, **kwargs)

        def from_pretrained(cls, *args, **kwargs):
            self.from_pretrained += 1
            return real_from_pretrained(cls, *args, **kwargs)

        monkeypatch.setattr(torch, "load", load)
        monkeypatch.setattr(T5ForConditionalGeneration, "from_pretrained", classmethod(from_pretrained))


@pytest.mark.parametrize("kind, legacy", [("pretrain", False), ("finetuned", False), ("pretrain", True)])
def test_lean_load_gives_the_standard_model_bit_for_bit(files, kind, legacy, monkeypatch, caplog):
    standard = Blip2T5Region.from_config(OmegaConf.create(model_config(files, False, kind, legacy)))
    spy = LoadSpy(monkeypatch)
    with caplog.at_level(logging.INFO, logger="lavis_regionvlm.models.checkpoints"):
        lean = Blip2T5Region.from_config(OmegaConf.create(model_config(files, True, kind, legacy)))

    # the lean path really ran: no float32 T5 from from_pretrained, every zip file mapped
    assert spy.from_pretrained == 0
    shards = [p for p in spy.reads if "pytorch_model-" in p]
    assert len(shards) > 1 and all(spy.reads[p] for p in shards)
    for path, mapped in spy.reads.items():
        if "/bert/" not in path:  # the Q-Former is built as usual (BERT's from_pretrained reads its file)
            assert mapped == ("legacy_" not in path), path
    if legacy:
        assert "legacy (non-zip) torch file: read whole, not memory-mapped" in caplog.text

    # same weights, dtypes and buffers (the non-persistent ones included), nothing left on meta
    ours, theirs = lean.state_dict(), standard.state_dict()
    assert list(ours) == list(theirs)
    for key in theirs:
        assert ours[key].dtype == theirs[key].dtype, key
        assert torch.equal(ours[key], theirs[key]), key
    buffers = dict(lean.named_buffers(remove_duplicate=False))
    assert buffers.keys() == dict(standard.named_buffers(remove_duplicate=False)).keys()
    for name, buffer in standard.named_buffers(remove_duplicate=False):
        assert torch.equal(buffers[name], buffer), name
    assert not [n for n, t in [*lean.named_parameters(), *lean.named_buffers()] if t.device.type != "cpu"]
    # final dtypes as LAVIS runs them: ViT linear layers fp16, its norms fp32, T5 bf16, Q-Former fp32
    assert lean.visual_encoder.blocks[0].mlp.fc1.weight.dtype == torch.float16
    assert lean.visual_encoder.blocks[0].norm1.weight.dtype == torch.float32
    assert {p.dtype for p in lean.t5_model.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in lean.Qformer.parameters()} == {torch.float32}
    # T5's tied embeddings stay one tensor
    assert lean.t5_model.encoder.embed_tokens.weight is lean.t5_model.shared.weight

    # same modes, trainable flags and load report
    modes = {n: m.training for n, m in standard.named_modules()}
    assert {n: m.training for n, m in lean.named_modules()} == modes
    flags = {n: p.requires_grad for n, p in standard.named_parameters()}
    assert {n: p.requires_grad for n, p in lean.named_parameters()} == flags
    assert dataclasses.asdict(lean.load_report) == dataclasses.asdict(standard.load_report)
    assert lean.load_report.sources  # a real report, not two empty ones

    # and it runs the same
    image = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    samples = {"image": image, "region_text": ["[1 2] [3 4]"], "text_output": ["a dog"]}
    standard.visual_encoder.float(), lean.visual_encoder.float()  # fp16 matmuls need a GPU
    assert torch.equal(lean.score(samples), standard.score(samples))


def test_lean_load_names_weights_the_files_lack(files, tmp_path):
    t5 = tmp_path / "t5"
    shutil.copytree(files["t5_model"], t5)
    index = json.loads((t5 / "pytorch_model.bin.index.json").read_text())
    shard = t5 / index["weight_map"]["lm_head.weight"]
    state = torch.load(shard, weights_only=True)
    del state["lm_head.weight"]
    torch.save(state, shard)
    config = {**model_config(files, True, "finetuned"), "t5_model": str(t5)}
    with pytest.raises(CheckpointError, match=r"lean_load: 1 T5 tensors are in none of .*'lm_head.weight'"):
        Blip2T5Region.from_config(OmegaConf.create(config))


def test_fp16_t5_is_refused_before_building(tiny_config, monkeypatch):
    from lavis_regionvlm.models import builders

    monkeypatch.setattr(builders, "build_bert_tokenizer", lambda *a: pytest.fail("built before refusing"))
    with pytest.raises(ValueError, match=r"t5_precision 'fp16' is refused: FlanT5 overflows in float16.*"
                                         r"'fp32' on GPUs without bfloat16 \(T4, V100\)"):
        Blip2T5Region.from_config(OmegaConf.merge(tiny_config.model, {"t5_precision": "fp16"}))


LAVIS_KEYS = {"arch", "model_type", "load_finetuned", "load_pretrained", "pretrained", "finetuned",
              "text_branch_pretrained", "image_size"}


@pytest.mark.parametrize("model_type, t5", [("pretrain_flant5xl", "google/flan-t5-xl"),
                                            ("regionvlm_flant5xl", "google/flan-t5-xl"),
                                            ("pretrain_flant5xxl", "google/flan-t5-xxl"),
                                            ("regionvlm_flant5xxl", "google/flan-t5-xxl")])
def test_full_size_model_types_load_leanly(model_type, t5):
    cfg = OmegaConf.load(Blip2T5Region.default_config_path(model_type)).model
    arguments = Blip2T5Region.config_arguments()
    assert not set(cfg) - arguments - LAVIS_KEYS  # from_config refuses any other key
    assert cfg.model_type == model_type and cfg.t5_model == t5
    assert cfg.lean_load is True and cfg.t5_precision == "bf16" and cfg.vit_precision == "fp16"
    if model_type == "pretrain_flant5xxl":
        assert cfg.pretrained.endswith("/blip2_pretrained_flant5xxl.pth")  # LAVIS's stage-2 XXL file
