"""How T5 runs (`t5_soft_prompt_dtype`): the dtype of inputs_embeds that reaches the T5 encoder
on every path, and the autocast decided for each device.

The released `blip2_t5.py` keeps T5 in bfloat16 and calls it inside
`maybe_autocast(dtype=torch.float32)` (`torch.cuda.amp.autocast(dtype=torch.float32)` on GPU,
nothing on CPU) with `torch.cat([inputs_t5, inputs_embeds])` of the float32 soft prompt and
the bfloat16 token embeddings, which promotes to float32. So: float32 inputs_embeds everywhere,
float32 autocast on CUDA, no autocast on CPU.
"""
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from lavis_regionvlm.models import Blip2T5Region
from lavis_regionvlm.interactive import Chat, RegionPredictor
from lavis_regionvlm.models.t5_numerics import t5_numerics
from lavis_regionvlm.ris.scoring import naive_expression_nll, point_text_nll
from lavis_regionvlm.vcr.choose import generate_choices, rank_choices

POINTS = "[10 10] [12 14] [15 11]"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize(
    "setting, device, weights, cpu_autocast, expected",
    [
        ("float32", "cuda", torch.bfloat16, False, (torch.float32, torch.float32)),  # as released
        ("model", "cuda", torch.bfloat16, False, (torch.bfloat16, torch.bfloat16)),
        ("float32", "cpu", torch.bfloat16, False, (torch.float32, None)),  # as released on CPU
        ("model", "cpu", torch.bfloat16, False, (torch.bfloat16, None)),
        ("float32", "cpu", torch.bfloat16, True, (torch.float32, torch.bfloat16)),
        ("model", "cpu", torch.float32, False, (torch.float32, None)),
        ("float32", "cuda", torch.float32, False, (torch.float32, torch.float32)),
        ("model", "cuda", torch.float32, False, (torch.float32, torch.float32)),  # t5_precision fp32 (T4, V100)
    ],
)
def test_decision_per_device_and_weights(setting, device, weights, cpu_autocast, expected):
    numerics = t5_numerics(setting, device, weights, cpu_autocast)
    assert (numerics.input_dtype, numerics.autocast_dtype) == expected
    assert numerics.device_type == device


def test_unknown_setting_is_refused(tiny_config):
    with pytest.raises(ValueError, match=r"t5_soft_prompt_dtype must be one of \('float32', 'model'\), got 'fp16'"):
        t5_numerics("fp16", "cpu", torch.float32)
    with pytest.raises(ValueError, match="t5_soft_prompt_dtype must be one of"):
        Blip2T5Region.from_config(OmegaConf.merge(tiny_config.model, {"t5_soft_prompt_dtype": "fp16"}))


@pytest.fixture(scope="module")
def bf16_models(tiny_config):
    """The tiny model with bfloat16 T5 weights (the released precision), once per setting."""
    models = {}
    for setting in ("float32", "model"):
        cfg = OmegaConf.merge(tiny_config.model, {"t5_precision": "bf16", "t5_soft_prompt_dtype": setting})
        models[setting] = Blip2T5Region.from_config(cfg).eval()
    return models


def encoder_input_dtypes(model, call) -> list[torch.dtype]:
    """Run call(); return the dtype of every inputs_embeds that entered the T5 encoder."""
    seen = []

    def hook(module, args, kwargs):
        if kwargs.get("inputs_embeds") is not None:
            seen.append(kwargs["inputs_embeds"].dtype)

    handle = model.t5_model.encoder.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        call()
    finally:
        handle.remove()
    return seen


@pytest.mark.parametrize("setting, dtype", [("float32", torch.float32), ("model", torch.bfloat16)])
def test_every_t5_path_feeds_the_encoder_in_the_setting_dtype(bf16_models, images, setting, dtype):
    model = bf16_models[setting]
    assert model.t5_model.encoder.embed_tokens.weight.dtype == torch.bfloat16
    image = images[:1]
    embeds = model.encode_image(image)
    one = {"image": image, "region_text": [POINTS], "text_input": [""], "text_output": ["a red disc"]}
    region = model.encode_regions(embeds, [POINTS])
    pieces = [[region[0], "Question: what is it? Answer:"]]
    inputs, _ = model.lm.embed(pieces)
    predictor = RegionPredictor(model, lambda _: image[0])
    predictor.set_image(np.zeros((8, 8, 3), np.uint8))
    chat = Chat(predictor, generate_kwargs={"max_new_tokens": 3, "num_beams": 2})
    chat.add_region(POINTS)
    calls = {
        "forward (training loss)": lambda: model(one),
        "score": lambda: model.score(one),
        "generate": lambda: model.generate({"image": image, "region_text": [POINTS]}, num_beams=2, max_length=3),
        "predict_answers generate": lambda: model.predict_answers(
            {"image": image, "text_input": ["what?"], "region_text": [POINTS]}, num_beams=2, max_len=3),
        "predict_answers rank": lambda: model.predict_answers(
            {"image": image, "text_input": ["what?"], "region_text": [POINTS]},
            inference_method="rank", answer_list=["red", "blue"]),
        "RIS scorer": lambda: point_text_nll(model, embeds, [POINTS, ""], ["red", "a blue square"]),
        "RIS official loop": lambda: naive_expression_nll(model, image[0], [POINTS], ["red"]),
        "VCR generate": lambda: generate_choices(model, pieces, num_beams=2, max_new_tokens=3),
        "VCR rank": lambda: rank_choices(model, pieces, [["1", "2"]]),
        "VCR rank sum": lambda: rank_choices(model, pieces, [["1", "2"]], score="sum"),
        "predictor ask": lambda: predictor.ask("what is it?", POINTS, num_beams=2, max_new_tokens=3),
        "predictor score": lambda: predictor.score(["red", "a blue square"], [POINTS, None]),
        "chat": lambda: chat.ask("what is [0]?"),
    }
    assert inputs.dtype == dtype
    for name, call in calls.items():
        with torch.no_grad():
            seen = encoder_input_dtypes(model, call)
        assert seen and set(seen) == {dtype}, name


def test_float32_soft_prompt_changes_the_scores_only_by_rounding(bf16_models, images):
    """Same weights, two settings: the scores differ (the residual stream's precision) by
    bfloat16-sized amounts."""
    released, ours = bf16_models["float32"], bf16_models["model"]
    sample = {"image": images, "region_text": [POINTS, ""], "text_output": ["a red disc", "a blue square"]}
    a, b = released.score(sample), ours.score(sample)
    assert torch.isfinite(a).all() and torch.isfinite(b).all()
    assert not torch.equal(a, b)
    assert torch.allclose(a, b, rtol=0.05)
