"""`blip2_t5_region`: region-conditioned queries, stock parity, gradients, scoring, errors."""
import math

import pytest
import torch
from lavis.models.blip2_models.blip2_t5 import Blip2T5
from omegaconf import OmegaConf
from torch import nn

from lavis_regionvlm.models import Blip2T5Region
from lavis_regionvlm.models.blip2_t5_region import is_text_branch_key

POINTS_A = "[10 10] [12 14] [15 11]"
POINTS_B = "[80 85] [90 88] [85 95]"


def build(tiny_config, **overrides) -> Blip2T5Region:
    cfg = OmegaConf.merge(tiny_config.model, overrides)
    return Blip2T5Region.from_config(cfg)


def stock_blip2_t5_sharing(model: Blip2T5Region) -> Blip2T5:
    """A stock LAVIS `Blip2T5` that runs on the very modules of `model`.

    Its constructor downloads bert-base-uncased and EVA ViT-g, so the instance is made
    without it and given the same parts; its forward/generate are LAVIS's own code.
    """
    stock = Blip2T5.__new__(Blip2T5)
    nn.Module.__init__(stock)
    for name in ("visual_encoder", "ln_vision", "Qformer", "query_tokens", "t5_model", "t5_proj"):
        setattr(stock, name, getattr(model, name))
    stock.tokenizer, stock.t5_tokenizer = model.tokenizer, model.t5_tokenizer
    stock.prompt, stock.max_txt_len = model.prompt, model.max_txt_len
    stock._apply_lemmatizer, stock._lemmatizer = False, None
    return stock.eval()


def test_region_text_changes_the_query_outputs(tiny_model, images):
    image_embeds = tiny_model.encode_image(images[:1]).expand(3, -1, -1)
    z = tiny_model.query_outputs(image_embeds, [POINTS_A, POINTS_B, POINTS_A])
    assert z.shape == (3, 8, 128)
    assert not torch.allclose(z[0], z[1], atol=1e-4)
    assert torch.equal(z[0], z[2])


def test_region_text_is_truncated_at_region_max_len(tiny_model, images):
    """With the released limit of 32 BERT tokens ([CLS] + 30 + [SEP], 4 tokens a point),
    only 7 points and the first number of the 8th reach the Q-Former."""
    seven = " ".join(f"[{10 + i} {20 + i}]" for i in range(7))
    image_embeds = tiny_model.encode_image(images[:1]).expand(2, -1, -1)
    z = tiny_model.query_outputs(image_embeds, [seven + " [50 50] [60 60]", seven + " [50 1] [2 98]"])
    assert torch.allclose(z[0], z[1], atol=1e-6)
    z = tiny_model.query_outputs(image_embeds, [seven + " [50 50]", seven + " [51 50]"])
    assert not torch.allclose(z[0], z[1], atol=1e-4)


def test_global_query_only_mode_equals_stock_blip2_t5(tiny_config, images):
    model = build(tiny_config, global_region_mode="query_only").eval()
    stock = stock_blip2_t5_sharing(model)
    samples = {"image": images, "text_input": ["", "what colour?"], "text_output": ["a red disc", "blue"]}
    ours = model({**samples, "region_text": ["", ""]})["loss"]
    theirs = stock(dict(samples))["loss"]
    assert torch.equal(ours, theirs)
    gen = dict(num_beams=3, max_length=8, min_length=1)
    assert model.generate({"image": images, "region_text": ["", ""]}, **gen) == stock.generate(
        {"image": images}, **gen
    )


def test_training_t5_gets_the_gradients_of_stock_blip2_t5_bit_for_bit(tiny_config, images):
    """With T5 training (the quick start's `freeze_t5: False`), the gradient of T5's shared
    embedding equals stock LAVIS's: the text is embedded in one call on the padded id matrix,
    so its gradient sums in the same order (embedding each row apart moved it by 1.5e-8, and
    the quick start's numbers with it)."""
    model = build(tiny_config, global_region_mode="query_only", freeze_t5=False, dropout=0.0).train()
    stock = stock_blip2_t5_sharing(model).train()
    samples = {"image": torch.cat([images, images.flip(-1)]),
               "text_input": ["", "what is it?", "", "a long prompt with several words"],
               "text_output": ["a red circle", "a blue square on the left", "dog", "the green triangle at the top"]}
    model({**samples, "region_text": [""] * 4})["loss"].backward()
    ours = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    stock(dict(samples))["loss"].backward()
    theirs = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert "t5_model.shared.weight" in ours and ours.keys() == theirs.keys()
    assert all(torch.equal(ours[n], theirs[n]) for n in ours), [n for n in ours if not torch.equal(ours[n], theirs[n])]


