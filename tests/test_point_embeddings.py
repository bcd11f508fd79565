"""Only the point-text rows of the Q-Former word embeddings train (models/point_embeddings.py).

The claim is that this computes the same thing as training the whole table, the released
code's way: the same losses, the same updates of the rows point text reads, and checkpoints
in the usual format both ways.
"""
import pytest
import torch
from omegaconf import OmegaConf

from lavis_regionvlm.models import Blip2T5Region
from lavis_regionvlm.models.point_embeddings import PointRowsEmbedding, point_text_token_ids

WORD_EMBEDDINGS = "Qformer.bert.embeddings.word_embeddings"
BATCH = {
    "region_text": ["[12 30] [15 33] [20 31]", "", "[80 75] [85 79] [100 0]"],
    "text_input": ["", "", ""],
    "text_output": ["a red circle", "a red circle, a blue square", "a blue square"],
}


def build(tiny_config, mode: str) -> Blip2T5Region:
    return Blip2T5Region.from_config(OmegaConf.merge(tiny_config.model, {
        "train_word_embeddings": mode, "freeze_vit": False, "freeze_t5": False, "dropout": 0.0,
    }))


def adamw_losses(model, images, steps: int = 3) -> list[float]:
    """Losses of `steps` AdamW steps (LAVIS's defaults: weight decay 0.05) on one batch."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.05)
    losses = []
    for _ in range(steps):
        loss = model({"image": images[[0, 1, 0]], **BATCH})["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def test_training_point_rows_only_equals_training_the_whole_table(tiny_config, images):
    torch.manual_seed(0)
    rows_only, whole = build(tiny_config, "point_text").train(), build(tiny_config, "all").train()
    assert adamw_losses(rows_only, images) == pytest.approx(adamw_losses(whole, images), rel=1e-5)
    ids = rows_only.Qformer.bert.embeddings.word_embeddings.trainable_ids
    whole_table = whole.Qformer.bert.embeddings.word_embeddings.weight.detach()
    trained = rows_only.Qformer.bert.embeddings.word_embeddings.trainable_rows.detach()
    assert not torch.equal(trained, build(tiny_config, "point_text").state_dict()[f"{WORD_EMBEDDINGS}.trainable_rows"])
    torch.testing.assert_close(trained, whole_table[ids], rtol=1e-5, atol=1e-6)


def test_only_point_text_rows_are_trainable(tiny_config):
    model = build(tiny_config, "point_text")
    trainable = {n: p.numel() for n, p in model.named_parameters() if p.requires_grad and "word_embeddings" in n}
    ids = point_text_token_ids(model.tokenizer)
    assert {"[", "]", "0", "57", "100", "[CLS]", "[SEP]", "[PAD]"} <= set(model.tokenizer.convert_ids_to_tokens(ids))
    width = model.Qformer.config.hidden_size
    assert trainable == {f"{WORD_EMBEDDINGS}.trainable_rows": len(ids) * width}
    assert len(ids) < 120 < model.Qformer.bert.embeddings.word_embeddings.num_embeddings


def test_tokens_outside_point_text_read_the_frozen_table(tiny_config):
    embedding = build(tiny_config, "point_text").Qformer.bert.embeddings.word_embeddings
    with torch.no_grad():
        embedding.trainable_rows.add_(1.0)
    point_id = int(embedding.trainable_ids[5])
    other_id = next(i for i in range(embedding.num_embeddings) if i not in set(embedding.trainable_ids.tolist()))
    out = embedding(torch.tensor([[point_id, other_id]]))
    torch.testing.assert_close(out[0, 0], embedding.weight[point_id] + 1.0)
    torch.testing.assert_close(out[0, 1], embedding.weight[other_id])


def test_state_dict_holds_the_full_table_with_the_trained_rows(tiny_config):
    model = build(tiny_config, "point_text")
    embedding = model.Qformer.bert.embeddings.word_embeddings
    with torch.no_grad():
        embedding.trainable_rows.mul_(-3.0)
    state = model.state_dict()
    torch.testing.assert_close(state[f"{WORD_EMBEDDINGS}.weight"][embedding.trainable_ids], embedding.trainable_rows)
    # A whole-table model reads the same embeddings from that state dict.
    whole = build(tiny_config, "all")
    whole.load_state_dict({k: v for k, v in state.items() if not k.endswith("trainable_rows")})
    ids = torch.tensor([[101, int(embedding.trainable_ids[7]), 4000 % embedding.num_embeddings]])
    torch.testing.assert_close(whole.Qformer.bert.embeddings.word_embeddings(ids), embedding(ids))


def test_a_whole_table_checkpoint_fills_the_trainable_rows(tiny_config, tmp_path):
    """Checkpoints that hold only `weight` (the released RegionVLM weights, our earlier
    checkpoints) load into the point-rows model with nothing reported missing."""
    whole = build(tiny_config, "all")
    with torch.no_grad():
        whole.Qformer.bert.embeddings.word_embeddings.weight.mul_(2.0)
    trainable = {n: p.detach() for n, p in whole.named_parameters() if p.requires_grad}
    torch.save({"model": trainable}, tmp_path / "whole.pth")
    model = build(tiny_config, "point_text")
    report = model.load_checkpoint(str(tmp_path / "whole.pth"))
    assert report.missing == [] and report.unexpected == []
    embedding = model.Qformer.bert.embeddings.word_embeddings
    torch.testing.assert_close(embedding.trainable_rows, trainable[f"{WORD_EMBEDDINGS}.weight"][embedding.trainable_ids])


def test_runner_style_checkpoints_hold_the_rows_and_resume_strictly(tiny_config):
    model = build(tiny_config, "point_text")
    with torch.no_grad():
        model.Qformer.bert.embeddings.word_embeddings.trainable_rows.add_(0.5)
    # LAVIS's runner drops frozen parameters from what it saves.
    saved = {k: v for k, v in model.state_dict().items() if k not in model.frozen_keys()}
    assert f"{WORD_EMBEDDINGS}.trainable_rows" in saved and f"{WORD_EMBEDDINGS}.weight" not in saved
    resumed = build(tiny_config, "point_text")
    resumed.load_state_dict(saved, strict=True)
    torch.testing.assert_close(
        resumed.Qformer.bert.embeddings.word_embeddings.trainable_rows,
        model.Qformer.bert.embeddings.word_embeddings.trainable_rows,
    )


def test_bad_settings_are_refused(tiny_config):
    with pytest.raises(ValueError, match="train_word_embeddings must be one of"):
        build(tiny_config, "some")
    with pytest.raises(ValueError, match="trainable ids must lie in"):
        PointRowsEmbedding(torch.nn.Embedding(10, 4), [3, 12])
