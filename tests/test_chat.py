"""Chat over the predictor: region references, the released multi-turn layout (pinned turn by
turn to the input their `predict_answers_interactive_multiturn` builds), our history layout,
the length budget, reset, export and replay."""
import json
import logging
from typing import Any, Mapping, Sequence, Union

import numpy as np
import pytest
import torch

from lavis_regionvlm.interactive import Chat, ChatError, RegionPredictor, find_references

FAST = {"num_beams": 2, "max_new_tokens": 3}


def _image(seed=0):
    return (np.random.default_rng(seed).random((48, 80, 3)) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def predictor():
    p = RegionPredictor.from_pretrained("tiny")
    p.set_image(_image())
    return p


@pytest.fixture
def spy(predictor, monkeypatch):
    """Records the piece lists the chat sends to `predictor.generate`."""
    seen = []
    original = RegionPredictor.generate

    def generate(self, batch, **kwargs):
        seen.append(list(batch[0]))
        return original(self, batch, **kwargs)

    monkeypatch.setattr(RegionPredictor, "generate", generate)
    return seen


def record_generate(model, monkeypatch) -> list[dict[str, Any]]:
    """Patch `model.t5_model.generate` (this instance only) to record each call:
    {"inputs_embeds": (B, S, D), "attention_mask": (B, S), "kwargs": the other keywords}."""
    calls: list[dict[str, Any]] = []
    original = model.t5_model.generate

    def generate(*args, **kwargs):
        calls.append({"inputs_embeds": kwargs["inputs_embeds"].detach().clone(),
                      "attention_mask": kwargs["attention_mask"].detach().clone(),
                      "kwargs": {k: v for k, v in kwargs.items() if k not in ("inputs_embeds", "attention_mask")}})
        return original(*args, **kwargs)

    monkeypatch.setattr(model.t5_model, "generate", generate)
    return calls


def transcript(model, row: torch.Tensor, blocks: Mapping[str, torch.Tensor]) -> list[str]:
    """One encoder input (S, D) read back: "<name>" for each soft prompt of `blocks` found in
    it, and the text between them decoded token by token (special tokens kept), split after
    every `</s>`. A position that is neither raises AssertionError."""
    table = model.t5_model.encoder.embed_tokens.weight
    tokenizer = model.t5_tokenizer
    out: list[str] = []
    ids: list[int] = []

    def flush():
        if ids:
            out.append(tokenizer.decode(ids))
            ids.clear()

    position = 0
    while position < row.shape[0]:
        for name, block in blocks.items():
            end = position + block.shape[0]
            if end <= row.shape[0] and torch.equal(row[position:end], block.to(row.dtype)):
                flush()
                out.append(f"<{name}>")
                position = end
                break
        else:
            matches = (table.to(row.dtype) == row[position]).all(dim=1).nonzero().flatten().tolist()
            assert len(matches) == 1, f"position {position} is neither a soft prompt nor one token embedding"
            ids.append(matches[0])
            position += 1
            if matches[0] == tokenizer.eos_token_id:
                flush()
    flush()
    return out


def released_input(model, parts: Sequence[Union[str, torch.Tensor]]) -> torch.Tensor:
    """(S, D): what their code concatenates: a soft prompt as it is, a question as
    `embed_tokens(t5_tokenizer(question).input_ids)` (tokenized on its own, `</s>` included)."""
    embed = model.t5_model.encoder.embed_tokens
    pieces = []
    for part in parts:
        if isinstance(part, str):
            pieces.append(embed(torch.tensor(model.t5_tokenizer(part).input_ids)))
        else:
            pieces.append(part)
    return torch.cat(pieces, dim=0)


def _layout(pieces):
    """Pieces as text, soft prompts shown as <Z>."""
    return [p if isinstance(p, str) else "<Z>" for p in pieces]


def test_find_references_reads_indices_not_point_text():
    assert find_references("is [1] left of [0]? and [1] again, [12]") == [1, 0, 12]
    assert find_references("the point [32 64] [37 62]") == []


def test_lm_embed_matches_the_released_encoder_inputs(predictor):
    model = predictor.model
    z = predictor.region_embeds("[32 64] [37 62]")
    ours, ours_mask = model.lm.embed([[z[0], "Question: what is it? Answer:"]])
    theirs = released_input(model, [z[0], "Question: what is it? Answer:"])  # cat([Z, embed(tokenizer(q))])
    assert torch.allclose(ours[0], theirs) and ours_mask.tolist() == [[1] * theirs.shape[0]]
    assert model.lm.count_tokens([z[0], "Question: what is it? Answer:"]) == ours.shape[1]
    padded, mask = model.lm.embed([[z[0]], [z[0], "a longer text"]])
    assert mask[0].sum() == 9 and mask[1].sum() == padded.shape[1]


# A conversation and, for each turn, the T5 encoder input their multi-turn code
# (`predict_answers_interactive_multiturn`, blip2_t5.py) builds, worked out by hand: <Zi> is
# region i's soft prompt, each question is `t5_tokenizer(question)` with its own </s>.
RELEASED_TURNS = [
    # first turn with a region: Z, question; `contexts` := Z0
    ("what is [0]?", ["<Z0>", "what is [0]?</s>"]),
    # no region: contexts + question; turn 1's question is not kept
    ("what colour is it?", ["<Z0>", "what colour is it?</s>"]),
    # a new region: `contexts` := the previous turn's input, then Z1, question
    ("and what is [1]?", ["<Z0>", "what colour is it?</s>", "<Z1>", "and what is [1]?</s>"]),
    # no region: the contexts kept at turn 3, question; turn 3's Z1 and question are gone
    ("is it big?", ["<Z0>", "what colour is it?</s>", "is it big?</s>"]),
    # ours beyond their one region per turn: both soft prompts, in order of mention
    ("is [1] left of [0]?", ["<Z0>", "what colour is it?</s>", "is it big?</s>", "<Z1>", "<Z0>",
                             "is [1] left of [0]?</s>"]),
]


def _parts(expected, blocks):
    """An expected transcript as `released_input` parts: soft prompts and raw questions."""
    return [blocks[item[1:-1]] if item.startswith("<") else item.removesuffix("</s>") for item in expected]


def test_released_layout_is_their_multiturn_input_turn_by_turn(predictor, monkeypatch):
    model = predictor.model
    calls = record_generate(model, monkeypatch)
    chat = Chat(predictor, generate_kwargs=FAST)
    assert chat.layout == "released" and not chat.feed_answers and chat.question_prompt == "{}"
    chat.add_region("[32 64] [37 62]")
    chat.add_region({"box": [0.1, 0.1, 0.5, 0.5]})
    z = chat._region_embeds()  # regions 0, 1 and the whole image, one batch as the chat computes them
    blocks = {"Z0": z[0], "Z1": z[1], "Zimage": z[2]}
    for turn, (user, expected) in enumerate(RELEASED_TURNS):
        reply = chat.ask(user)
        inputs, mask = calls[-1]["inputs_embeds"][0], calls[-1]["attention_mask"][0]
        assert transcript(model, inputs, blocks) == expected, f"turn {turn + 1}"
        assert torch.equal(inputs, released_input(model, _parts(expected, blocks))), f"turn {turn + 1}"
        assert mask.tolist() == [1] * inputs.shape[0] and reply.input_tokens == inputs.shape[0]
    # turn 3 by count: 8 + 6 tokens ("what colour is it?" + </s>) + 8 + 8 ("and what is [1]?" + </s>)
    assert [len(model.t5_tokenizer(q).input_ids) for q in ("what colour is it?", "and what is [1]?")] == [6, 8]
    assert z.shape[1] == 8 and model.lm.count_tokens(chat._pieces(chat.turns[:3], z)) == 8 + 6 + 8 + 8


def test_released_first_turn_without_a_region_has_no_image_prompt(predictor, monkeypatch):
    model = predictor.model
    calls = record_generate(model, monkeypatch)
    chat = Chat(predictor)  # the default generation: their multi-turn settings
    chat.add_region("[32 64] [37 62]")
    z = chat._region_embeds()
    blocks = {"Z0": z[0], "Zimage": z[1]}
    chat.ask("what is in the picture?")
    inputs = calls[-1]["inputs_embeds"][0]
    assert transcript(model, inputs, blocks) == ["what is in the picture?</s>"]  # text only: no soft prompt
    assert inputs.shape[0] == len(model.t5_tokenizer("what is in the picture?").input_ids)
    # their code: `contexts` is still None, so the first region turn drops the earlier question
    chat.ask("what is [0]?")
    assert transcript(model, calls[-1]["inputs_embeds"][0], blocks) == ["<Z0>", "what is [0]?</s>"]
    chat.ask("is it red?")
    assert transcript(model, calls[-1]["inputs_embeds"][0], blocks) == ["<Z0>", "is it red?</s>"]
    # generation as in their multi-turn code (short=False): 5 beams, 30 new tokens, min length 1,
    # length and repetition penalties 1, no sampling
    assert calls[-1]["kwargs"] == {"num_beams": 5, "max_new_tokens": 30, "min_length": 1, "length_penalty": 1.0,
                                   "repetition_penalty": 1.0}
    assert not model.t5_model.generation_config.do_sample


def test_layout_options_are_checked(predictor):
    with pytest.raises(ValueError, match="unknown chat layout 'theirs'; choose one of 'released', 'history'"):
        Chat(predictor, layout="theirs")
    with pytest.raises(ValueError, match="feed_answers=True needs layout='history'"):
        Chat(predictor, feed_answers=True)
    history = Chat(predictor, layout="history")
    assert history.feed_answers and history.question_prompt == "Question: {} Answer:"
    assert not Chat(predictor, layout="history", feed_answers=False).feed_answers


def test_history_declares_regions_when_first_used_and_feeds_answers_back(predictor, spy):
    chat = Chat(predictor, layout="history", generate_kwargs=FAST)
    assert chat.add_region("[32 64] [37 62]") == 0
    assert chat.add_region({"box": [0.1, 0.1, 0.5, 0.5]}) == 1
    first = chat.ask("what is [0]?")
    assert _layout(spy[-1]) == ["Let [0] be", "<Z>", ".", "Question: what is [0]? Answer:"]
    chat.ask("is [1] near [0]?")
    assert _layout(spy[-1]) == [
        "Let [0] be", "<Z>", ".", f"Question: what is [0]? Answer: {first.answer}",
        "Let [1] be", "<Z>", ".", "Question: is [1] near [0]? Answer:",
    ]
    region_embeds = predictor.region_embeds(list(chat.regions))
    assert torch.equal(spy[-1][1], region_embeds[0]) and torch.equal(spy[-1][5], region_embeds[1])
    assert [t.regions for t in chat.turns] == [[0], [1, 0]]

    quiet = Chat(predictor, layout="history", feed_answers=False, generate_kwargs=FAST)
    quiet.ask("what is this?")  # no region: the whole-image soft prompt opens the input
    quiet.ask("and then?")
    assert _layout(spy[-1]) == ["<Z>", "Question: what is this? Answer:", "Question: and then? Answer:"]
    assert torch.equal(spy[-1][0], predictor.region_embeds(None)[0])


def test_bad_messages_raise_chat_errors(predictor):
    chat = Chat(predictor, generate_kwargs=FAST)
    with pytest.raises(ChatError, match=r"refers to \[0\], but the chat has no regions"):
        chat.ask("what is [0]?")
    chat.add_region("[10 10]")
    with pytest.raises(ChatError, match=r"refers to \[3\], but the chat has regions \[0\]..\[0\]"):
        chat.ask("is [0] near [3]?")
    with pytest.raises(ChatError, match="empty message"):
        chat.ask("   ")
    assert chat.turns == []


@pytest.mark.parametrize("layout", ["released", "history"])
def test_length_budget_drops_the_oldest_turns_and_says_so(predictor, caplog, layout):
    chat = Chat(predictor, layout=layout, max_input_tokens=40, generate_kwargs=FAST)
    chat.add_region("[32 64] [37 62]")
    replies = []
    with caplog.at_level(logging.WARNING, logger="lavis_regionvlm.interactive.chat"):
        for question in ("what is [0]?", "what colour is [0]?", "how big is [0]?"):
            replies.append(chat.ask(question))
    assert all(r.input_tokens <= 40 for r in replies)
    cut = [r for r in replies if r.truncated]
    assert cut, "a 40-token budget cannot hold three turns with an 8-vector region"
    assert "history cut" in cut[0].notice and "max_input_tokens=40" in cut[0].notice
    assert any("history cut" in rec.getMessage() for rec in caplog.records)
    assert replies[-1].dropped_turns >= 1 and chat.first_kept_turn == replies[-1].dropped_turns
    assert len(chat.turns) == 3  # the history keeps every turn; only the prompt is cut
    with pytest.raises(ChatError, match="this message alone needs .* more than max_input_tokens=10"):
        Chat(predictor, max_input_tokens=10).ask("a question that is far too long for such a tiny budget")


def test_reset_forgets_turns_and_optionally_regions(predictor):
    chat = Chat(predictor, generate_kwargs=FAST)
    chat.add_region("[10 10]")
    chat.ask("what is [0]?")
    chat.reset(keep_regions=True)
    assert chat.turns == [] and len(chat.regions) == 1 and chat.first_kept_turn == 0
    chat.reset()
    assert chat.regions == []


def test_a_region_given_as_point_text_is_kept_and_read_as_given(predictor):
    chat = Chat(predictor, generate_kwargs=FAST)
    assert chat.add_region("[29 57] [58 14]") == 0 and chat.add_region("") == 1
    assert chat.regions == ["[29 57] [58 14]", ""]
    assert chat.export()["regions"] == [{"point_text": "[29 57] [58 14]"}, {"point_text": ""}]
    model = predictor.model
    index = torch.zeros(3, dtype=torch.long)
    # the chat's soft prompts: its regions, then the whole image; the point text as given, not redrawn
    expected = model.encode_regions(predictor.image_embeds, ["[29 57] [58 14]", "", ""], index)
    torch.testing.assert_close(chat._region_embeds(), expected)
    answer = chat.ask("what is [0]?").answer
    assert Chat.replay(chat.export(), predictor) == [answer]


def test_export_and_replay_give_the_same_answers(predictor, tmp_path):
    chat = Chat(predictor, max_input_tokens=60, generate_kwargs=FAST)
    chat.add_region("[32 64] [37 62]")
    chat.add_region({"box": [0.2, 0.1, 0.9, 0.7]})
    for question in ("what is [0]?", "is [1] bigger than [0]?", "what is in the picture?"):
        chat.ask(question)
    session = chat.export()
    assert json.loads(json.dumps(session)) == session
    assert session["image"] == {"sha256": predictor.image_sha256, "size": [80, 48]}
    assert session["regions"][1] == {"box": [0.2, 0.1, 0.9, 0.7]}
    assert [t["user"] for t in session["turns"]][0] == "what is [0]?"
    assert session["version"] == 2
    assert session["settings"] == {
        "model_type": "tiny", "seed": 0, "num_points": 10, "quantize": "floor", "layout": "released",
        "max_input_tokens": 60, "feed_answers": False, "question_prompt": "{}",
        "generate_kwargs": {**FAST, "min_length": 1, "length_penalty": 1.0, "repetition_penalty": 1.0},
    }
    answers = [t.answer for t in chat.turns]
    path = chat.save(tmp_path / "session.json")
    # a predictor with other point settings replays with the session's own
    assert Chat.replay(str(path), predictor.with_settings(seed=7, quantize="round")) == answers
    assert Chat.from_session(session, predictor).layout == "released"


def test_replay_uses_the_recorded_layout(predictor, spy):
    history = Chat(predictor, layout="history", generate_kwargs=FAST)
    history.add_region("[32 64] [37 62]")
    for question in ("what is [0]?", "and its colour?"):
        history.ask(question)
    session = history.export()
    assert session["settings"]["layout"] == "history" and session["settings"]["feed_answers"] is True
    recorded = [_layout(pieces) for pieces in spy]
    spy.clear()
    assert Chat.replay(session, predictor) == [t.answer for t in history.turns]
    assert [_layout(pieces) for pieces in spy] == recorded
    # a version 1 session (before layouts) has no "layout": it was recorded with the history layout
    old = {**session, "version": 1, "settings": {k: v for k, v in session["settings"].items() if k != "layout"}}
    spy.clear()
    assert Chat.replay(old, predictor) == [t.answer for t in history.turns]
    assert [_layout(pieces) for pieces in spy] == recorded
    assert recorded[-1][:4] == ["Let [0] be", "<Z>", ".", f"Question: what is [0]? Answer: {history.turns[0].answer}"]
    bad = {**session, "settings": {**session["settings"], "layout": "theirs"}}
    with pytest.raises(ChatError, match="chat session settings: unknown chat layout 'theirs'"):
        Chat.replay(bad, predictor)

    other = RegionPredictor(predictor.model, predictor.vis_processor)
    other.set_image(_image(1))
    with pytest.raises(ChatError, match="recorded on image sha256"):
        Chat.replay(session, other)
    with pytest.raises(ChatError, match="not a chat session"):
        Chat.replay({"format": "something"}, predictor)
