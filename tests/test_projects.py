"""Every project YAML is a valid LAVIS config whose names are all registered."""
from argparse import Namespace
from pathlib import Path

import pytest
from lavis.common.config import Config
from lavis.common.registry import registry

PROJECTS = sorted(  # LAVIS run configs (other YAMLs there configure commands, e.g. SAM proposals)
    path for path in (Path(__file__).resolve().parents[1] / "projects" / "regionvlm").glob("*.yaml")
    if "\nrun:" in path.read_text()
)


@pytest.mark.parametrize("path", PROJECTS, ids=[p.name for p in PROJECTS])
def test_project_yaml_loads_through_lavis_config(path, monkeypatch):
    monkeypatch.setenv("PWD", "/tmp")
    cfg = Config(Namespace(cfg_path=str(path), options=None))
    run = cfg.run_cfg
    assert registry.get_task_class(run.task) is not None, run.task
    assert registry.get_runner_class(run.get("runner", "runner_base")) is not None
    assert registry.get_model_class(cfg.model_cfg.arch) is not None
    for name in cfg.datasets_cfg:
        assert registry.get_builder_class(name) is not None, name
    if run.get("lr_sched"):
        import lavis.common.optims  # noqa: F401  (registers the schedulers)

        assert registry.get_lr_scheduler_class(run.lr_sched) is not None


@pytest.mark.parametrize("name", ["okvqa_zeroshot.yaml", "gqa_zeroshot.yaml"])
def test_vqa_projects_set_the_train_batch_size_lavis_reads(name):
    """LAVIS's OK-VQA and GQA builders also build a train split, and its runner then reads
    run.batch_size_train even for an evaluation: without it the run stops with
    `ConfigAttributeError: Missing key batch_size_train`."""
    cfg = Config(Namespace(cfg_path=str(PROJECTS[0].parent / name), options=None))
    assert int(cfg.run_cfg.batch_size_train) > 0
