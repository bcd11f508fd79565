"""Cross-attention maps (`interactive/attention.py`, `RegionPredictor.attention_map`, the
`regionvlm attention` command) on the tiny model: the probabilities are the Q-Former's own
(recomputed by hand from each cross-attention module's inputs, and they reproduce its
output), the reduction to a patch grid, the dependence on the region, no ViT run, the overlay
picture and the command line."""
import io
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from lavis_regionvlm.cli import main
from lavis_regionvlm.interactive import RegionPredictor
from lavis_regionvlm.interactive.attention import (
    AttentionMap, attention_maps, cross_attention_layers, cross_attention_probs, heat_colors, parse_layers,
    resolve_layers,
)

A, B = "[10 10] [12 15] [20 18]", "[90 80] [85 85] [70 90]"


@pytest.fixture(scope="module")
def predictor(random_image):
    p = RegionPredictor.from_pretrained("tiny", device="cpu")
    p.set_image(random_image())
    return p


@pytest.fixture
def cross_attention_calls(predictor):
    """Inputs and outputs of every cross-attention module call: {layer: [(hidden, image, out)]}."""
    model = predictor.model
    calls = {i: [] for i in cross_attention_layers(model)}
    handles = []
    for i in calls:
        module = model.Qformer.bert.encoder.layer[i].crossattention.self

        def hook(module, args, output, i=i):  # args: hidden, mask, head_mask, encoder states, ...
            calls[i].append((args[0], args[3], output))

        handles.append(module.register_forward_hook(hook))
    yield calls
    for handle in handles:
        handle.remove()


def test_grid_is_the_vit_patch_grid_and_a_distribution(predictor):
    model = predictor.model
    tokens = predictor.image_embeds.shape[1]
    h, w = model.visual_encoder.patch_embed.patch_shape
    assert (h, w) == (8, 8) and tokens == 1 + h * w  # 64 px / 8 px patches, plus CLS
    one = predictor.attention_map(A)
    assert isinstance(one, AttentionMap) and one.region_text == predictor.region_text(A)
    assert one.grid.shape == (h, w) and one.grid.dtype == np.float32
    assert (one.grid >= 0).all() and one.grid.sum() == pytest.approx(1.0, abs=1e-5)
    assert one.layers == (0, 1) == tuple(cross_attention_layers(model))  # tiny: every layer cross-attends
    regions = [A, None, {"box": [0.5, 0.5, 0.9, 0.9]}]
    several = predictor.attention_map(regions, layers="last")
    assert [m.region_text for m in several] == predictor.region_texts(regions)
    assert len(several) == 3 and several[1].region_text == "" and several[0].layers == (1,)
    assert predictor.attention_map().region_text == ""


def test_probabilities_are_recomputed_by_hand_and_reproduce_the_layer_output(predictor, cross_attention_calls):
    model = predictor.model
    texts = [A, B, ""]
    probs = cross_attention_probs(model, predictor.image_embeds, texts)
    assert sorted(probs) == [0, 1]
    for layer, calls in cross_attention_calls.items():
        assert len(calls) == 1  # one Q-Former pass for the three texts
        hidden, image, output = calls[0]
        module = model.Qformer.bert.encoder.layer[layer].crossattention.self
        heads, size = module.num_attention_heads, module.attention_head_size
        rows, n = hidden.shape[:2]
        assert (rows, n) == (3, model.query_tokens.shape[1])  # only the queries cross-attend
        assert torch.equal(image, predictor.image_embeds.expand(3, -1, -1))

        def split(x):  # (R, T, heads * size) -> (R, heads, T, size)
            return x.view(x.shape[0], x.shape[1], heads, size).transpose(1, 2)

        q, k, v = split(module.query(hidden)), split(module.key(image)), split(module.value(image))
        by_hand = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(size), dim=-1)
        assert probs[layer].shape == (3, heads, n, image.shape[1])
        torch.testing.assert_close(probs[layer], by_hand, atol=1e-6, rtol=1e-5)
        context = (probs[layer] @ v).transpose(1, 2).reshape(rows, n, heads * size)
        torch.testing.assert_close(context, output[0], atol=1e-6, rtol=1e-5)

    # The map: mean over heads, queries and layers, CLS column dropped, renormalised, (h, w).
    maps = attention_maps(model, predictor.image_embeds, texts, layers="all")
    mean = (probs[0].mean(dim=(1, 2)) + probs[1].mean(dim=(1, 2))) / 2
    expected = (mean[:, 1:] / mean[:, 1:].sum(dim=1, keepdim=True)).reshape(3, 8, 8)
    for m, grid in zip(maps, expected):
        np.testing.assert_allclose(m.grid, grid.numpy(), atol=1e-7)
    first = attention_maps(model, predictor.image_embeds, [A], layers="first")[0]
    np.testing.assert_allclose(first.grid, (probs[0][0, :, :, 1:].mean(dim=(0, 1)) / probs[0][0, :, :, 1:].mean(
        dim=(0, 1)).sum()).reshape(8, 8).numpy(), atol=1e-7)


