"""The quick start's printed scores: how a caption is split into colour, shape and position,
and the chance a random pick of the image's phrases gets (checked by hand on 2 images)."""
import json

import pytest

from lavis_regionvlm.quickstart_scores import agreement, caption_scores, chance_scores, phrase_parts


def test_phrase_parts_and_agreement():
    assert phrase_parts("A red circle at the bottom left") == ("a red circle at the bottom left", "red", "circle",
                                                               "at the bottom left")
    assert phrase_parts("a blue square on the right, and a red circle at the top")[1:] == ("blue", "square",
                                                                                           "on the right")
    assert agreement("a red square at the bottom left", "A red circle at the bottom left") == [False, True, False, True]
    assert agreement("a red circle at the bottom left", "a red circle at the bottom left") == [True] * 4
    assert agreement("", "a red circle at the top") == [False, False, False, False]


def test_chance_and_caption_scores_on_a_prepared_set(prepared_synthetic_workdir):
    from collections import defaultdict

    from lavis_regionvlm.preparation.ln_prepared import PreparedNarratives
    from lavis_regionvlm.tasks.region_captioning import normalize_caption

    prepared = prepared_synthetic_workdir("quickstart_scores", 20) / "data/synthetic/prepared/ln_val"
    samples = list(PreparedNarratives(prepared))
    phrases = defaultdict(set)
    for sample in samples:
        phrases[sample.image].add(normalize_caption(sample.text))
    expected_exact = 100 * sum(1 / len(phrases[s.image]) for s in samples) / len(samples)
    chance = chance_scores(prepared)
    assert chance[0] == pytest.approx(expected_exact)
    assert all(0 <= value <= 100 for value in chance) and chance[1] >= chance[0]

    eval_dir = prepared.parents[3] / "eval"
    (eval_dir / "result").mkdir(parents=True)
    records = [{"caption": s.text, "target": s.text} for s in samples[:3]] + [
        {"caption": "a red circle at the top", "target": "a blue square at the top"}]
    (eval_dir / "result" / "val_epochbest.json").write_text(json.dumps(records))
    (eval_dir / "evaluate.txt").write_text(json.dumps({"val": {"cider": 1.0}, "epoch": "best"}) + "\n")
    scores, metrics = caption_scores(eval_dir)
    assert scores == [75.0, 75.0, 75.0, 100.0] and metrics == {"cider": 1.0}
