"""RegionPredictor on the tiny model: every call, region forms, seeding, and that the ViT
runs once per image however many region calls follow."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from lavis_regionvlm.interactive import NoImageError, RegionPredictor, as_region, image_sha256, load_image
from lavis_regionvlm.interactive.predictor import QUESTION_PROMPT
from lavis_regionvlm.regions import Region, RegionError
from lavis_regionvlm.regions.masks import mask_to_rle

FAST = {"num_beams": 2, "max_new_tokens": 3}


def _mask(h=48, w=80, box=(10, 5, 40, 30)):
    mask = np.zeros((h, w), bool)
    x1, y1, x2, y2 = box
    mask[y1:y2, x1:x2] = True
    return mask


@pytest.fixture(scope="module")
def predictor(random_image):
    p = RegionPredictor.from_pretrained("tiny", device="cpu")
    p.set_image(random_image())
    return p


def test_from_pretrained_takes_the_models_settings(predictor):
    assert predictor.settings == {"model_type": "tiny", "seed": 0, "num_points": 10, "quantize": "floor"}
    assert predictor.device.type == "cpu" and not predictor.model.training
    assert predictor.image_size == (80, 48)
    assert predictor.image_embeds.shape == (1, 65, 96)
    with pytest.raises(ValueError, match="unknown model type 'nope'.*known: .*'tiny'"):
        RegionPredictor.from_pretrained("nope")
    with pytest.raises(ValueError, match="'blip2_t5' is not a region model"):
        RegionPredictor.from_pretrained("pretrain_flant5xl", name="blip2_t5")


def test_calls_without_an_image_raise_a_clear_error(predictor):
    fresh = RegionPredictor(predictor.model, predictor.vis_processor)
    assert not fresh.is_image_set
    for call in (lambda: fresh.caption("[10 10]"), lambda: fresh.ask("what?"),
                 lambda: fresh.score("a", None), lambda: fresh.segment("x", [])):
        with pytest.raises(NoImageError, match="call predictor.set_image"):
            call()


def test_set_image_runs_the_vit_once_for_many_region_calls(random_image, predictor, vit_calls):
    predictor.set_image(random_image(1))
    assert len(vit_calls) == 1
    regions = ["[32 64] [37 62]", {"box": [0.1, 0.1, 0.5, 0.6]}, Region.from_mask(_mask()), None]
    predictor.caption(regions, **FAST)
    predictor.caption(regions[0], **FAST)
    predictor.ask("what is it?", regions, **FAST)
    predictor.ask("what is it?", **FAST)
    predictor.score(["a dog", "a cat"], regions)
    predictor.segment("the thing", [{"segmentation": mask_to_rle(_mask())}])
    assert len(vit_calls) == 1
    predictor.set_image(random_image(0))
    assert len(vit_calls) == 2


def test_every_region_form_is_accepted_and_equal_forms_give_equal_text(predictor):
    points = Region.from_points([[0.32, 0.64], [0.37, 0.62]])
    same = [points, {"points": [[0.32, 0.64], [0.37, 0.62]]}, '{"points": [[0.32, 0.64], [0.37, 0.62]]}']
    assert len({predictor.region_text(r) for r in same}) == 1
    assert len(predictor.region_text(points).split("] [")) == 10  # drawn: K = 10 points
    mask = _mask()
    forms = {
        "scribble": {"scribble": [[0.1, 0.1], [0.4, 0.5]]},
        "box": {"box": [8, 4, 40, 30], "image_size": [80, 48]},
        "mask": Region.from_mask(mask),
        "rle": {"rle": mask_to_rle(mask)},
    }
    texts = predictor.region_texts(list(forms.values()))
    assert all(len(t.split("] [")) == 10 for t in texts)  # K = 10 points each
    assert predictor.region_text(forms["mask"]) == predictor.region_text(forms["rle"])
    assert predictor.region_text(None) == "" and predictor.region_text("") == ""
    assert as_region(json.dumps(forms["rle"])) == Region.from_mask(mask)


def test_point_text_is_used_as_given_and_the_whole_image_works_in_a_list(predictor):
    # Redrawn it would be "[28 56] [28 56] ..." (0.29 * 100 = 28.999..., floored; repeated to K).
    assert predictor.region_text("[29 57] [58 14]") == "[29 57] [58 14]"
    assert predictor.region_texts(["[29 57] [58 14]", "", None, {"point_text": "[1 2]"}]) == \
        ["[29 57] [58 14]", "", "", "[1 2]"]
    whole, region = predictor.caption(["", "[29 57] [58 14]"], **FAST)
    assert whole == predictor.caption(None, **FAST) and region == predictor.caption("[29 57] [58 14]", **FAST)
    seen = predictor.attention_map(["[29 57] [58 14]", ""])
    assert [m.region_text for m in seen] == ["[29 57] [58 14]", ""]
    embeds = predictor.region_embeds(["[29 57] [58 14]"])
    expected = predictor.model.encode_regions(predictor.image_embeds, ["[29 57] [58 14]"],
                                              torch.zeros(1, dtype=torch.long))
    torch.testing.assert_close(embeds, expected)


def test_bad_regions_raise_region_errors_that_say_what_is_wrong(predictor):
    with pytest.raises(RegionError, match="invalid JSON at line 1 column"):
        predictor.caption('{"points": [[0.1, 0.2]')
    with pytest.raises(RegionError, match="exactly one of the keys"):
        predictor.caption({"pts": [[0.1, 0.2]]})
    with pytest.raises(RegionError, match="region 1: .*not point text"):
        predictor.caption(["[1 2]", "[1 2"])
    with pytest.raises(RegionError, match="expected a Region"):
        predictor.caption([3.5])


def test_points_are_seeded(predictor):
    box = {"box": [0.1, 0.1, 0.9, 0.9]}
    assert predictor.region_text(box) == predictor.region_text(box)
    other = predictor.with_settings(seed=1)
    assert other.region_text(box) != predictor.region_text(box)
    assert other.image_embeds is predictor.image_embeds  # same image state
    assert predictor.with_settings(quantize="round", num_points=3).region_text("[10 10] [20 20] [30 30]") == \
        "[10 10] [20 20] [30 30]"
    assert predictor.ask("what?", box, **FAST) == predictor.ask("what?", box, **FAST)


def test_caption_matches_the_models_own_generation_and_batches(predictor):
    regions = ["[32 64] [37 62]", {"box": [0.1, 0.1, 0.5, 0.6]}, None]
    batch = predictor.caption(regions, **FAST)
    assert isinstance(batch, list) and len(batch) == 3
    assert predictor.caption(regions[1], **FAST) == batch[1]
    embeds = predictor.region_embeds(regions)
    assert embeds.shape == (3, 8, 128)
    # the released `generate`: cat([Z, embed_tokens(t5_tokenizer("").input_ids)]) = [Z; </s>], Hugging Face's generate
    model = predictor.model
    with torch.inference_mode():
        eos = model.t5_model.encoder.embed_tokens(torch.tensor([model.t5_tokenizer.eos_token_id]))
        inputs = torch.cat([embeds, eos.expand(3, -1, -1)], dim=1)
        outputs = model.t5_model.generate(
            inputs_embeds=inputs, attention_mask=torch.ones(inputs.shape[:2], dtype=torch.long), **FAST)
    assert batch == [r.strip() for r in model.t5_tokenizer.batch_decode(outputs, skip_special_tokens=True)]


def test_ask_about_regions_and_the_whole_image(random_image, predictor):
    one = predictor.ask("what colour is it?", "[32 64]", **FAST)
    assert isinstance(one, str)
    whole = predictor.ask("what colour is it?", **FAST)
    assert isinstance(whole, str)
    many = predictor.ask("what colour is it?", ["[32 64]", None], **FAST)
    assert many == [one, whole]
    per_region = predictor.ask(["what colour is it?", "what colour is it?"], ["[32 64]", None], **FAST)
    assert per_region == many
    assert predictor.ask(["what colour is it?"] * 2, **FAST) == [whole, whole]
    with pytest.raises(ValueError, match="3 questions for 2 regions"):
        predictor.ask(["a", "b", "c"], ["[1 1]", "[2 2]"])


def test_ask_feeds_the_raw_question_after_the_region_as_released(predictor, monkeypatch):
    """Their region QA (`predict_answers_qformer_first`): cat([Z, embed_tokens(t5_tokenizer(question))]),
    generated with 5 beams, max_new_tokens=max_len=10, min_length 1, length_penalty -1."""
    model = predictor.model
    calls = []
    original = model.t5_model.generate

    def generate(**kwargs):
        calls.append(kwargs)
        return original(**kwargs)

    monkeypatch.setattr(model.t5_model, "generate", generate)
    z = predictor.region_embeds("[32 64] [37 62]")[0]
    embed = model.t5_model.encoder.embed_tokens
    ids = model.t5_tokenizer("what colour is it?").input_ids
    assert model.t5_tokenizer.convert_ids_to_tokens(ids) == ["\u2581what", "\u2581colour", "\u2581is", "\u2581it", "?", "</s>"]
    predictor.ask("what colour is it?", "[32 64] [37 62]")
    theirs = torch.cat([z, embed(torch.tensor(ids))])
    assert torch.equal(calls[-1]["inputs_embeds"][0], theirs)
    assert {k: v for k, v in calls[-1].items() if k not in ("inputs_embeds", "attention_mask")} == {
        "num_beams": 5, "max_new_tokens": 10, "min_length": 1, "length_penalty": -1.0}
    # ours, by name: the question wrapped as "Question: ... Answer:"
    predictor.ask("what colour is it?", "[32 64] [37 62]", prompt=QUESTION_PROMPT, **FAST)
    wrapped = model.t5_tokenizer("Question: what colour is it? Answer:").input_ids
    assert torch.equal(calls[-1]["inputs_embeds"][0], torch.cat([z, embed(torch.tensor(wrapped))]))


def test_score_returns_losses_matching_the_models_scoring(predictor):
    texts = ["a dog", "a red car on the left"]
    single = predictor.score(texts, "[32 64] [37 62]")
    assert single.shape == (2,) and single.dtype == torch.float32 and (single > 0).all()
    both = predictor.score(texts, ["[32 64] [37 62]", None])
    assert both.shape == (2, 2) and torch.allclose(both[0], single)
    reference = predictor.model.score_regions(
        predictor.image_embeds, [predictor.region_text("[32 64] [37 62]")] * 2, texts,
        image_index=torch.zeros(2, dtype=torch.long),
    )
    assert torch.allclose(single, reference, atol=1e-5)
    assert predictor.score("a dog", None).shape == (1,)


def test_image_inputs_path_pil_and_array_agree(random_image, predictor, tmp_path):
    array = random_image(3)
    path = tmp_path / "img.png"
    Image.fromarray(array).save(path)
    hashes, embeds = set(), []
    for form in (array, Image.fromarray(array), str(path), path, array / 255.0):
        predictor.set_image(form)
        hashes.add(predictor.image_sha256)
        embeds.append(predictor.image_embeds.clone())
    assert len(hashes) == 1 and hashes == {image_sha256(load_image(path))}
    assert all(torch.equal(e, embeds[0]) for e in embeds)
    with pytest.raises(FileNotFoundError, match="image file not found"):
        predictor.set_image(tmp_path / "missing.png")
    (tmp_path / "bad.png").write_text("not an image")
    with pytest.raises(ValueError, match="cannot read"):
        predictor.set_image(tmp_path / "bad.png")
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        predictor.set_image(np.zeros((4, 4, 2), np.uint8))
    predictor.reset_image()
    assert not predictor.is_image_set
    predictor.set_image(random_image())


def test_segment_picks_a_proposal_and_runs_the_mask_generator_once(predictor, tmp_path):
    masks = [_mask(box=(0, 0, 20, 20)), _mask(box=(30, 10, 70, 40)), _mask(box=(10, 20, 50, 46))]
    records = [{"segmentation": mask_to_rle(m)} for m in masks]
    result = predictor.segment("the object on the right", records)
    assert result.proposal in result.proposal_ids and len(result.scores) == len(result.proposal_ids)
    assert np.array_equal(result.mask, masks[result.proposal])

    class Generator:
        calls = 0

        def generate(self, image):
            assert image.shape == (48, 80, 3)
            Generator.calls += 1
            return records

    generator = Generator()
    again = predictor.segment("the object on the right", mask_generator=generator)
    predictor.segment("something else", mask_generator=generator)
    assert Generator.calls == 1 and again.proposal == result.proposal
    path = tmp_path / "proposals.json"
    path.write_text(json.dumps(records))
    assert predictor.segment("the object on the right", str(path)).proposal == result.proposal
    with pytest.raises(ValueError, match="needs proposals"):
        predictor.segment("x")


LONG_QUESTION = ("what is the colour of the small wooden object that lies on the left side of the table next to "
                 "the red cup and the old lamp near the window in the evening light?")


def _spy_generate(model, monkeypatch) -> list[torch.Tensor]:
    """Record the `inputs_embeds` of every call to `model.t5_model.generate` (this instance)."""
    seen = []
    original = model.t5_model.generate

    def generate(**kwargs):
        seen.append(kwargs["inputs_embeds"].detach().clone())
        return original(**kwargs)

    monkeypatch.setattr(model.t5_model, "generate", generate)
    return seen


def test_ask_and_predict_answers_read_a_long_question_alike(random_image, predictor, monkeypatch):
    """One input path: `predictor.ask` and `model.predict_answers` (region QA, the same settings)
    feed the same T5 input and give the same answer for a question longer than `max_txt_len`
    (32) tokens; `max_prompt_tokens: 32` cuts both the same way (32 text tokens, `</s>` kept)."""
    model = predictor.model
    ids = model.t5_tokenizer(LONG_QUESTION).input_ids
    assert len(ids) > 40 and model.max_txt_len == 32
    region = "[32 64] [37 62] [20 10]"
    image = predictor.vis_processor(load_image(random_image()))[None]
    seen = _spy_generate(model, monkeypatch)
    samples = {"image": image, "text_input": [LONG_QUESTION], "region_text": [region]}
    queries = model.query_outputs(model.encode_image(image), [region])
    z = model.t5_proj(queries)[0].detach()
    embed = model.t5_model.encoder.embed_tokens
    for limit, kept in ((None, ids), (32, ids[:31] + [model.t5_tokenizer.eos_token_id])):
        monkeypatch.setattr(model, "max_prompt_tokens", limit, raising=False)
        asked = predictor.ask(LONG_QUESTION, region)
        answered = model.predict_answers(samples, num_beams=5, max_len=10, min_len=1, length_penalty=-1)
        with torch.no_grad():
            expected = torch.cat([z, embed(torch.tensor(kept))])
        assert torch.allclose(seen[-2][0], expected, atol=1e-6), limit
        assert torch.allclose(seen[-1][0], expected, atol=1e-6), limit
        assert asked == answered[0].strip(), limit