def test_map_depends_on_the_region_and_rows_stay_in_order(predictor):
    model, embeds = predictor.model, predictor.image_embeds
    for layers in ("first", "last"):  # even layer 0: its self-attention mixes the points in first
        a, b = attention_maps(model, embeds, [A, B], layers=layers)
        alone_a, alone_b = (attention_maps(model, embeds, [t], layers=layers)[0] for t in (A, B))
        again = attention_maps(model, embeds, [A], layers=layers)[0]
        difference = np.abs(a.grid - b.grid).max()
        # The untrained tiny model attends almost uniformly (1/64 per patch), yet the point
        # text moves the map far beyond float noise.
        assert difference > 1e-6
        assert np.abs(alone_a.grid - again.grid).max() <= 1e-8
        assert np.abs(alone_a.grid - a.grid).max() < difference / 100
        assert np.abs(alone_b.grid - b.grid).max() < difference / 100


def test_whole_image_follows_global_region_mode(predictor, monkeypatch, cross_attention_calls):
    model, embeds = predictor.model, predictor.image_embeds
    empty_text, text = attention_maps(model, embeds, ["", A])
    assert len(cross_attention_calls[0]) == 1 and cross_attention_calls[0][0][0].shape[0] == 2
    monkeypatch.setattr(model, "global_region_mode", "query_only")
    text_2, query_only, text_3 = attention_maps(model, embeds, [A, "", A])
    # Two passes: the point texts with their tokens, "" as the stock query-only pass.
    assert [call[0].shape[0] for call in cross_attention_calls[0][1:]] == [1, 2]
    assert np.abs(query_only.grid - empty_text.grid).max() > 1e-7
    np.testing.assert_allclose(text_2.grid, text.grid, atol=1e-8)
    np.testing.assert_allclose(text_3.grid, text.grid, atol=1e-8)


def test_layer_choices():
    assert parse_layers("all") == "all" and parse_layers(" Last ") == "last" and parse_layers("0,1") == [0, 1]
    with pytest.raises(ValueError, match="layers must be one of all, first, last or comma-separated"):
        parse_layers("top")


def test_resolve_layers_checks_cross_attention(predictor):
    model = predictor.model
    assert resolve_layers(model, "all") == [0, 1] and resolve_layers(model, "first") == [0]
    assert resolve_layers(model, "last") == [1] == resolve_layers(model, -1) == resolve_layers(model, [1, 1])
    with pytest.raises(ValueError, match=r"Q-Former layer 2 has no cross-attention; .* are \[0, 1\]"):
        resolve_layers(model, [0, 2])
    with pytest.raises(ValueError, match="empty"):
        resolve_layers(model, [])
    with pytest.raises(ValueError, match="layers must be one of"):
        predictor.attention_map(A, layers="middle")


def test_attention_map_does_not_run_the_vit(predictor, vit_calls):
    predictor.attention_map(A)
    predictor.attention_map([A, B, None], layers="last")
    assert vit_calls == []


