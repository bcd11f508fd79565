"""The fast RIS scoring path against the model's own passes and the official per-pair loop."""
import numpy as np
import pytest
import torch
from PIL import Image

from lavis_regionvlm.models.qformer_cached import shared_image_query_outputs
from lavis_regionvlm.regions.masks import mask_to_rle
from lavis_regionvlm.ris.baselines import baseline_images
from lavis_regionvlm.ris.filtering import ProposalFilter
from lavis_regionvlm.ris.pipeline import RisOptions, rank_proposals
from lavis_regionvlm.ris.points import proposal_point_texts
from lavis_regionvlm.ris.random_model import build_random_model
from lavis_regionvlm.ris.scoring import naive_expression_nll, point_text_nll, region_rows_nll

TEXTS = [
    "[10 10] [12 14] [15 11]",
    "[80 85] [90 88] [85 95] [1 2] [3 4] [5 6] [7 8] [9 10] [11 12] [13 14]",  # truncated at 32 tokens
    "[50 50]",
    "",
]
EXPRESSIONS = ["the red circle", "blue one", "the shape at the top left of the picture"]
KEEP_ALL = ProposalFilter(min_area_frac=0.0, border_frac=1.0, fallback_min_area_frac=0.0)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def bigger_model(tmp_path_factory):
    """Random weights, unlike `tiny`: 4 Q-Former layers with cross-attention every 2nd, 16 heads'
    worth of width split in 8, tied T5 embeddings (the LM-head rescale path)."""
    return build_random_model(
        tmp_path_factory.mktemp("bigger"), image_size=64,
        vit={"patch_size": 8, "embed_dim": 128, "depth": 2, "num_heads": 4, "mlp_ratio": 2.0},
        qformer={"hidden_size": 256, "num_hidden_layers": 4, "num_attention_heads": 8, "intermediate_size": 512},
        t5={"d_model": 192, "d_kv": 32, "d_ff": 384, "num_layers": 2, "num_decoder_layers": 3, "num_heads": 6,
            "tie_word_embeddings": True},
        num_query_token=16, cross_attention_freq=2, seed=1,
    )


def proposals_64():
    """Three 64x64 proposal records: a disc, a square, a bar."""
    yy, xx = np.mgrid[:64, :64]
    disc = (xx - 20) ** 2 + (yy - 20) ** 2 < 100
    square = np.zeros((64, 64), bool)
    square[36:56, 36:56] = True
    bar = np.zeros((64, 64), bool)
    bar[5:12, 40:60] = True
    return [{"segmentation": mask_to_rle(m)} for m in (disc, square, bar)]


@pytest.mark.parametrize("which", ["tiny", "bigger"])
def test_cached_qformer_equals_query_outputs(which, tiny_model, bigger_model, images):
    model = tiny_model if which == "tiny" else bigger_model
    with torch.inference_mode():
        embeds = model.encode_image(images[:1])
        expected = model.query_outputs(embeds.expand(len(TEXTS), -1, -1), TEXTS)
        cached = shared_image_query_outputs(model, embeds, TEXTS)
    assert cached.shape == expected.shape
    assert torch.allclose(cached, expected, atol=1e-5, rtol=0)


def test_cached_qformer_query_only_rows(tiny_config, images):
    from omegaconf import OmegaConf

    from lavis_regionvlm.models import Blip2T5Region

    model = Blip2T5Region.from_config(OmegaConf.merge(tiny_config.model, {"global_region_mode": "query_only"})).eval()
    with torch.inference_mode():
        embeds = model.encode_image(images[1:])
        expected = model.query_outputs(embeds.expand(len(TEXTS), -1, -1), TEXTS)
        cached = shared_image_query_outputs(model, embeds[0], TEXTS)  # (L, C) works too
    assert torch.allclose(cached, expected, atol=1e-5, rtol=0)


def test_cached_qformer_refuses_training_mode(tiny_config, images):
    from omegaconf import OmegaConf

    from lavis_regionvlm.models import Blip2T5Region

    model = Blip2T5Region.from_config(OmegaConf.create(tiny_config.model)).train()
    with pytest.raises(RuntimeError, match="eval"):
        shared_image_query_outputs(model, torch.zeros(1, 65, 96), TEXTS)


