"""VCR in its released format: object mentions, ids of any length, several ids in a token,
objects without polygons, the unlabeled test split, prompt layouts, and the three accuracies.
The released prompts themselves: test_vcr_released.py."""
import json

import numpy as np
import pytest

from lavis_regionvlm.regions import PointTextSpec
from lavis_regionvlm.vcr.data import (
    VcrExample, VcrFormatError, load_examples, mention, object_region, referenced_ids, region_texts,
    render_tokens,
)
from lavis_regionvlm.vcr.metrics import parse_choice, vcr_accuracies
from lavis_regionvlm.vcr.prompt import ObjectSlot, PromptLayout, prompt_text


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    from lavis_regionvlm.preparation.synthetic import generate_synthetic_dataset

    root = tmp_path_factory.mktemp("vcr_data") / "synthetic"
    generate_synthetic_dataset(root, num_images=24, val_fraction=0.25)
    return root / "vcr"


def test_mentions_keep_multi_digit_ids_whole():
    assert mention([12]) == "[12]"
    assert mention([1, 12]) == "[1] and [12]"
    assert mention([0, 3, 10]) == "[0], [3] and [10]"
    assert render_tokens(["What", "colour", "is", [12], "?"]) == "What colour is [12]?"
    assert render_tokens([[9, 10], "are", "red", "."]) == "[9] and [10] are red."
    # the released parser read [12] as objects 1 and 2
    assert referenced_ids(["is", [12], "near", [3, 1]]) == [1, 3, 12]
    with pytest.raises(VcrFormatError):
        mention([])


def test_synthetic_split_has_the_hard_cases(synthetic):
    examples = {split: load_examples(synthetic / f"{split}.jsonl") for split in ("train", "val", "test")}
    every = [e for split in examples.values() for e in split]
    assert any(max(e.object_ids) >= 10 for e in every), "an object id with two digits"
    assert any(len(t) > 1 for e in every for t in e.question if isinstance(t, list)), "several ids in one token"
    assert all(e.labeled for e in examples["train"] + examples["val"])
    assert examples["test"] and not any(e.labeled for e in examples["test"])


def test_regions_from_polygons_or_box(synthetic):
    from lavis_regionvlm.vcr.dataset import VcrDataset

    dataset = VcrDataset(load_examples(synthetic / "train.jsonl"), synthetic / "vcr1images", lambda im: im)
    kinds = {}
    for example in dataset.examples:
        metadata = json.loads((synthetic / "vcr1images" / example.metadata_fn).read_text())
        for i, region in dataset.regions(example).items():
            kinds.setdefault(region.kind, 0)
            kinds[region.kind] += 1
            assert region.kind == ("mask" if metadata["segms"][i] else "box")
            if region.kind == "box":  # the object's own box, relative
                x1, y1, x2, y2 = metadata["boxes"][i][:4]
                assert np.allclose(region.data, [x1 / 64, y1 / 64, x2 / 64, y2 / 64])
    assert kinds.get("mask") and kinds.get("box"), kinds


def test_object_region_edge_cases():
    meta = {"boxes": [[2, 2, 10, 10, 0.9], [5, 5, 6, 6, 0.9]], "segms": [[[[1, 1], [2, 1]]], []],
            "width": 20, "height": 20}
    assert object_region(meta, 0).kind == "box"  # a 2-vertex polygon is unusable
    assert object_region(meta, 1).kind == "box"
    with pytest.raises(VcrFormatError, match="object id 2"):
        object_region(meta, 2)


def test_points_are_seeded_per_question_and_object():
    meta = {"boxes": [[0, 0, 20, 20, 1], [10, 10, 30, 30, 1]], "segms": [[], []], "width": 40, "height": 40}
    regions = {0: object_region(meta, 0), 1: object_region(meta, 1)}
    spec = PointTextSpec(num_points=10, quantize="floor")
    a = region_texts(regions, "val-3", spec, seed=0)
    assert a == region_texts(regions, "val-3", spec, seed=0)
    assert a != region_texts(regions, "val-4", spec, seed=0)
    assert len(a[0].split("] [")) == 10


def _example(question, answers, rationales, labels=(None, None)):
    return VcrExample("x-0", "a.jpg", "a.json", question, answers, rationales, *labels)


def test_layouts_interleave_objects_with_text():
    example = _example(["Why", "is", [12], "near", [0, 3], "?"],
                       [["a", str(n)] for n in range(4)], [["r", [0], str(n)] for n in range(4)])
    layout = PromptLayout(objects="all")
    pieces = layout.qa_prompt(example)
    assert pieces[:7] == ["Let", "[0] be", ObjectSlot(0), "[3] be", ObjectSlot(3), "[12] be", ObjectSlot(12)]
    assert pieces[7] == "Question: Why is [12] near [0, 3] ? 1. a 0 2. a 1 3. a 2 4. a 3 Answer: "
    assert prompt_text(pieces).startswith("Let [0] be <Z0> [3] be <Z3> [12] be <Z12> Question:")
    assert PromptLayout("compact", objects="all").qa_prompt(example)[:2] == ["[0]", ObjectSlot(0)]
    assert PromptLayout("text_only").qa_prompt(example) == [pieces[7]]
    with pytest.raises(ValueError, match="vcr_layout"):
        PromptLayout("nope")


def test_parse_choice_takes_the_first_number():
    assert [parse_choice(t) for t in ["1", "4.", "answer 3 or 2", "12", "0", "", "two", " 2) x"]] == \
        [0, 3, 2, -1, -1, 0, 0, 1]
    assert [parse_choice(t, no_number="invalid") for t in ["", "two", "2"]] == [-1, -1, 1]


def test_three_accuracies_match_hand_counts():
    def rec(a, al, rg, rp, rl):
        return {"answer_pred": a, "answer_label": al, "rationale_pred_gold": rg, "rationale_pred": rp,
                "rationale_label": rl}

    records = [
        rec(0, 0, 1, 1, 1),   # A right, R(gold) right, R(pred) right -> Q->AR right
        rec(2, 2, 0, 0, 3),   # A right, R wrong
        rec(1, 3, 2, 0, 2),   # A wrong, R(gold) right; R(pred) wrong -> Q->AR wrong
        rec(1, 3, 2, 2, 2),   # A wrong but R(pred) right -> Q->AR still wrong
        rec(-1, 1, 3, -1, 3), # invalid answer: wrong; QA->R right
        rec(3, 3, 1, 1, 0),   # A right, R wrong
        rec(2, 2, 2, 2, 2),   # all right
        rec(0, 1, -1, 0, 0),  # A wrong, invalid R(gold)
    ]
    metrics = vcr_accuracies(records)
    # Q->A: rows 0, 1, 5, 6 -> 4/8; QA->R: rows 0, 2, 3, 4, 6 -> 5/8; Q->AR: rows 0, 6 -> 2/8
    assert metrics["q2a"] == pytest.approx(50.0)
    assert metrics["qa2r"] == pytest.approx(62.5)
    assert metrics["q2ar"] == pytest.approx(25.0)
    assert (metrics["count"], metrics["invalid_answers"], metrics["invalid_rationales"]) == (8, 1, 1)
    with pytest.raises(ValueError, match="no labels"):
        vcr_accuracies([rec(0, None, 0, 0, None)])