def test_global_empty_text_mode_runs_bert_cls_sep(tiny_config, images):
    """The released training encodes a global sample with [CLS][SEP]: not the stock pass."""
    query_only = build(tiny_config, global_region_mode="query_only").eval()
    empty_text = build(tiny_config, global_region_mode="empty_text").eval()
    embeds = query_only.encode_image(images)
    assert not torch.allclose(
        query_only.query_outputs(embeds, ["", ""]), empty_text.query_outputs(embeds, ["", ""])
    )
    tokens = empty_text.tokenizer([""]).input_ids[0]
    assert tokens == [empty_text.tokenizer.cls_token_id, empty_text.tokenizer.sep_token_id]


def test_mixed_global_and_region_rows_match_separate_passes(tiny_config, images):
    model = build(tiny_config, global_region_mode="query_only").eval()
    embeds = model.encode_image(images)
    mixed = model.query_outputs(embeds, ["", POINTS_A])
    assert torch.allclose(mixed[0], model.query_outputs(embeds[:1], [""])[0], atol=1e-6)
    assert torch.allclose(mixed[1], model.query_outputs(embeds[1:], [POINTS_A])[0], atol=1e-6)


def test_gradients_reach_the_text_branch_and_never_vit_or_t5(tiny_config, images):
    model = build(tiny_config).train()
    loss = model({
        "image": images, "region_text": [POINTS_A, POINTS_B],
        "text_input": ["", ""], "text_output": ["a red disc", "a blue square"],
    })["loss"]
    loss.backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    # Only the point-text rows of the word embeddings train (point_embeddings.py).
    assert grads["Qformer.bert.embeddings.word_embeddings.weight"] is None
    text_branch = [n for n, p in model.named_parameters() if is_text_branch_key(n) and p.requires_grad]
    assert "Qformer.bert.embeddings.word_embeddings.trainable_rows" in text_branch
    assert any(".intermediate." in n for n in text_branch)
    # Point-token outputs are dropped after the last layer, so that layer's text
    # feed-forward gets exactly zero gradient; every other text weight learns.
    last = f".layer.{model.Qformer.config.num_hidden_layers - 1}."
    for name in text_branch:
        if last in name:
            assert grads[name] is not None and grads[name].abs().sum() == 0, name
        else:
            assert grads[name] is not None and grads[name].abs().sum() > 0, name
    assert grads["query_tokens"].abs().sum() > 0
    assert grads["t5_proj.weight"].abs().sum() > 0
    frozen = [n for n in grads if n.startswith(("visual_encoder.", "t5_model."))]
    assert frozen and all(grads[n] is None for n in frozen)
    assert all(not p.requires_grad for n, p in model.named_parameters() if n in frozen)


def test_score_is_mean_token_nll_without_padding(tiny_model, images):
    texts = ["a red disc", "a blue square at the bottom right of the picture"]
    batch = tiny_model.score({"image": images, "region_text": [POINTS_A, POINTS_B], "text_output": texts})
    assert batch.shape == (2,) and torch.isfinite(batch).all()
    # Alone (no padding at all) each pair has the same loss as in the padded batch,
    # and equals the forward loss of that single pair.
    for i in range(2):
        single = {"image": images[i : i + 1], "region_text": [[POINTS_A, POINTS_B][i]],
                  "text_output": [texts[i]], "text_input": [""]}
        assert tiny_model.score(single)[0] == pytest.approx(float(batch[i]), rel=1e-5)
        with torch.no_grad():
            loss = float(tiny_model(single)["loss"])
        assert loss == pytest.approx(float(batch[i]), rel=1e-5)


def test_scoring_many_regions_reuses_one_image_embedding(tiny_model, images):
    embeds = tiny_model.encode_image(images[:1])
    regions = [POINTS_A, POINTS_B, ""]
    cached = tiny_model.score_regions(
        embeds, regions, ["red", "red", "red"], image_index=torch.zeros(3, dtype=torch.long)
    )
    direct = tiny_model.score({
        "image": images[:1].expand(3, -1, -1, -1), "region_text": regions, "text_output": ["red"] * 3,
    })
    assert torch.allclose(cached, direct, atol=1e-5)


