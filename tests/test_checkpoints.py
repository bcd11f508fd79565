"""Loading checkpoints laid out like LAVIS's real BLIP-2 files, and refusing unsafe ones."""
import argparse

import pytest
import torch
from omegaconf import OmegaConf

from lavis_regionvlm.models import Blip2T5Region
from lavis_regionvlm.models.blip2_t5_region import is_text_branch_key
from lavis_regionvlm.models.checkpoints import CheckpointError


@pytest.fixture(scope="module")
def released_files(tmp_path_factory, tiny_config):
    """Files shaped like LAVIS's: eva_vit_g.pth (bare ViT state dict), a T5 hub folder,
    the stage-2 FlanT5 checkpoint (no Q-Former text branch, no T5) and the stage-1
    checkpoint (Q-Former with text branch and LM head, plus stage-1-only heads; its
    shared weights differ from stage-2's, as after stage-2 training)."""
    root = tmp_path_factory.mktemp("lavis_files")
    source = Blip2T5Region.from_config(OmegaConf.merge(tiny_config.model, {"init_seed": 7}))
    state = source.state_dict()
    torch.save(source.visual_encoder.state_dict(), root / "eva_vit_g.pth")
    source.t5_model.save_pretrained(root / "flan-t5")
    source.t5_tokenizer.save_pretrained(root / "flan-t5")
    stage2 = {k: v for k, v in state.items() if not k.startswith("t5_model.") and not is_text_branch_key(k)}
    torch.save({"model": stage2}, root / "blip2_pretrained_flant5.pth")
    stage1 = {k: (v if is_text_branch_key(k) else v + 1.0) for k, v in state.items()
              if k.startswith("Qformer.") or k.startswith("visual_encoder.")}
    stage1["Qformer.cls.predictions.bias"] = torch.zeros(10)
    stage1["vision_proj.weight"] = torch.zeros(4, 4)
    torch.save({"model": stage1}, root / "blip2_pretrained.pth")
    return source, root


def model_config(tiny_config, root, **overrides):
    return OmegaConf.merge(tiny_config.model, {
        "init_seed": 123,  # different random init: every matching weight must come from files
        "vit_weights": str(root / "eva_vit_g.pth"),
        "t5_model": str(root / "flan-t5"), "t5_init": "pretrained",
        "load_finetuned": False, "load_pretrained": True,
        "pretrained": str(root / "blip2_pretrained_flant5.pth"),
        "text_branch_pretrained": str(root / "blip2_pretrained.pth"),
    }, overrides)


def test_every_weight_lands_from_stage2_stage1_vit_and_t5_files(released_files, tiny_config):
    source, root = released_files
    model = Blip2T5Region.from_config(model_config(tiny_config, root))
    expected = source.state_dict()
    for key, value in model.state_dict().items():
        assert torch.equal(value, expected[key]), key
    report = model.load_report
    assert sorted(report.sources["stage-1 text branch"]) == sorted(
        k for k in expected if is_text_branch_key(k)
    )
    assert not any(is_text_branch_key(k) for k in report.sources["stage-2 checkpoint"])
    assert report.missing == [] and report.unexpected == [] and report.mismatched == []


def test_without_stage1_the_text_branch_is_reported_missing(released_files, tiny_config):
    source, root = released_files
    model = Blip2T5Region.from_config(model_config(tiny_config, root, text_branch_pretrained=None))
    # The frozen rest of the word-embedding table is never read by point text; the rows
    # that are (`trainable_rows`) are reported with the rest of the text branch.
    text_keys = sorted(k for k in model.state_dict() if is_text_branch_key(k) and k not in model.frozen_keys())
    assert "Qformer.bert.embeddings.word_embeddings.trainable_rows" in text_keys
    assert model.load_report.missing == text_keys
    assert "missing (" in model.load_report.summary()


def test_a_checkpoint_of_the_wrong_shape_is_refused_with_the_key(released_files, tiny_config, tmp_path):
    source, root = released_files
    stage1 = torch.load(root / "blip2_pretrained.pth", weights_only=True)["model"]
    key = "Qformer.bert.embeddings.word_embeddings.weight"
    stage1[key] = stage1[key][:-1]  # a vocabulary without BLIP-2's [DEC] row
    torch.save({"model": stage1}, tmp_path / "stage1.pth")
    with pytest.raises(RuntimeError, match="word_embeddings.weight: \\(350, 128\\) vs \\(351, 128\\)"):
        Blip2T5Region.from_config(
            model_config(tiny_config, root, text_branch_pretrained=str(tmp_path / "stage1.pth"))
        )


def test_a_trainable_only_checkpoint_restores_the_trained_weights(released_files, tiny_config, tmp_path):
    source, root = released_files
    trainable = {n: p.detach() for n, p in source.named_parameters() if p.requires_grad}
    torch.save({"model": trainable, "epoch": 3}, tmp_path / "checkpoint_3.pth")
    model = Blip2T5Region.from_config(model_config(
        tiny_config, root, load_finetuned=True, finetuned=str(tmp_path / "checkpoint_3.pth")
    ))
    own = model.state_dict()
    assert all(torch.equal(own[k], v) for k, v in trainable.items())
    assert model.load_report.missing == []


def test_a_checkpoint_with_python_objects_is_refused(tiny_model, tmp_path):
    path = tmp_path / "unsafe.pth"
    torch.save({"model": {}, "extra": argparse.Namespace(lr=0.1)}, path)
    with pytest.raises(CheckpointError, match="weights_only=True"):
        tiny_model.load_checkpoint(str(path))


def test_a_missing_checkpoint_file_is_a_clear_error(tiny_model):
    with pytest.raises(CheckpointError, match="neither a URL nor an existing file"):
        tiny_model.load_checkpoint("/nonexistent/blip2.pth")


def broken_checkpoints(root):
    """name -> (path, what the error must say) for every way a checkpoint file can be unusable."""
    torch.save({"model": {"w": torch.ones(4096)}}, root / "good.pth")
    whole = (root / "good.pth").read_bytes()
    (root / "empty.pth").write_bytes(b"")
    (root / "truncated.pth").write_bytes(whole[: len(whole) // 2])
    (root / "random.pth").write_bytes(bytes(range(7, 250)) * 20)
    torch.save({"model": {}, "extra": argparse.Namespace(lr=0.1)}, root / "unsafe.pth")
    (root / "folder.pth").mkdir()
    return {
        "empty": (root / "empty.pth", "is empty \\(0 bytes\\).*copy it again"),
        "truncated": (root / "truncated.pth", "is truncated or damaged.*copy it again"),
        "random bytes": (root / "random.pth", "is not a PyTorch checkpoint"),
        "unsafe": (root / "unsafe.pth", "holds Python objects besides tensors \\(argparse.Namespace\\)"),
        "a folder": (root / "folder.pth", "is a folder, not a checkpoint file"),
    }


@pytest.mark.parametrize("case", ["empty", "truncated", "random bytes", "unsafe", "a folder"])
def test_an_unusable_checkpoint_is_an_error_naming_the_file_and_the_problem(tiny_model, tmp_path, case):
    path, message = broken_checkpoints(tmp_path)[case]
    with pytest.raises(CheckpointError, match=message) as error:
        tiny_model.load_checkpoint(str(path))
    assert str(path) in str(error.value)
