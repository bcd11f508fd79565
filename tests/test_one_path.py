"""One language-model path: every consumer (predictor, LAVIS model API, VCR, RIS) goes through
`model.lm` (`models/lm/base.py`), so the same (region, prompt, text) gets the same score
everywhere; the one truncation rule (`RegionLM.token_pieces`); the T5 scorer's per-row
candidates and reductions; and no module outside `lavis_regionvlm/models/` reaches into the
language model itself."""
import re
from pathlib import Path
from typing import ContextManager

import numpy as np
import pytest
import torch

from lavis_regionvlm.interactive import RegionPredictor
from lavis_regionvlm.models.lm.base import RegionLM
from lavis_regionvlm.ris.scoring import point_text_nll
from lavis_regionvlm.vcr.choose import rank_choices

PACKAGE = Path(__file__).resolve().parents[1] / "lavis_regionvlm"
REGION = "[32 64] [37 62] [20 10]"
TEXTS = ["a dog", "a red car on the left", "the small wooden object next to the lamp"]
LONG_PROMPT = ("Question: what is the colour of the small wooden object that lies on the left side of the table "
               "next to the red cup and the old lamp near the window? Answer:")


@pytest.fixture(scope="module")
def predictor():
    p = RegionPredictor.from_pretrained("tiny")
    p.set_image((np.random.default_rng(0).random((48, 80, 3)) * 255).astype(np.uint8))
    return p


# ---------------------------------------------------------------------- one scorer


@pytest.mark.parametrize("prompt", ["", LONG_PROMPT])
def test_every_consumer_scores_a_pair_alike(predictor, prompt):
    """predictor.score, model.score_regions, VCR rank and (empty prompt) the RIS scorer give the
    same numbers for the same (region, prompt, text); a prompt longer than `max_txt_len` tokens
    is read whole by all of them (`max_prompt_tokens` None)."""
    model = predictor.model
    assert model.lm.count_tokens([LONG_PROMPT]) > model.max_txt_len
    embeds = predictor.image_embeds
    with torch.inference_mode():
        ours = predictor.score(TEXTS, REGION, prompt=prompt)
        regions = model.score_regions(embeds, [REGION] * len(TEXTS), TEXTS, [prompt] * len(TEXTS),
                                      image_index=torch.zeros(len(TEXTS), dtype=torch.long))
        z = predictor.region_embeds(REGION)[0]
        _, vcr = rank_choices(model, [[z, prompt]], [TEXTS])
    assert torch.allclose(regions, ours, atol=1e-5, rtol=0)
    assert torch.allclose(vcr[0], ours, atol=1e-5, rtol=0)
    if not prompt:
        with torch.inference_mode():
            ris = point_text_nll(model, embeds, [REGION], TEXTS)
        assert torch.allclose(ris[0], ours, atol=1e-5, rtol=0)


def test_max_prompt_tokens_cuts_every_consumer_alike(predictor, monkeypatch):
    """With `max_prompt_tokens: 32` the long prompt is cut to its first 31 tokens and `</s>`
    everywhere, which is the score of that shorter prompt given whole."""
    model = predictor.model
    ids = model.t5_tokenizer(LONG_PROMPT, truncation=True, max_length=32).input_ids
    short = model.t5_tokenizer.decode(ids, skip_special_tokens=True)
    assert model.t5_tokenizer(short).input_ids == ids  # the cut prompt round-trips through text
    with torch.inference_mode():
        whole_short = predictor.score(TEXTS, REGION, prompt=short)
        monkeypatch.setattr(model, "max_prompt_tokens", 32)
        cut = predictor.score(TEXTS, REGION, prompt=LONG_PROMPT)
        regions = model.score_regions(predictor.image_embeds, [REGION] * len(TEXTS), TEXTS,
                                      [LONG_PROMPT] * len(TEXTS), image_index=torch.zeros(len(TEXTS), dtype=torch.long))
    assert torch.allclose(cut, whole_short, atol=1e-5, rtol=0)
    assert torch.allclose(regions, whole_short, atol=1e-5, rtol=0)


def test_vcr_rank_sum_is_the_sequence_nll(predictor):
    """VCR's "sum" rank score is the mean token NLL times the target's token count (`</s>`
    included), as the released-style "mean" x length gave."""
    model = predictor.model
    z = predictor.region_embeds([REGION, None])
    inputs = [[z[0], "Why?"], [z[1], "1. yes 2. no"]]
    candidates = [TEXTS, list(reversed(TEXTS))]
    with torch.inference_mode():
        _, mean = rank_choices(model, inputs, candidates, score="mean")
        choices, total = rank_choices(model, inputs, candidates, score="sum")
    lengths = torch.tensor([[len(model.t5_tokenizer(t).input_ids) for t in row] for row in candidates])
    assert torch.allclose(total, mean * lengths, atol=1e-5, rtol=1e-6)
    assert choices == total.argmin(dim=1).tolist()


# ---------------------------------------------------------------------- the T5 scorer


