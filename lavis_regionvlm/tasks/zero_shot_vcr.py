"""`zero_shot_vcr`: answer VCR questions with one region embedding per referenced object.

For each question the objects its prompts refer to become regions (their polygon mask, or
box), each written as K points seeded per (question, object), encoded by the Q-Former into a
soft prompt Z_i and interleaved with the text in the language model input (see
`lavis_regionvlm.vcr.prompt`). Three settings are answered:
    Q->A   (question + 4 answers)
    QA->R  (question + GOLD answer + 4 rationales)
    Q->AR  (answer chosen, then the rationale chosen given the PREDICTED answer; right only
            when both are right)
Accuracies: `lavis_regionvlm.vcr.metrics.vcr_accuracies`. A split without labels (test) gets
predictions only: the log and the metrics file say so.

By default the prompts, the objects given a Z_i, the generation settings and the reading of
the output are those of the released evaluation (`eval_VCR.py`; tests/test_vcr_released.py),
except that `[12]` is object 12. Points are drawn once per (question, object), seeded; the
released script draws new unseeded points for every prompt.
Run config keys (`run:`), all optional:
    vcr_prompt: released      # released | natural (detokenised text; lavis_regionvlm.vcr.prompt)
    vcr_objects: prompt       # prompt (the objects its text names) | all (every object of the question)
    vcr_object_parser: ids    # ids ([12] is object 12) | digits_bug (the released parser: objects 1 and 2)
    vcr_layout: official      # official ("Let [i] be" Z_i ...) | compact | text_only
    qa_template / qar_template / choice_template: prompt text templates (PromptLayout; null =
                              the vcr_prompt style's)
    choice_method: generate   # generate (released: beam search, first number parsed) | rank (LM loss)
    vcr_no_number: choice1    # an output without a number: choice1 (released) | invalid (counted wrong)
    num_beams: 5
    max_len: 30               # new tokens generated
    min_len: 1                # min_length of the generated sequence
    rank_target: "{text}"     # candidate text scored by `rank`; fields {n}, {text}
    rank_score: mean          # mean | sum token NLL
    max_prompt_tokens: null   # prompt text tokens kept, end token included (soft prompts never cut);
                              # null = the model's max_prompt_tokens (default: no cut, as released)
    num_points: null          # K per object; null = the model's num_points
    point_quantize: null      # floor | round; null = the model's point_quantize
    seed: 0                   # with annot_id and object id, fixes each object's points

Results (LAVIS `result_dir`): `<split>_epoch<e>.json`, one record per question (duplicates
from the distributed sampler removed on `annot_id`), and `<split>_epoch<e>_metrics.json`.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Optional

import torch
from lavis.common.registry import registry
from lavis.tasks.base_task import BaseTask

import lavis_regionvlm.vcr.builder  # noqa: F401  (registers the `vcr` dataset builder)
from lavis_regionvlm.tasks.results import append_metrics, merged_results
from lavis_regionvlm.datasets.config import ConfigError
from lavis_regionvlm.vcr.choose import RANK_SCORES, generate_choices, rank_choices
from lavis_regionvlm.vcr.data import VcrExample, VcrFormatError, region_texts
from lavis_regionvlm.vcr.embed import interleaved_pieces
from lavis_regionvlm.vcr.metrics import NO_NUMBER, vcr_accuracies
from lavis_regionvlm.vcr.prompt import PromptLayout, prompt_text, slot_ids

logger = logging.getLogger(__name__)
CHOICE_METHODS = ("generate", "rank")


@registry.register_task("zero_shot_vcr")
class ZeroShotVCRTask(BaseTask):
    """Zero-shot VCR over a `vcr` dataset (one item per question)."""

    def __init__(self, layout: PromptLayout | None = None, choice_method: str = "generate",
                 rank_target: str = "{text}", rank_score: str = "mean", num_beams: int = 5,
                 max_len: int = 30, min_len: int = 1, no_number: str = "choice1",
                 max_prompt_tokens: Optional[int] = None, num_points: Optional[int] = None,
                 point_quantize: Optional[str] = None, seed: int = 0):
        super().__init__()
        if choice_method not in CHOICE_METHODS:
            raise ConfigError(f"run.choice_method must be one of {CHOICE_METHODS}, got {choice_method!r}")
        if rank_score not in RANK_SCORES:
            raise ConfigError(f"run.rank_score must be one of {RANK_SCORES}, got {rank_score!r}")
        if no_number not in NO_NUMBER:
            raise ConfigError(f"run.vcr_no_number must be one of {NO_NUMBER}, got {no_number!r}")
        for key, value, least in (("num_beams", num_beams, 1), ("max_len", max_len, 1), ("min_len", min_len, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ConfigError(f"run.{key} must be an int >= {least}, got {value!r}")
        self.layout = layout or PromptLayout()
        self.choice_method, self.rank_target, self.rank_score = choice_method, rank_target, rank_score
        self.num_beams, self.max_len, self.min_len, self.no_number = num_beams, max_len, min_len, no_number
        if max_prompt_tokens is not None and (isinstance(max_prompt_tokens, bool) or not isinstance(max_prompt_tokens, int)
                                              or max_prompt_tokens < 1):
            raise ConfigError(f"run.max_prompt_tokens must be null or an int >= 1, got {max_prompt_tokens!r}")
        self.max_prompt_tokens = max_prompt_tokens
        self.num_points, self.point_quantize, self.seed = num_points, point_quantize, seed

    @classmethod
    def setup_task(cls, cfg=None, **kwargs) -> "ZeroShotVCRTask":
        run = cfg.run_cfg if cfg is not None else {}
        get = run.get
        if get("max_input_len", None) is not None:
            raise ConfigError(
                "run.max_input_len was renamed run.max_prompt_tokens, and now counts the prompt's text "
                "tokens only (the end token included; soft prompts are never cut): set max_prompt_tokens"
            )
        try:
            layout = PromptLayout(
                layout=get("vcr_layout", "official"), text=get("vcr_prompt", "released"),
                objects=get("vcr_objects", "prompt"), object_parser=get("vcr_object_parser", "ids"),
                qa_template=get("qa_template", None), qar_template=get("qar_template", None),
                choice_template=get("choice_template", None),
            )
        except ValueError as error:
            raise ConfigError(f"run.{error}") from error
        return cls(
            layout, choice_method=get("choice_method", "generate"), rank_target=get("rank_target", "{text}"),
            rank_score=get("rank_score", "mean"), num_beams=get("num_beams", 5), max_len=get("max_len", 30),
            min_len=get("min_len", 1), no_number=get("vcr_no_number", "choice1"),
            max_prompt_tokens=get("max_prompt_tokens", None), num_points=get("num_points", None),
            point_quantize=get("point_quantize", None), seed=get("seed", 0),
        )

    # ------------------------------------------------------------------ inference

    def soft_prompts(self, model, image_embeds: torch.Tensor, examples: list[VcrExample],
                     regions: list[dict]) -> list[dict]:
        """Per question {object id: (N, D) soft prompt} for every object its prompts can name
        (`PromptLayout.candidate_objects`); one Q-Former call for the batch."""
        k = self.num_points or model.num_points
        quantize = self.point_quantize or model.point_quantize
        keys, texts, rows = [], [], []
        for row, (example, objects) in enumerate(zip(examples, regions)):
            wanted = [] if self.layout.layout == "text_only" else self.layout.candidate_objects(example)
            missing = [i for i in wanted if i not in objects]
            if missing:
                raise VcrFormatError(f"{example.annot_id}: the prompt names objects {missing} but the dataset "
                                     f"gave regions only for {sorted(objects)}")
            chosen = {i: objects[i] for i in wanted}
            for i, text in region_texts(chosen, example.annot_id, k, quantize, self.seed).items():
                keys.append((row, i))
                texts.append(text)
                rows.append(row)
        out = [dict() for _ in examples]
        if texts:
            embeds = model.encode_regions(image_embeds, texts, torch.tensor(rows, dtype=torch.long))
            for (row, i), z in zip(keys, embeds):
                out[row][i] = z
        return out

    def choose(self, model, prompts: list, slots: list[dict], candidates: list[list[str]]) -> dict:
        """Choices (and outputs or scores) for a batch of prompts, prompts cut at
        `max_prompt_tokens` (None: the model's)."""
        inputs = interleaved_pieces(prompts, slots)
        limit = self.max_prompt_tokens if self.max_prompt_tokens is not None else model.max_prompt_tokens
        if self.choice_method == "generate":
            choices, texts = generate_choices(model, inputs, self.num_beams, self.max_len, self.min_len,
                                              self.no_number, max_text_tokens=limit)
            return {"choices": choices, "outputs": texts, "scores": [None] * len(choices)}
        targets = [[self.rank_target.format(n=n, text=c) for n, c in enumerate(row, 1)] for row in candidates]
        choices, scores = rank_choices(model, inputs, targets, self.rank_score, max_text_tokens=limit)
        return {"choices": choices, "outputs": [None] * len(choices),
                "scores": [[round(float(s), 5) for s in row] for row in scores]}

    @torch.no_grad()
    def valid_step(self, model, samples: dict) -> list[dict]:
        """One record per question: predictions for Q->A, QA->R (gold answer) and Q->AR."""
        examples: list[VcrExample] = samples["example"]
        image_embeds = model.encode_image(samples["image"].to(model.device))
        slots = self.soft_prompts(model, image_embeds, examples, samples["regions"])

        qa_prompts = [self.layout.qa_prompt(e) for e in examples]
        answers = self.choose(
            model, qa_prompts, slots, [[self.layout.render(c) for c in e.answer_choices] for e in examples],
        )
        # Rationales are chosen given the gold answer (QA->R) and given the predicted one
        # (Q->AR); when they are the same answer, once.
        jobs = []  # (row, answer index)
        for row, (example, pred) in enumerate(zip(examples, answers["choices"])):
            conditions = {a for a in (example.answer_label, pred) if a is not None and a >= 0}
            jobs.extend((row, a) for a in sorted(conditions))
        by_job = {}
        if jobs:
            rationales = self.choose(
                model, [self.layout.qar_prompt(examples[r], a) for r, a in jobs], [slots[r] for r, _ in jobs],
                [[self.layout.render(c) for c in examples[r].rationale_choices] for r, _ in jobs],
            )
            for index, job in enumerate(jobs):
                by_job[job] = {k: v[index] for k, v in rationales.items()}

        records = []
        for row, example in enumerate(examples):
            pred = answers["choices"][row]
            given_gold = by_job.get((row, example.answer_label), {}) if example.answer_label is not None else {}
            given_pred = by_job.get((row, pred), {}) if pred >= 0 else {}
            records.append({
                "annot_id": example.annot_id, "img_fn": example.img_fn,
                "prompt": prompt_text(qa_prompts[row]),
                "object_ids": slot_ids(qa_prompts[row]),
                "answer_label": example.answer_label, "rationale_label": example.rationale_label,
                "answer_pred": pred,
                "answer_output": answers["outputs"][row], "answer_scores": answers["scores"][row],
                "rationale_pred_gold": given_gold.get("choices", -1) if given_gold else -1,
                "rationale_output_gold": given_gold.get("outputs"),
                "rationale_pred": given_pred.get("choices", -1) if given_pred else -1,
                "rationale_output": given_pred.get("outputs"), "rationale_scores": given_pred.get("scores"),
                "choice_method": self.choice_method,
            })
        return records

    # ------------------------------------------------------------------ results

    def after_evaluation(self, val_result: list[dict], split_name: str, epoch, **kwargs) -> dict:
        """Merge ranks (each question once), write results and metrics; metrics on rank 0."""
        result_file, records = merged_results(self, val_result, split_name, epoch, "annot_id")
        if records is None:
            return {"agg_metrics": 0.0}
        metrics = vcr_metrics(records, self.choice_method)
        if metrics["labeled"]:
            logger.info("VCR %s (%s): Q->A %.2f QA->R %.2f Q->AR %.2f over %d questions", split_name,
                        self.choice_method, metrics["q2a"], metrics["qa2r"], metrics["q2ar"], metrics["count"])
        else:
            logger.info("VCR %s has no labels: predictions for %d questions written to %s; "
                        "accuracies not computed", split_name, metrics["count"], result_file)
        metrics_file = Path(result_file).with_name(f"{split_name}_epoch{epoch}_metrics.json")
        metrics_file.write_text(json.dumps(metrics, indent=1))
        append_metrics(split_name, metrics, epoch)
        return metrics


def vcr_metrics(records: list[dict], choice_method: str = "generate") -> dict:
    """Metrics of a merged results list: accuracies when every record is labeled, else a note."""
    labeled = all(r.get("answer_label") is not None and r.get("rationale_label") is not None for r in records)
    if records and labeled:
        metrics = vcr_accuracies(records)
        return {**metrics, "labeled": True, "choice_method": choice_method, "agg_metrics": metrics["q2ar"]}
    return {"labeled": False, "count": len(records), "choice_method": choice_method, "agg_metrics": 0.0,
            "note": "split has no labels: predictions written, accuracies not computed"}