def test_generate_and_predict_answers_with_and_without_region(tiny_model, images):
    captions = tiny_model.generate({"image": images, "region_text": [POINTS_A, ""]}, num_beams=2, max_length=6)
    assert len(captions) == 2 and all(isinstance(c, str) for c in captions)
    answers = tiny_model.predict_answers(
        {"image": images, "text_input": ["what colour?", "where?"], "region_text": [POINTS_A, ""]},
        prompt="Question: {} Short answer:", max_len=4, num_beams=2,
    )
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)


def test_rank_inference_picks_the_lowest_loss_candidate(tiny_model, images):
    candidates = ["red", "blue square", "a green triangle"]
    sample = {"image": images[:1], "text_input": ["what?"], "region_text": [POINTS_A]}
    (ranked,) = tiny_model.predict_answers(sample, inference_method="rank", answer_list=candidates)
    losses = tiny_model.score_regions(
        tiny_model.encode_image(images[:1]), [POINTS_A] * 3, candidates, ["what?"] * 3,
        image_index=torch.zeros(3, dtype=torch.long),
    )
    assert ranked == candidates[int(losses.argmin())]


def test_tiny_model_is_reproducible_and_small(tiny_config, tiny_model):
    again = build(tiny_config)
    for (name, a), (_, b) in zip(tiny_model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), name
    size_mb = sum(p.numel() * p.element_size() for p in again.parameters()) / 2**20
    assert size_mb < 16


@pytest.mark.parametrize(
    "samples, error, message",
    [
        ({"image": torch.zeros(1, 3, 64, 64)}, KeyError, "lacks ['text_input', 'text_output']"),
        ({"image": torch.zeros(3, 64, 64), "text_input": [""], "text_output": ["x"]},
         ValueError, "(B, 3, H, W)"),
        ({"image": torch.zeros(1, 3, 64, 64), "region_text": ["[0.3, 0.6]"], "text_input": [""],
          "text_output": ["x"]}, ValueError, "region_text'][0] = '[0.3, 0.6]' is not point text"),
        ({"image": torch.zeros(2, 3, 64, 64), "region_text": ["[1 2]"], "text_input": ["", ""],
          "text_output": ["x", "y"]}, ValueError, "has 1 entries for a batch of 2"),
        ({"image": torch.zeros(1, 3, 64, 64), "text_input": [""], "text_output": [3]},
         TypeError, "must hold strings"),
        ("not a dict", TypeError, "samples must be a dict"),
    ],
)
def test_bad_model_inputs_give_clear_errors(tiny_model, samples, error, message):
    with pytest.raises(error) as info:
        tiny_model(samples)
    assert message in str(info.value)


def test_bad_config_values_give_clear_errors(tiny_config):
    with pytest.raises(ValueError, match="global_region_mode must be one of"):
        build(tiny_config, global_region_mode="none")
    with pytest.raises(ValueError, match="REGIONVLM_CHECKPOINT"):
        build(tiny_config, load_finetuned=True, finetuned=None)
    with pytest.raises(ValueError, match="vit_config with"):
        build(tiny_config, vit_config=None)
    with pytest.raises(ValueError, match="inference_method must be"):
        build(tiny_config).predict_answers(
            {"image": torch.zeros(1, 3, 64, 64), "text_input": ["q"]}, inference_method="beam"
        )


def test_loss_is_finite(tiny_model, images):
    loss = tiny_model({"image": images, "region_text": [POINTS_A, ""], "text_input": ["", ""],
                       "text_output": ["a", "b"]})["loss"]
    assert math.isfinite(float(loss))


def test_an_unknown_model_config_key_is_refused_with_the_closest_known_one(tiny_config):
    """A typo in a model YAML used to be dropped silently (the model then ran without it)."""
    bad = OmegaConf.merge(tiny_config.model, {"max_prompt_token": 32, "zzz": 1})
    with pytest.raises(ValueError, match=r"unknown keys: 'max_prompt_token' \(did you mean 'max_prompt_tokens'\?\), 'zzz'"):
        Blip2T5Region.from_config(bad)
