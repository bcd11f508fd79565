"""Which evaluations reproduce which tables, and the LAVIS config each one runs.

Every evaluation is a project YAML of `projects/regionvlm/` (the template) with:
- its data paths under the data root: values the YAMLs write as `data/...` become
  `<data-root>/...`, and `${oc.env:REGIONVLM_DATA}` is the data root;
- the model type and checkpoint given on the command line (Table 4's baselines: the baseline
  model type, BLIP-2 by default, see `model_type`);
- run overrides: device, output folder, the splits, and the variant's settings (`ris_method`,
  `dilation_px`, `num_points`);
- the user's `--options` (`datasets.*.` stands for the config's dataset).
The config written is resolved (no environment lookups left), so it records exactly what ran.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

from omegaconf import OmegaConf

from lavis_regionvlm.reproduce.paper import PaperTable

DATA_PREFIX = "data/"  # how the project YAMLs write paths under the data root
DATA_ENV = "REGIONVLM_DATA"


@dataclass(frozen=True)
class Evaluation:
    """One run of `lavis_regionvlm.evaluate`.

    name: its folder under --out and the `<evaluation>` of the measures in paper_tables.yaml;
    kind: ris | vcr | vqa | gqa | nocaps (how its inputs are checked and its metrics read);
    dataset: the data it reads (refcoco, refcoco+, refcocog, vcr, vqav2, okvqa, gqa, nocaps);
    template: the project YAML; splits: the splits it evaluates; run: run-config overrides.
    """

    name: str
    kind: str
    dataset: str
    template: str
    splits: tuple[str, ...]
    run: dict = field(default_factory=dict)


RIS_DATASETS = {  # dataset -> (template, name, splits of the plain evaluation)
    "refcoco": ("ris_refcoco_eval.yaml", "ris_refcoco", ("val", "testA", "testB")),
    "refcoco+": ("ris_refcoco_plus_eval.yaml", "ris_refcoco_plus", ("val", "testA", "testB")),
    "refcocog": ("ris_refcocog_eval.yaml", "ris_refcocog", ("val",)),  # the paper reports G-Ref val
}
BASELINE_METHODS = ("red_circle", "crop")
RIS_VARIANTS = {  # name suffix -> run overrides; variants run on val only (Tables 4, 6, 7)
    "_red_circle": {"ris_method": "red_circle"},
    "_crop": {"ris_method": "crop"},
    "_dilation3": {"dilation_px": 3},
    "_dilation7": {"dilation_px": 7},
    "_dilation15": {"dilation_px": 15},
    "_k5": {"num_points": 5},
    "_k15": {"num_points": 15},
}


def all_evaluations() -> dict[str, Evaluation]:
    """Every evaluation a table may refer to, by name."""
    found = [
        Evaluation("vcr_val", "vcr", "vcr", "vcr_val.yaml", ("val",)),
        Evaluation("vqav2", "vqa", "vqav2", "vqav2_zeroshot.yaml", ("val",)),
        Evaluation("okvqa", "vqa", "okvqa", "okvqa_zeroshot.yaml", ("test",)),
        Evaluation("gqa", "gqa", "gqa", "gqa_zeroshot.yaml", ("val",)),
        Evaluation("nocaps", "nocaps", "nocaps", "nocaps_zeroshot.yaml", ("val",)),
    ]
    for dataset, (template, name, splits) in RIS_DATASETS.items():
        found.append(Evaluation(name, "ris", dataset, template, splits))
        for suffix, run in RIS_VARIANTS.items():
            found.append(Evaluation(name + suffix, "ris", dataset, template, ("val",), dict(run)))
    return {e.name: e for e in found}


def plan_evaluations(tables: list[PaperTable]) -> list[Evaluation]:
    """The evaluations the tables' measures need, each once, in table order.

    ValueError when a measure names an unknown evaluation or a split it does not run.
    """
    known = all_evaluations()
    planned: dict[str, Evaluation] = {}
    for table in tables:
        for measure in table.measures:
            evaluation = known.get(measure.evaluation)
            if evaluation is None or measure.split not in evaluation.splits:
                raise ValueError(f"paper_tables.yaml, table {table.number}: no evaluation runs {measure}")
            planned.setdefault(evaluation.name, evaluation)
    return list(planned.values())


@dataclass(frozen=True)
class Settings:
    """What the command line sets for every evaluation."""

    data_root: Path
    projects: Path
    out: Path
    model_type: str
    checkpoint: Optional[Path]
    device: str
    options: tuple[str, ...] = ()
    baseline_model_type: Optional[str] = None  # Table 4's baselines; None = model_type (with the checkpoint)


@contextlib.contextmanager
def data_env(data_root: Path) -> Iterator[None]:
    """`REGIONVLM_DATA` = the data root while a template is resolved."""
    before = os.environ.get(DATA_ENV)
    os.environ[DATA_ENV] = str(data_root)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(DATA_ENV, None)
        else:
            os.environ[DATA_ENV] = before


def under_data_root(value: Any, data_root: Path) -> Any:
    """Every string `data/<rest>` in a config tree -> `<data_root>/<rest>`."""
    if isinstance(value, dict):
        return {k: under_data_root(v, data_root) for k, v in value.items()}
    if isinstance(value, list):
        return [under_data_root(v, data_root) for v in value]
    if isinstance(value, str) and value.startswith(DATA_PREFIX):
        return str(data_root / value[len(DATA_PREFIX):])
    return value


def load_template(path: Path, data_root: Path) -> dict:
    """A project YAML, resolved, with its data paths under the data root."""
    if not path.is_file():
        raise FileNotFoundError(f"project YAML {path} does not exist (--projects names the folder)")
    with data_env(data_root):
        config = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    return under_data_root(config, data_root)


def job_dir(evaluation: Evaluation, settings: Settings) -> Path:
    """Where LAVIS's runner writes the evaluation: `<out>/<name>/run/` (result/, evaluate.txt)."""
    return settings.out / evaluation.name / "run"


