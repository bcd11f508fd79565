"""VCR by default exactly as the released evaluation (`eval_VCR.py` and
`predict_answers_describe_first` in the authors' `blip2_t5.py`) computes it, with the one
deliberate fix ([12] is object 12), and each released behaviour's alternative as an option.

Every expected string below was written out by hand from the released string building:
    Q->A:  "Question: " + " ".join(str(t) for t in question).strip()
           + "".join(" %s. " % n + " ".join(str(t) for t in answer_n)) + " Answer: "
    QA->R: "Question: " + q + " Answer: " + " ".join(str(t) for t in answer) + " Why? "
           + "".join(" %s. " % n + " ".join(str(t) for t in rationale_n))
then the T5 input: embed(tok("Let") minus </s>), per object embed(tok("[i] be") minus </s>)
and Z_i, embed(tok(question text) with its </s>).
"""
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf

from lavis_regionvlm.vcr.data import VcrExample, join_tokens, load_examples, object_region
from lavis_regionvlm.vcr.metrics import parse_choice, vcr_accuracies
from lavis_regionvlm.vcr.prompt import ObjectSlot, PromptLayout, parse_object_ids, slot_ids

# Line 0 of VCR's train.jsonl, verbatim (rowanz/r2c, `dataloaders/vcr.py`, "example jsonl").
TRAIN0_LINE = (
    '{"movie": "3015_CHARLIE_ST_CLOUD", "objects": ["person", "person", "person", "car"], '
    '"interesting_scores": [0], "answer_likelihood": "possible", "img_fn": '
    '"lsmdc_3015_CHARLIE_ST_CLOUD/3015_CHARLIE_ST_CLOUD_00.23.57.935-00.24.00.783@0.jpg", '
    '"metadata_fn": '
    '"lsmdc_3015_CHARLIE_ST_CLOUD/3015_CHARLIE_ST_CLOUD_00.23.57.935-00.24.00.783@0.json", '
    '"answer_orig": "No she does not", "question_orig": "Does 3 feel comfortable?", "rationale_orig":'
    ' "She is standing with her arms crossed and looks disturbed", "question": ["Does", [2], "feel", '
    '"comfortable", "?"], "answer_match_iter": [3, 0, 2, 1], "answer_sources": [3287, 0, 10184, '
    '2260], "answer_choices": [["Yes", "because", "the", "person", "sitting", "next", "to", "her", '
    '"is", "smiling", "."], ["No", "she", "does", "not", "."], ["Yes", ",", "she", "is", "wearing", '
    '"something", "with", "thin", "straps", "."], ["Yes", ",", "she", "is", "cold", "."]], '
    '"answer_label": 1, "rationale_choices": [["There", "is", "snow", "on", "the", "ground", ",", '
    '"and", "she", "is", "wearing", "a", "coat", "and", "hate", "."], ["She", "is", "standing", '
    '"with", "her", "arms", "crossed", "and", "looks", "disturbed", "."], ["She", "is", "sitting", '
    '"very", "rigidly", "and", "tensely", "on", "the", "edge", "of", "the", "bed", ".", "her", '
    '"posture", "is", "not", "relaxed", "and", "her", "face", "looks", "serious", "."], [[2], "is", '
    '"laying", "in", "bed", "but", "not", "sleeping", ".", "she", "looks", "sad", "and", "is", '
    '"curled", "into", "a", "ball", "."]], "rationale_sources": [1921, 0, 9750, 25743], '
    '"rationale_match_iter": [3, 0, 2, 1], "rationale_label": 1, "img_id": "train-0", '
    '"question_number": 0, "annot_id": "train-0", "match_fold": "train-0", "match_index": 0}'
)