def test_upsample_and_overlay(random_image, predictor):
    image = predictor.image  # 80 x 48
    attention_map = predictor.attention_map("[50 50]")
    value = attention_map.upsample(48, 80)
    assert value.shape == (48, 80) and value.dtype == np.float32
    assert value.min() >= 0 and value.max() <= 1 and value.max() > 0.95 and value.min() < 0.05
    blocky = attention_map.upsample(48, 80, smooth=False)
    row, col = attention_map.peak
    assert blocky[row * 6 + 3, col * 10 + 5] == 1.0  # the peak patch, 6 x 10 px at this size

    picture = attention_map.overlay(image, alpha=0.7)
    assert picture.mode == "RGB" and picture.size == image.size
    change = np.abs(np.asarray(picture, np.int16) - np.asarray(image, np.int16)).max(axis=2)
    assert change[value > 0.9].mean() > 20  # attended places take the heat colour
    assert (change <= 0.7 * value * 255 + 1).all()  # opacity alpha * value: unattended pixels stay

    dotted = np.asarray(attention_map.overlay(image, alpha=0.7, points=True))
    assert (dotted[24, 40] == 255).all() and not (np.asarray(picture)[24, 40] == 255).all()
    same = np.asarray(attention_map.overlay(np.asarray(image), alpha=0.7, points=[[0.5, 0.5]]))
    assert np.array_equal(same, dotted)
    with pytest.raises(ValueError, match="alpha"):
        attention_map.overlay(image, alpha=2)
    assert heat_colors(np.array([0.0, 1.0])).tolist() == [[0, 0, 128], [128, 0, 0]]


# ---------------------------------------------------------------------- command line


@pytest.fixture(scope="module")
def image_path(tmp_path_factory, random_image):
    path = tmp_path_factory.mktemp("attention") / "img.png"
    Image.fromarray(random_image()).save(path)
    return path


def run(*argv):
    out, err = io.StringIO(), io.StringIO()
    code = main([str(a) for a in argv], stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def base(image_path, *extra):
    return ("attention", "--image", image_path, "--model-type", "tiny", "--device", "cpu", *extra)


def test_cli_writes_a_png(image_path, tmp_path):
    target = tmp_path / "one.png"
    code, out, err = run(*base(image_path, "--points", A, "--out", target, "--layers", "last"))
    assert code == 0, err
    assert out.strip() == str(target)
    with Image.open(target) as picture:
        picture.verify()
    with Image.open(target) as picture:
        assert picture.format == "PNG" and picture.size == (80, 48) and picture.mode == "RGB"


def test_cli_json_for_several_regions(image_path, tmp_path, predictor):
    code, out, err = run(*base(image_path, "--points", A, "--region", '{"box": [0.5, 0.5, 0.9, 0.9]}',
                               "--out", tmp_path, "--json"))
    assert code == 0, err
    record = json.loads(out)
    results = record["results"]
    assert record["image_sha256"] == predictor.image_sha256 and len(results) == 2
    expected = predictor.attention_map([A, {"box": [0.5, 0.5, 0.9, 0.9]}])
    for i, (result, attention_map) in enumerate(zip(results, expected)):
        assert result["path"] == str(tmp_path / f"attention_{i}.png")
        assert Image.open(result["path"]).size == (80, 48)
        assert result["point_text"] == attention_map.region_text and result["grid_shape"] == [8, 8]
        assert (result["peak"]["row"], result["peak"]["col"]) == attention_map.peak
        assert result["layers"] == [0, 1]


@pytest.mark.parametrize("extra, message", [
    (["--points", A, "--points", B, "--out", "{tmp}/missing"], "2 regions write one PNG each into a folder"),
    (["--points", A, "--out", "{tmp}/missing/one.png"], "--out: no such folder"),
    (["--points", A, "--out", "{tmp}/one.jpg"], "expected a .png file or an existing folder"),
    (["--out", "{tmp}/one.png", "--layers", "top"], "argument --layers: layers must be one of"),
    (["--out", "{tmp}/one.png", "--layers", "0,5"], "--layers: Q-Former layer 5 has no cross-attention"),
    (["--out", "{tmp}/one.png", "--alpha", "1.5"], "--alpha must be in [0, 1]"),
])
def test_cli_bad_input_exits_2(image_path, tmp_path, extra, message):
    code, out, err = run(*base(image_path, *[e.format(tmp=tmp_path) for e in extra]))
    assert code == 2 and out == ""
    assert message in err
    assert list(tmp_path.iterdir()) == []