def stock_pair_nll(model, region_embeds: torch.Tensor, texts: list[str], prompt: str = "") -> torch.Tensor:
    """(M, E) the released per-pair computation with Hugging Face's T5 alone: the encoder over
    `cat([Z, embed_tokens(t5_tokenizer(prompt).input_ids)])`, the mean token loss of
    `t5_tokenizer(text)` (cut at `max_txt_len`) as labels, one (row, text) pair per call."""
    t5, tokenizer = model.t5_model, model.t5_tokenizer
    out = torch.empty(len(region_embeds), len(texts))
    prompt_ids = torch.tensor(tokenizer(prompt).input_ids)
    for row, z in enumerate(region_embeds):
        inputs = torch.cat([z, t5.encoder.embed_tokens(prompt_ids)])[None]
        for column, text in enumerate(texts):
            labels = torch.tensor([tokenizer(text, truncation=True, max_length=model.max_txt_len).input_ids])
            out[row, column] = t5(inputs_embeds=inputs, labels=labels).loss
    return out


@pytest.mark.parametrize("which", ["tiny", "bigger"])
def test_region_rows_nll_equals_the_stock_pass_per_pair(which, tiny_model, bigger_model, images):
    """All expressions in one decoder row (block-diagonal causal mask) = one pass per pair."""
    model = tiny_model if which == "tiny" else bigger_model
    texts = [t for t in TEXTS if t]
    with torch.inference_mode():
        queries = shared_image_query_outputs(model, model.encode_image(images[:1]), texts)
        region = model.t5_proj(queries)
        ours = region_rows_nll(model, region, EXPRESSIONS)
        stock = stock_pair_nll(model, region, EXPRESSIONS)
        chunked = region_rows_nll(model, region, EXPRESSIONS, token_budget=1)  # one row per call
    assert torch.allclose(ours, stock, atol=1e-4, rtol=1e-5)
    assert torch.allclose(chunked, ours, atol=1e-5, rtol=0)


def test_many_expressions_split_into_groups(tiny_model, images):
    expressions = [f"the {c} {k} at the top left of the picture" for c in ("red", "blue", "green")
                   for k in ("circle", "square", "triangle", "shape")]  # > MAX_GROUP_TOKENS together
    with torch.inference_mode():
        embeds = tiny_model.encode_image(images[:1])
        ours = point_text_nll(tiny_model, embeds, TEXTS[:2], expressions)
        naive = torch.stack([point_text_nll(tiny_model, embeds, TEXTS[:2], [e])[:, 0] for e in expressions], 1)
    assert torch.allclose(ours, naive, atol=1e-4, rtol=1e-5)


def test_ranking_matches_the_official_loop_for_the_same_points(tiny_model, images):
    """Scores of rank_proposals == the whole model run per (proposal, draw, expression)."""
    image = images[0]
    records = proposals_64()
    options = RisOptions(draws=2, seed=5, proposal_filter=KEEP_ALL)
    with torch.inference_mode():
        ranking = rank_proposals(tiny_model, records, EXPRESSIONS, options, image_id=11,
                                 image_embeds=tiny_model.encode_image(image[None]))
        texts = proposal_point_texts(
            ranking.masks, ranking.proposal_ids, num_points=tiny_model.num_points, draws=2, seed=5,
            image_id=11, quantize=tiny_model.point_quantize,
        )
        naive = naive_expression_nll(tiny_model, image, texts, EXPRESSIONS)
    naive_scores = naive.view(3, 2, len(EXPRESSIONS)).min(dim=1).values.numpy()
    assert ranking.proposal_ids == [0, 1, 2]
    np.testing.assert_allclose(ranking.scores, naive_scores, atol=1e-4, rtol=1e-5)
    assert (ranking.choice == naive_scores.argmin(0)).all()


@pytest.mark.parametrize("method", ["red_circle", "crop"])
def test_baselines_match_the_official_loop(method, tiny_model):
    from lavis.processors.blip_processors import BlipImageEvalProcessor

    vis = BlipImageEvalProcessor(image_size=64)
    raw = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    records = proposals_64()
    options = RisOptions(method=method, proposal_filter=KEEP_ALL)
    with torch.inference_mode():
        ranking = rank_proposals(tiny_model, records, EXPRESSIONS, options, image_id=1,
                                 raw_image=raw, vis_processor=vis)
        pictures = baseline_images(method, raw, ranking.masks, vis)
        naive = torch.stack([
            torch.cat([tiny_model.score({"image": p[None], "region_text": [""], "text_output": [e]})
                       for e in EXPRESSIONS])
            for p in pictures
        ])
    np.testing.assert_allclose(ranking.scores, naive.numpy(), atol=1e-4, rtol=1e-5)


def test_no_surviving_proposal_gives_no_choice(tiny_model, images):
    with torch.inference_mode():
        ranking = rank_proposals(tiny_model, [], EXPRESSIONS, RisOptions(), image_id=1,
                                 image_embeds=tiny_model.encode_image(images[:1]))
    assert ranking.proposal_ids == [] and ranking.scores.shape == (0, 3)
    assert (ranking.choice == -1).all() and ranking.chosen_mask(0) is None