# VCR train-0 (LSMDC 3015_CHARLIE_ST_CLOUD), question ["Does", [2], "feel", "comfortable", "?"].
TRAIN0_QA = (
    "Question: Does [2] feel comfortable ?"
    " 1. Yes because the person sitting next to her is smiling ."
    " 2. No she does not ."
    " 3. Yes , she is wearing something with thin straps ."
    " 4. Yes , she is cold ."
    " Answer: "
)
# given the gold answer (answer_label 1: "No she does not ."); note the two spaces after "Why?"
# (" Why? " then " 1. ") and no "Answer:" at the end.
TRAIN0_QAR = (
    "Question: Does [2] feel comfortable ? Answer: No she does not . Why? "
    " 1. There is snow on the ground , and she is wearing a coat and hate ."
    " 2. She is standing with her arms crossed and looks disturbed ."
    " 3. She is sitting very rigidly and tensely on the edge of the bed . her posture is not relaxed"
    " and her face looks serious ."
    " 4. [2] is laying in bed but not sleeping . she looks sad and is curled into a ball ."
)


@pytest.fixture(scope="module")
def train0(tmp_path_factory) -> VcrExample:
    path = tmp_path_factory.mktemp("vcr_released") / "train.jsonl"
    path.write_text(TRAIN0_LINE + "\n")
    (example,) = load_examples(path)
    return example


def _example(question, answers, rationales, labels=(0, 0)):
    return VcrExample("x-0", "a.jpg", "a.json", question, answers, rationales, *labels)


def test_real_record_prompts_are_the_released_ones(train0):
    layout = PromptLayout()  # the defaults
    assert train0.answer_label == 1 and train0.rationale_label == 1
    assert layout.qa_prompt(train0) == ["Let", "[2] be", ObjectSlot(2), TRAIN0_QA]
    assert layout.qar_prompt(train0, 1) == ["Let", "[2] be", ObjectSlot(2), TRAIN0_QAR]
    # Q->AR with a predicted answer 3 ("Yes , she is cold ."): the same layout
    assert layout.qar_text(train0, 3).startswith(
        "Question: Does [2] feel comfortable ? Answer: Yes , she is cold . Why?  1. There is snow")


