"""`zero_shot_vcr` with the `tiny` model on synthetic VCR files: both ways of choosing give
valid choices, QA->R and Q->AR are answered as defined, the unlabeled test split gets
predictions only, and the LAVIS runner (2 gloo processes) writes each question once."""
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    from lavis_regionvlm.preparation.synthetic import generate_synthetic_dataset

    root = tmp_path_factory.mktemp("vcr_task") / "synthetic"
    generate_synthetic_dataset(root, num_images=24, val_fraction=0.25)
    return root / "vcr"


@pytest.fixture(scope="module")
def datasets(synthetic):
    from lavis.common.registry import registry

    import lavis_regionvlm.datasets.vcr_builder  # noqa: F401

    cfg = OmegaConf.create({
        "data_type": "images",
        "build_info": {"ann_dir": str(synthetic), "images": str(synthetic / "vcr1images"), "splits": ["val", "test"]},
        "vis_processor": {"eval": {"name": "blip_image_eval", "image_size": 64}},
    })
    return registry.get_builder_class("vcr")(cfg).build_datasets()


def make_task(**run):
    from lavis.common.registry import registry

    import lavis_regionvlm.tasks  # noqa: F401

    return registry.get_task_class("zero_shot_vcr").setup_task(cfg=SimpleNamespace(run_cfg=OmegaConf.create(run)))


def run_split(task, model, dataset):
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, collate_fn=dataset.collater)
    return [r for samples in loader for r in task.valid_step(model, samples)]


def test_rank_always_gives_a_valid_choice(tiny_model, datasets):
    records = run_split(make_task(choice_method="rank"), tiny_model, datasets["val"])
    assert len(records) == len(datasets["val"])
    for r in records:
        assert r["answer_pred"] in range(4) and r["rationale_pred_gold"] in range(4)
        assert r["rationale_pred"] in range(4)
        assert r["answer_pred"] == min(range(4), key=r["answer_scores"].__getitem__)
        if r["answer_pred"] == r["answer_label"]:  # same answer given -> same rationale choice
            assert r["rationale_pred"] == r["rationale_pred_gold"]


def test_generate_parses_the_first_number(tiny_model, datasets, monkeypatch):
    from lavis_regionvlm.vcr.metrics import parse_choice

    task = make_task(choice_method="generate", num_beams=2, max_len=4)
    records = run_split(task, tiny_model, datasets["val"])  # random weights: mostly no number
    for r in records:
        assert r["answer_pred"] == parse_choice(r["answer_output"])
    # a model that answers "3. ..." picks choice index 2 for everything, valid
    tokenizer = tiny_model.t5_tokenizer
    ids = tokenizer(["3. because"], return_tensors="pt").input_ids

    def fake_generate(inputs_embeds, attention_mask, **kwargs):
        assert inputs_embeds.shape[:2] == attention_mask.shape and kwargs["num_beams"] == 2
        return ids.expand(inputs_embeds.shape[0], -1)

    monkeypatch.setattr(tiny_model.t5_model, "generate", fake_generate)
    records = run_split(task, tiny_model, datasets["val"])
    assert {r["answer_pred"] for r in records} == {2} and {r["rationale_pred"] for r in records} == {2}
    assert all(r["rationale_pred_gold"] == 2 for r in records)


def test_interleaved_input_holds_each_object_soft_prompt(tiny_model, datasets):
    from lavis_regionvlm.vcr.embed import interleaved_pieces
    from lavis_regionvlm.vcr.prompt import slot_ids

    task = make_task(choice_method="rank")
    dataset = datasets["val"]
    samples = dataset.collater([dataset[i] for i in range(len(dataset))])
    examples = samples["example"]
    embeds = tiny_model.encode_image(samples["image"])
    slots = task.soft_prompts(tiny_model, embeds, examples, samples["regions"])
    row = next(i for i, e in enumerate(examples) if len(e.object_ids) >= 2)  # "[9, 10]"-style
    prompts = [task.layout.qa_prompt(e) for e in examples]
    inputs, mask = tiny_model.lm.embed(interleaved_pieces(prompts, slots))
    n = tiny_model.query_tokens.shape[1]
    first, second = slot_ids(prompts[row])[:2]
    ids = tiny_model.t5_tokenizer(["Let", f"[{first}] be", f"[{second}] be"], add_special_tokens=False).input_ids
    start = len(ids[0]) + len(ids[1])
    assert torch.equal(inputs[row, start: start + n], slots[row][first])
    start += n + len(ids[2])
    assert torch.equal(inputs[row, start: start + n], slots[row][second])
    lengths = mask.sum(1)
    assert lengths.max() == inputs.shape[1] and (mask[:, 0] == 1).all()
    assert all(mask[i, lengths[i]:].sum() == 0 for i in range(len(examples)))


def test_test_split_gets_predictions_but_no_accuracies(tiny_model, datasets, tmp_path):
    from lavis.common.registry import registry

    registry.mapping["paths"]["result_dir"] = str(tmp_path)
    registry.mapping["paths"]["output_dir"] = str(tmp_path)
    task = make_task(choice_method="rank")
    records = run_split(task, tiny_model, datasets["test"])
    assert all(r["answer_label"] is None and r["rationale_pred_gold"] == -1 for r in records)
    assert all(r["rationale_pred"] in range(4) for r in records)  # given the predicted answer
    metrics = task.after_evaluation(records + records[:2], "test", 0)  # padded-sampler repeats
    assert metrics["labeled"] is False and "q2a" not in metrics and "accuracies not computed" in metrics["note"]
    saved = json.loads((tmp_path / "test_epoch0.json").read_text())
    assert sorted(r["annot_id"] for r in saved) == sorted(e.annot_id for e in datasets["test"].examples)


@pytest.mark.slow  # about 50 s: two processes load LAVIS
@pytest.mark.parametrize("project", ["vcr_synthetic_tiny", "vcr_synthetic_tiny_opt"])  # T5, OPT
def test_runner_two_processes_writes_each_question_once(synthetic, tmp_path, project):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "lavis_regionvlm.evaluate", "--cfg-path", str(ROOT / f"projects/regionvlm/{project}.yaml"),
        "--options", f"datasets.vcr.build_info.ann_dir={synthetic}",
        f"datasets.vcr.build_info.images={synthetic / 'vcr1images'}", f"run.output_dir={tmp_path / 'out'}",
        "run.batch_size_eval=2",
    ]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    result_dir = tmp_path / "out/eval/result"
    assert (result_dir / "val_epochbest_rank1.json").is_file()  # both ranks wrote their share
    val = json.loads((result_dir / "val_epochbest.json").read_text())
    expected = [json.loads(line)["annot_id"] for line in (synthetic / "val.jsonl").read_text().splitlines()]
    assert sorted(r["annot_id"] for r in val) == sorted(expected)
    metrics = json.loads((result_dir / "val_epochbest_metrics.json").read_text())
    assert metrics["labeled"] and metrics["count"] == len(expected) and metrics["invalid_answers"] == 0
    assert 0 <= metrics["q2ar"] <= min(metrics["q2a"], 100)
    test_metrics = json.loads((result_dir / "test_epochbest_metrics.json").read_text())
    assert test_metrics["labeled"] is False
    assert len(json.loads((result_dir / "test_epochbest.json").read_text())) == len(
        (synthetic / "test.jsonl").read_text().splitlines())