def test_t5_per_row_candidates_equal_shared_ones_and_stock_t5(predictor):
    model = predictor.model
    lm = model.lm
    z = predictor.region_embeds([REGION, None, "[1 1]"])
    batch = [[z[0], ""], [z[1], "what is it?"], [z[2], ""]]
    with torch.inference_mode():
        shared = lm.score(batch, TEXTS)
        per_row = lm.score(batch, [TEXTS, list(reversed(TEXTS)), TEXTS[1:] + TEXTS[:1]])
        small_budget = lm.with_token_budget(1).score(batch, TEXTS)
        # the stock side: Hugging Face's T5 on [Z; embed(tokenizer(prompt))], one pair per call
        stock = torch.empty(3, len(TEXTS))
        for row, (z_row, prompt) in enumerate(batch):
            inputs = torch.cat([z_row, model.t5_model.encoder.embed_tokens(
                torch.tensor(model.t5_tokenizer(prompt).input_ids))])[None]
            for column, text in enumerate(TEXTS):
                labels = torch.tensor([model.t5_tokenizer(text).input_ids])
                stock[row, column] = model.t5_model(inputs_embeds=inputs, labels=labels).loss
    assert shared.shape == (3, 3) and shared.dtype == torch.float32
    assert torch.allclose(shared, stock, atol=1e-5, rtol=0)
    assert torch.allclose(per_row[0], shared[0], atol=1e-6, rtol=0)
    assert torch.allclose(per_row[1], shared[1].flip(0), atol=1e-6, rtol=0)
    assert torch.allclose(per_row[2], shared[2, [1, 2, 0]], atol=1e-6, rtol=0)
    assert torch.allclose(small_budget, shared, atol=1e-6, rtol=0)
    # rows whose candidates differ in length run in one padded pass: each equals the row alone
    short = ["a", "red", "the dog"]
    with torch.inference_mode():
        mixed = lm.score(batch, [TEXTS, short, TEXTS[::-1]])
        alone = lm.score(batch[1:2], short)
    assert torch.allclose(mixed[1], alone[0], atol=1e-5, rtol=0)
    assert torch.allclose(mixed[0], shared[0], atol=1e-5, rtol=0)
    assert torch.allclose(mixed[2], shared[2].flip(0), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="reduction must be one of"):
        lm.score(batch, TEXTS, reduction="max")
    with pytest.raises(ValueError, match="2 candidate lists for 3 inputs"):
        lm.score(batch, [TEXTS, TEXTS])
    with pytest.raises(ValueError, match="token budget must be a positive int"):
        lm.with_token_budget(0)


# ---------------------------------------------------------------------- the truncation rule


class WordLM(RegionLM):
    """A RegionLM whose text tokens are its words (ids = word lengths) and which adds one special
    token: enough to pin the truncation rule without a model."""

    hidden_size, end_text = 4, "</s>"

    def __init__(self):
        super().__init__(model=None, tokenizer=None, numerics=None, max_target_tokens=32, token_budget=None)

    def text_tokens(self, text):
        return [len(word) for word in text.split()]

    def special_tokens(self):
        return 1

    def autocast(self) -> ContextManager:
        raise NotImplementedError

    embed = generate = score = loss = autocast


def test_token_pieces_cuts_text_from_the_end_never_soft_prompts():
    lm = WordLM()
    z4, z2 = torch.zeros(4, 4), torch.zeros(2, 4)
    pieces = [z4, "a bb ccc", z2, "dddd eeeee"]
    assert lm.count_tokens(pieces) == 4 + 3 + 2 + 2 + 1
    assert lm.token_pieces(pieces) == [z4, [1, 2, 3], z2, [4, 5]]
    assert lm.token_pieces(pieces, 6)[1::2] == [[1, 2, 3], [4, 5]]  # 5 text tokens + 1 special: all fit
    # 5 with the special one: 4 of text, so one is dropped from the end of the last text
    assert lm.token_pieces(pieces, 5)[1::2] == [[1, 2, 3], [4]]
    # 4: 3 of text, the last text emptied first, then the earlier one cut
    assert lm.token_pieces(pieces, 4)[1::2] == [[1, 2, 3], []]
    assert lm.token_pieces(pieces, 3)[1::2] == [[1, 2], []]
    assert lm.token_pieces(pieces, 1)[1::2] == [[], []] and lm.token_pieces(pieces, 0)[1::2] == [[], []]
    cut = lm.token_pieces(pieces, 1)
    assert cut[0] is z4 and cut[2] is z2  # soft prompts are never cut
    assert lm.token_pieces(pieces, 100)[1::2] == [[1, 2, 3], [4, 5]]
    with pytest.raises(TypeError, match="piece 1 must be a str or an \\(N, D\\) soft prompt"):
        lm.token_pieces([z4, torch.zeros(3)])


def test_token_pieces_is_the_tokenizers_truncation_for_one_text(predictor):
    """For `[Z, text]` the rule is `tokenizer(text, truncation=True, max_length=m)` (as the
    released training cuts prompts at `max_txt_len`)."""
    lm = predictor.model.lm
    tokenizer = lm.tokenizer
    z = torch.zeros(8, lm.hidden_size)
    for limit in (1, 2, 5, 32, 200):
        kept = lm.token_pieces([z, LONG_PROMPT], limit)[1]
        assert kept + [tokenizer.eos_token_id] == tokenizer(LONG_PROMPT, truncation=True, max_length=limit).input_ids


# ---------------------------------------------------------------------- no reaching into the LM

FORBIDDEN = re.compile(
    r"\.(t5_model|t5_tokenizer|t5_proj|opt_model|opt_tokenizer|opt_proj)\b"  # a model's language-model parts
    r"|\bembed_tokens\b"  # its token embedding table
    r"|\.(encoder|decoder)\("  # running its encoder / decoder by hand
)


def test_no_module_outside_models_reaches_into_the_language_model():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent)
        if relative.parts[1] == "models":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if FORBIDDEN.search(line):
                offenders.append(f"{relative}:{number}: {line.strip()}")
    assert not offenders, "use model.lm / model.lm_projection instead:\n" + "\n".join(offenders)