def test_real_record_t5_input_is_the_released_one(tiny_model, train0):
    """Token by token: "Let" and each "[i] be" tokenized alone without </s>, Z_i, then the
    question text with its </s> (the trailing space of "Answer: " included)."""
    from lavis_regionvlm.vcr.embed import interleaved_pieces

    tokenizer, embed = tiny_model.t5_tokenizer, tiny_model.t5_model.encoder.embed_tokens
    n, d = tiny_model.query_tokens.shape[1], embed.weight.shape[1]
    z2 = torch.randn(n, d, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, mask = tiny_model.lm.embed(interleaved_pieces([PromptLayout().qa_prompt(train0)], [{2: z2}]))
        released = torch.cat([
            embed(tokenizer("Let", return_tensors="pt").input_ids[:, :-1])[0],
            embed(tokenizer("[2] be", return_tensors="pt").input_ids[:, :-1])[0],
            z2,
            embed(tokenizer(TRAIN0_QA, return_tensors="pt").input_ids)[0],
        ])
    assert ours.shape[1] == released.shape[0] and bool(mask.all())
    assert torch.equal(ours[0], released)


def test_tokens_are_joined_with_spaces_and_id_lists_printed_as_lists():
    assert join_tokens(["What", "is", [1, 10], "doing", "?"]) == "What is [1, 10] doing ?"
    assert join_tokens([[0], "and", [3], "."]) == "[0] and [3] ."


def test_objects_are_those_the_prompt_names_in_the_released_order():
    # The question names [9] and [1]; answer 2 names [1, 10]; a rationale names [3].
    example = _example(["Is", [9], "next", "to", [1], "?"],
                       [["yes"], [[1, 10], "are"], ["no"], ["maybe"]],
                       [["because"], [[3], "says", "so"], ["x"], ["y"]])
    layout = PromptLayout()
    qa = layout.qa_prompt(example)
    assert qa[-1] == "Question: Is [9] next to [1] ? 1. yes 2. [1, 10] are 3. no 4. maybe Answer: "
    # ids read from the Q->A text: 9, 1, 1, 10; the released blocks follow a Python set's
    # iteration: 9 -> slot 1, 1 collides there and moves to slot (1*5+1) % 8 = 6, 10 -> slot 2.
    assert qa[:-1] == ["Let", "[9] be", ObjectSlot(9), "[10] be", ObjectSlot(10), "[1] be", ObjectSlot(1)]
    # QA->R given answer 0 names only the question's objects and [3]: 9 (slot 1), 1 (slot 6), 3 (slot 3)
    qar = layout.qar_prompt(example, 0)
    assert qar[-1] == "Question: Is [9] next to [1] ? Answer: yes Why?  1. because 2. [3] says so 3. x 4. y"
    assert slot_ids(qar) == [9, 3, 1]
    # ours: every object of the question, sorted, in every prompt
    assert slot_ids(PromptLayout(objects="all").qar_prompt(example, 0)) == [1, 3, 9, 10]


def test_prompt_without_objects_still_starts_with_let():
    example = _example(["Is", "it", "raining", "?"], [["yes"], ["no"], ["a"], ["b"]], [["r"]] * 4)
    assert PromptLayout().qa_prompt(example) == [
        "Let", "Question: Is it raining ? 1. yes 2. no 3. a 4. b Answer: "]
    assert PromptLayout(layout="compact").qa_prompt(example) == [
        "Question: Is it raining ? 1. yes 2. no 3. a 4. b Answer: "]


def test_two_digit_id_is_one_object_and_the_released_parser_is_an_option():
    example = _example(["What", "is", [12], "doing", "?"], [["a"], ["b"], ["c"], ["d"]], [["r"]] * 4)
    assert PromptLayout().qa_prompt(example)[:3] == ["Let", "[12] be", ObjectSlot(12)]
    bug = PromptLayout(object_parser="digits_bug").qa_prompt(example)
    assert bug[:5] == ["Let", "[1] be", ObjectSlot(1), "[2] be", ObjectSlot(2)]
    assert bug[-1].startswith("Question: What is [12] doing ?")  # the text is unchanged
    assert parse_object_ids("[1, 10] and [3]") == [1, 10, 3]
    assert parse_object_ids("[1, 10] and [3]", "digits_bug") == [1, 1, 0, 3]
    assert example.region_ids == [1, 2, 12]  # the dataset gives a region to each of them


def test_natural_prompt_is_an_option():
    example = _example(["Why", "is", [12], "near", [0, 3], "?"],
                       [["a", str(n)] for n in range(4)], [["r", [0], str(n)] for n in range(4)])
    layout = PromptLayout(text="natural", objects="all")
    assert layout.qa_prompt(example)[-1] == (
        "Question: Why is [12] near [0] and [3]? 1. a 0 2. a 1 3. a 2 4. a 3 Answer:")
    assert layout.qar_prompt(example, 2)[-1] == (
        "Question: Why is [12] near [0] and [3]? Answer: a 2 Why? 1. r [0] 0 2. r [0] 1 3. r [0] 2 "
        "4. r [0] 3 Answer:")
    assert slot_ids(layout.qa_prompt(example)) == [0, 3, 12]


def test_output_without_a_number_is_choice_one():
    assert parse_choice("because she is cold") == 0
    assert parse_choice("") == 0
    # the released comparison is of strings: "3" is choice 3; "02", "12", "0" are none of 1-4
    assert [parse_choice(t) for t in ["3", "4. yes", "answer 2 or 3", "02", "12", "0"]] == [2, 3, 1, -1, -1, -1]
    assert parse_choice("because", no_number="invalid") == -1
    with pytest.raises(ValueError, match="vcr_no_number"):
        parse_choice("1", no_number="first")


def _task(**run):
    from lavis.common.registry import registry

    import lavis_regionvlm.tasks  # noqa: F401

    return registry.get_task_class("zero_shot_vcr").setup_task(cfg=SimpleNamespace(run_cfg=OmegaConf.create(run)))


def test_generation_is_five_beams_thirty_new_tokens_and_no_number_is_choice_one(tiny_model, train0, monkeypatch):
    meta = {"boxes": [[4, 4, 20, 20, 1.0], [10, 10, 40, 40, 1.0], [20, 8, 60, 50, 1.0], [0, 30, 30, 60, 1.0]],
            "segms": [[], [], [], []], "width": 64, "height": 64}
    samples = {"image": torch.zeros(1, 3, 64, 64), "example": [train0],
               "regions": [{i: object_region(meta, i) for i in train0.region_ids}]}
    seen, texts = [], tiny_model.t5_tokenizer(["because she is cold"], return_tensors="pt").input_ids

    def fake_generate(**kwargs):
        seen.append(kwargs)
        return texts.expand(kwargs["inputs_embeds"].shape[0], -1)

    monkeypatch.setattr(tiny_model.t5_model, "generate", fake_generate)
    (record,) = _task().valid_step(tiny_model, samples)
    assert seen, "generate was not called"
    for kwargs in seen:
        assert kwargs["num_beams"] == 5 and kwargs["max_new_tokens"] == 30 and kwargs["min_length"] == 1
        assert kwargs["do_sample"] is False and kwargs.get("num_return_sequences", 1) == 1
    # no number: choice 1 for the answer (index 0) and for both rationale prompts
    assert record["answer_pred"] == 0 and record["rationale_pred_gold"] == 0 and record["rationale_pred"] == 0
    assert record["object_ids"] == [2] and record["prompt"] == f"Let [2] be <Z2> {TRAIN0_QA}"
    metrics = vcr_accuracies([record])
    assert (metrics["q2a"], metrics["qa2r"], metrics["q2ar"]) == (0.0, 0.0, 0.0)  # gold is choice 2
    assert metrics["answers_without_number"] == 1 and metrics["invalid_answers"] == 0
    # ours: an output without a number is invalid, and no rationale is asked given it
    (record,) = _task(vcr_no_number="invalid").valid_step(tiny_model, samples)
    assert record["answer_pred"] == -1 and record["rationale_pred"] == -1 and record["rationale_pred_gold"] == -1


def test_bad_options_say_which_run_key():
    from lavis_regionvlm.datasets.config import ConfigError

    for key, value in [("vcr_prompt", "pretty"), ("vcr_objects", "some"), ("vcr_object_parser", "digits"),
                       ("vcr_layout", "nope"), ("vcr_no_number", "first"), ("max_len", 0),
                       ("max_prompt_tokens", 0)]:
        with pytest.raises(ConfigError, match=f"run.{key}"):
            _task(**{key: value})
    # the old option counted soft-prompt positions too: renamed, and the old key refused, not ignored
    with pytest.raises(ConfigError, match="run.max_input_len was renamed run.max_prompt_tokens"):
        _task(max_input_len=64)


@pytest.mark.parametrize("name", ["vcr_val.yaml", "vcr_test.yaml"])
def test_generation_projects_use_the_released_protocol(name, monkeypatch):
    from argparse import Namespace
    from pathlib import Path

    from lavis.common.config import Config

    monkeypatch.setenv("PWD", "/tmp")
    path = Path(__file__).resolve().parents[1] / "projects/regionvlm" / name
    task = _task(**OmegaConf.to_container(Config(Namespace(cfg_path=str(path), options=None)).run_cfg))
    assert task.layout == PromptLayout() == PromptLayout(
        layout="official", text="released", objects="prompt", object_parser="ids")
    assert (task.choice_method, task.num_beams, task.max_len, task.min_len, task.no_number) == (
        "generate", 5, 30, 1, "choice1")
    assert task.max_prompt_tokens is None  # the model's: no cut by default, as released