def model_type(evaluation: Evaluation, settings: Settings) -> str:
    """The model an evaluation runs: Table 4's baselines (`ris_method` red_circle | crop) run
    on `settings.baseline_model_type` when set (the paper ran them on BLIP-2), the rest on the
    model being reproduced."""
    if evaluation.run.get("ris_method") in BASELINE_METHODS and settings.baseline_model_type:
        return settings.baseline_model_type
    return settings.model_type


def evaluation_config(evaluation: Evaluation, settings: Settings) -> dict:
    """The full LAVIS config of one evaluation (see the module docstring)."""
    config = load_template(settings.projects / evaluation.template, settings.data_root)
    model = config["model"]
    model["model_type"] = model_type(evaluation, settings)
    if settings.checkpoint is not None and model["model_type"] == settings.model_type:
        model["load_finetuned"] = True
        model["finetuned"] = str(settings.checkpoint)
    (dataset_name,) = config["datasets"]
    build_info = config["datasets"][dataset_name].setdefault("build_info", {})
    if evaluation.kind in ("ris", "vcr"):
        build_info["splits"] = list(evaluation.splits)
    run = config["run"]
    run.update(evaluation.run)
    run.update({"device": settings.device, "output_dir": str(settings.out / evaluation.name), "job_id": "run",
                "test_splits": list(evaluation.splits), "evaluate": True})
    # LAVIS's runner makes a loader for every split its builder made (OK-VQA and GQA build
    # their train split too) and reads run.batch_size_train for it even when only evaluating;
    # okvqa_zeroshot.yaml and gqa_zeroshot.yaml do not set it.
    run.setdefault("batch_size_train", run.get("batch_size_eval", 1))
    if settings.options:
        dotlist = [o.replace("datasets.*.", f"datasets.{dataset_name}.", 1) for o in settings.options]
        merged = OmegaConf.merge(OmegaConf.create(config), OmegaConf.from_dotlist(dotlist))
        config = OmegaConf.to_container(merged, resolve=True)
    return config


def proposal_config(dataset: str, splits: list[str], ris_config: dict, sam_template: Path,
                    settings: Settings) -> dict:
    """The `lavis_regionvlm.ris.proposals` config that fills the proposal folder of a RIS
    evaluation config: its images, REFER annotations and splits, the SAM of `sam_template`."""
    config = load_template(sam_template, settings.data_root)
    (dataset_cfg,) = ris_config["datasets"].values()
    info = dataset_cfg["build_info"]
    config["images"] = {"root": info["images"], "refer": {
        "ann_dir": info["ann_dir"], "split_by": info.get("split_by", "unc"), "splits": list(splits)}}
    config["output_dir"] = info["proposals"]
    config.setdefault("sam", {})["device"] = settings.device
    return config


def save_config(config: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(OmegaConf.create(config), path)
