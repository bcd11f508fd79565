"""Chat over the predictor: region references, prompt layout with history, the length
budget, reset, export and replay."""
import json
import logging

import numpy as np
import pytest
import torch

from lavis_regionvlm.interactive import Chat, ChatError, RegionPredictor, count_tokens, embed_pieces, find_references

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


def _layout(pieces):
    """Pieces as text, soft prompts shown as <Z>."""
    return [p if isinstance(p, str) else "<Z>" for p in pieces]


def test_find_references_reads_indices_not_point_text():
    assert find_references("is [1] left of [0]? and [1] again, [12]") == [1, 0, 12]
    assert find_references("the point [32 64] [37 62]") == []


def test_embed_pieces_matches_the_models_encoder_inputs(predictor):
    model = predictor.model
    z = predictor.region_embeds("[32 64] [37 62]")
    ours, ours_mask = embed_pieces(model, [[z[0], "Question: what is it? Answer:"]])
    theirs, theirs_mask = model.t5_encoder_inputs(z, ["Question: what is it? Answer:"])
    assert torch.allclose(ours, theirs) and torch.equal(ours_mask, theirs_mask)
    assert count_tokens(model, [z[0], "Question: what is it? Answer:"]) == ours.shape[1]
    padded, mask = embed_pieces(model, [[z[0]], [z[0], "a longer text"]])
    assert mask[0].sum() == 9 and mask[1].sum() == padded.shape[1]


def test_history_declares_regions_when_first_used_and_feeds_answers_back(predictor, spy):
    chat = Chat(predictor, generate_kwargs=FAST)
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

    quiet = Chat(predictor, feed_answers=False, generate_kwargs=FAST)
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


def test_length_budget_drops_the_oldest_turns_and_says_so(predictor, caplog):
    chat = Chat(predictor, max_input_tokens=40, generate_kwargs=FAST)
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
    assert session["settings"] == {
        "model_type": "tiny", "seed": 0, "num_points": 10, "quantize": "floor", "max_input_tokens": 60,
        "feed_answers": True, "question_prompt": "Question: {} Answer:", "generate_kwargs": {**FAST, "min_length": 1},
    }
    answers = [t.answer for t in chat.turns]
    path = chat.save(tmp_path / "session.json")
    # a predictor with other point settings replays with the session's own
    assert Chat.replay(str(path), predictor.with_settings(seed=7, quantize="round")) == answers

    other = RegionPredictor(predictor.model, predictor.vis_processor)
    other.set_image(_image(1))
    with pytest.raises(ChatError, match="recorded on image sha256"):
        Chat.replay(session, other)
    with pytest.raises(ChatError, match="not a chat session"):
        Chat.replay({"format": "something"}, predictor)
