"""The LAVIS user's path: the project YAMLs under LAVIS's own `train.py` loop (evaluate: True),
output folders and data roots that do not depend on where LAVIS is installed or where the
YAML lies, the projects for a wheel install, `model_zoo`, the start-up hook diagnosis, and no
third-party deprecation warnings from our launchers."""
import io
import os
import re
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import pytest
from omegaconf import OmegaConf

import lavis_regionvlm.registration  # noqa: F401  (registers the resolvers, as the start-up hook does)
import lavis_regionvlm_autoload as autoload
from lavis_regionvlm.config_resolvers import DataRootError, data_root
from lavis_regionvlm.projects import project_files, project_path, projects_dir, write_projects

REPO = Path(__file__).resolve().parents[1]
PROJECTS = REPO / "projects/regionvlm"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
for _key in ("RANK", "WORLD_SIZE", "REGIONVLM_DATA"):
    ENV.pop(_key, None)
RUN_CONFIGS = sorted(p for p in PROJECTS.glob("*.yaml") if "\nrun:" in p.read_text())
EVAL_CONFIGS = [p for p in RUN_CONFIGS if OmegaConf.load(p).run.get("evaluate")]
# The third-party deprecation warnings every process printed before the first useful line.
KNOWN_WARNINGS = re.compile(r"`torch\.jit\.script` is deprecated|torch\.cuda\.amp\.custom_(fwd|bwd)")


def lavis_config(path: Path, *options: str):
    """The config LAVIS's train.py builds from `--cfg-path path --options ...`."""
    from lavis.common.config import Config

    return Config(Namespace(cfg_path=str(path), options=list(options) or None))


# ---------------------------------------------------------------- LAVIS's train.py loop


def test_there_are_fifteen_eval_projects():  # 13 for FlanT5, the synthetic RIS and VCR ones for OPT
    assert len(EVAL_CONFIGS) == 15, [p.name for p in EVAL_CONFIGS]


@pytest.mark.parametrize("path", EVAL_CONFIGS, ids=[p.name for p in EVAL_CONFIGS])
def test_eval_projects_have_what_lavis_train_py_reads(path):
    """LAVIS's train.py calls runner.train(), whose epoch loop reads run.max_epoch also when
    evaluate is True ("Missing key max_epoch" without it); one pass, no training."""
    run = OmegaConf.load(path).run
    assert run.evaluate is True
    assert int(run.max_epoch) == 1


@pytest.mark.slow  # about 60 s on 2 shared cores
def test_eval_tiny_reads_the_checkpoint_a_short_training_writes(prepared_synthetic_workdir):
    """train_tiny.yaml for 1 epoch, then eval_tiny.yaml with no options, both through the
    launcher's `runner.train()` (what LAVIS's train.py runs): the default checkpoint exists,
    outputs land under the working directory, and stderr holds no third-party deprecation
    warning."""
    workdir = prepared_synthetic_workdir("lavis_path_train_eval", 24)
    train = subprocess.run(
        [sys.executable, "-m", "lavis_regionvlm.train", "--cfg-path", str(PROJECTS / "train_tiny.yaml"),
         "--options", "run.max_epoch=1", "run.valid_splits=[]", "run.num_workers=0", "run.cpu_threads=1"],
        cwd=workdir, env=ENV, capture_output=True, text=True, timeout=600)
    assert train.returncode == 0, train.stderr[-3000:]
    assert not (workdir / "output/regionvlm_tiny/train/checkpoint_best.pth").exists()  # no validation ran

    evaluate = subprocess.run(
        [sys.executable, "-m", "lavis_regionvlm.train", "--cfg-path", str(PROJECTS / "eval_tiny.yaml"),
         "--options", "run.num_workers=0"],
        cwd=workdir, env=ENV, capture_output=True, text=True, timeout=600)
    assert evaluate.returncode == 0, evaluate.stderr[-3000:]
    assert "checkpoint_latest.pth: fine-tuned checkpoint" in evaluate.stderr
    assert (workdir / "output/regionvlm_tiny/eval/result/val_epoch0.json").is_file()
    for result in (train, evaluate):
        assert not KNOWN_WARNINGS.search(result.stderr), result.stderr[:2000]
        assert "FutureWarning" not in result.stderr, result.stderr[:2000]


# ---------------------------------------------------------------- output folders, data roots


@pytest.mark.parametrize("path", RUN_CONFIGS, ids=[p.name for p in RUN_CONFIGS])
def test_output_dir_is_under_the_working_directory_also_for_the_stock_runner(path, tmp_path, monkeypatch):
    """LAVIS's RunnerBase writes to library_root / output_dir: only an absolute output_dir
    keeps the output out of LAVIS's install folder. No project reads $PWD."""
    from lavis.common.registry import registry

    assert "oc.env:PWD" not in path.read_text()
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PWD", raising=False)
    cfg = lavis_config(path, "run.data_root=/data")
    written = Path(registry.get_path("library_root")) / cfg.run_cfg.output_dir
    assert written.is_absolute() and written.parent == tmp_path / "output", written


@pytest.mark.parametrize("name,key", [
    ("ris_refcoco_eval.yaml", "datasets.refcoco_ris.build_info.ann_dir"),
    ("vcr_val.yaml", "datasets.vcr.build_info.images"),
    ("vqav2_zeroshot.yaml", "datasets.coco_vqa.build_info.images.storage"),
])
def test_data_paths_come_from_the_data_root(name, key, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("REGIONVLM_DATA", raising=False)
    cfg = lavis_config(PROJECTS / name)
    with pytest.raises(Exception) as missing:
        OmegaConf.select(cfg.config, key)
    message = str(missing.value)
    assert "run.data_root" in message and "REGIONVLM_DATA" in message and key in message

    monkeypatch.setenv("REGIONVLM_DATA", "/from/env")
    assert OmegaConf.select(cfg.config, key).startswith("/from/env/")
    # the option wins over the environment; a relative root is taken from the working directory
    optioned = lavis_config(PROJECTS / name, "run.data_root=mine")
    assert OmegaConf.select(optioned.config, key).startswith(str(tmp_path / "mine") + "/")


def test_data_root_resolves_in_node_copies_of_the_running_config(tmp_path, monkeypatch):
    """Builders merge their config node into fresh configs without `run`: the option of the
    LAVIS run in progress still applies."""
    monkeypatch.delenv("REGIONVLM_DATA", raising=False)
    cfg = lavis_config(PROJECTS / "vcr_val.yaml", "run.data_root=/opt")
    copy = OmegaConf.merge(OmegaConf.create(), {"b": cfg.config.datasets.vcr.build_info})
    assert copy.b.ann_dir == "/opt/vcr"


def test_synthetic_projects_default_to_data_under_the_working_directory(tmp_path, monkeypatch):
    from lavis.common.registry import registry

    monkeypatch.setitem(registry.mapping["state"], "configuration", None)  # no LAVIS run in progress
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("REGIONVLM_DATA", raising=False)
    assert data_root(None, "data") == tmp_path / "data"
    with pytest.raises(DataRootError):
        data_root(None)
    cfg = lavis_config(PROJECTS / "ris_synthetic_tiny.yaml")
    assert cfg.config.datasets.refcoco_ris.build_info.ann_dir == str(tmp_path / "data/synthetic/refcoco")


# ---------------------------------------------------------------- projects for a wheel install


def test_projects_are_found_and_written_where_the_user_says(tmp_path):
    assert projects_dir() == PROJECTS  # a source checkout reads its own folder
    assert project_path("eval_tiny") == PROJECTS / "eval_tiny.yaml"
    with pytest.raises(FileNotFoundError, match="eval_tiny.yaml"):
        project_path("eval_tiy")
    written = write_projects(tmp_path / "mine")
    assert sorted(p.name for p in written) == sorted(p.name for p in project_files())
    assert (tmp_path / "mine/eval_tiny.yaml").read_text() == (PROJECTS / "eval_tiny.yaml").read_text()
    with pytest.raises(FileExistsError, match="--force"):
        write_projects(tmp_path / "mine")
    assert len(write_projects(tmp_path / "mine", overwrite=True)) == len(written)


def test_regionvlm_projects_writes_them_and_refuses_to_overwrite(tmp_path):
    from lavis_regionvlm.cli import main

    out, err = io.StringIO(), io.StringIO()
    assert main(["projects", "--out", str(tmp_path)], stdout=out, stderr=err) == 0, err.getvalue()
    assert (tmp_path / "vcr_val.yaml").read_text() == (PROJECTS / "vcr_val.yaml").read_text()
    err = io.StringIO()
    assert main(["projects", "--out", str(tmp_path)], stdout=io.StringIO(), stderr=err) == 2
    assert err.getvalue().startswith("regionvlm projects: error: --out") and "--force" in err.getvalue()
    assert main(["projects", "--out", str(tmp_path), "--force"], stdout=io.StringIO(), stderr=err) == 0


def test_projects_command_reports_a_missing_start_up_hook(tmp_path, monkeypatch):
    from lavis_regionvlm.projects.__main__ import run

    monkeypatch.setattr(autoload, "_install_ran", False)
    monkeypatch.setattr(autoload, "_site_dirs", lambda: [str(tmp_path)])
    out, err = io.StringIO(), io.StringIO()
    assert run(Namespace(out=tmp_path / "p", force=False), out, err) == 0
    assert "wrote" in out.getvalue()
    assert "lavis_regionvlm_autoload.pth is not in" in err.getvalue()
    assert "has not been registered" in err.getvalue() and "pip install" in err.getvalue()
    err = io.StringIO()
    assert run(Namespace(out=tmp_path / "p", force=False), io.StringIO(), err) == 2
    assert "--force" in err.getvalue()


# ---------------------------------------------------------------- model zoo, start-up hook


def run_python(code: str, *flags: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *flags, "-c", code], capture_output=True, text=True,
                          env=env or ENV, timeout=300)


def test_model_zoo_lists_the_plugin_in_a_fresh_process():
    done = run_python("from lavis.models import model_zoo; print(model_zoo)")
    assert done.returncode == 0, done.stderr[-2000:]
    line = next(l for l in done.stdout.splitlines() if l.startswith("blip2_t5_region"))
    assert line.split(None, 1)[1] == "tiny, pretrain_flant5xl, regionvlm_flant5xl, pretrain_flant5xxl, regionvlm_flant5xxl"
    line = next(l for l in done.stdout.splitlines() if l.startswith("blip2_opt_region"))
    assert line.split(None, 1)[1] == "tiny, pretrain_opt2.7b, pretrain_opt6.7b"


def test_hook_check_command_says_active_or_what_to_fix():
    active = run_python("import runpy; runpy.run_module('lavis_regionvlm_autoload', run_name='__main__')")
    assert active.returncode == 0 and "hook is active" in active.stdout
    off = run_python("import runpy; runpy.run_module('lavis_regionvlm_autoload', run_name='__main__')",
                     env={**ENV, "LAVIS_REGIONVLM_AUTOLOAD": "0"})
    assert off.returncode == 1 and "unset LAVIS_REGIONVLM_AUTOLOAD" in off.stderr
    # python -S: the .pth files are not run (a hook that is not installed looks the same)
    import site

    code = (f"import sys; sys.path[:0] = [{str(REPO)!r}]; sys.path += {site.getsitepackages()!r}; "
            "import runpy; runpy.run_module('lavis_regionvlm_autoload', run_name='__main__')")
    missing = run_python(code, "-S")
    assert missing.returncode == 1, missing.stderr
    assert "did not run" in missing.stderr and "has not been registered" in missing.stderr
    assert "pip install" in missing.stderr and "import lavis_regionvlm.registration" in missing.stderr
    # the plugin is not on a package index: the fix names the checkout or the wheel, not a name
    assert "from the checkout or the wheel" in missing.stderr
    assert "install --force-reinstall --no-deps lavis-regionvlm" not in missing.stderr


# ---------------------------------------------------------------- warnings


@pytest.mark.parametrize("how,switch", [("the start-up hook", "1"),
                                        ("import lavis_regionvlm.registration", "0")])
def test_importing_lavis_prints_no_known_third_party_warning(how, switch):
    code = "import lavis_regionvlm.registration" if switch == "0" else "import lavis"
    done = run_python(code, env={**ENV, "LAVIS_REGIONVLM_AUTOLOAD": switch, "PYTHONWARNINGS": "default"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert not KNOWN_WARNINGS.search(done.stderr), done.stderr


def test_quieting_is_limited_to_those_messages_during_the_import():
    """Filters the imported packages add stay; torch.jit.script still warns a user who calls
    it later; the launchers' run-time filters hide a torch deprecation raised by LAVIS's own
    code, never the same message raised by the project's code."""
    code = """
import warnings
import lavis
names = [str(f[1].pattern) if f[1] else "" for f in warnings.filters]
print("spacy-filters-kept", any("W036" in n for n in names))
print("import-filters-left", any("jit\\\\.script" in n or "custom_(fwd" in n for n in names))
import torch
from lavis_regionvlm_autoload import ignore_lavis_call_warnings
ignore_lavis_call_warnings()
message = "`torch.cuda.amp.autocast(args...)` is deprecated. Please use ..."
with warnings.catch_warnings(record=True) as seen:
    warnings.simplefilter("default")
    ignore_lavis_call_warnings()
    torch.jit.script(torch.nn.Identity())
    warnings.warn_explicit(message, FutureWarning, "base_task.py", 1, module="lavis.tasks.base_task")
    warnings.warn_explicit(message, FutureWarning, "predictor.py", 2, module="lavis_regionvlm.interactive.predictor")
print("user-jit-warned", any("jit.script" in str(w.message) for w in seen))
print("lavis-call-warned", any(w.filename == "base_task.py" for w in seen))
print("own-warned", any(w.filename == "predictor.py" for w in seen))
"""
    done = run_python(code)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["spacy-filters-kept", "True", "import-filters-left", "False",
                                   "user-jit-warned", "True", "lavis-call-warned", "False",
                                   "own-warned", "True"]


@pytest.mark.parametrize("name", ["train.yaml", "train_variant.yaml"])
def test_prepare_commands_in_the_training_projects_parse(name, monkeypatch):
    """The prepare_ln commands the YAML's comments give have every required argument."""
    import shlex

    import lavis_regionvlm.preparation.prepare_ln as prepare_ln

    text = (PROJECTS / name).read_text().replace("\\\n#      ", " ")
    commands = [line.split("python -m lavis_regionvlm.preparation.prepare_ln", 1)[1]
                for line in text.splitlines() if "python -m lavis_regionvlm.preparation.prepare_ln" in line]
    assert commands
    seen = []
    fake_meta = {"inputs": [], "num_samples": 1, "num_records": 1, "num_narratives": 1, "seconds": 0.0,
                 "skip_counts": {}, "found_by_template": {}}
    monkeypatch.setattr(prepare_ln, "prepare_ln", lambda *args: seen.append(args) or fake_meta)
    monkeypatch.setenv("REGIONVLM_DATA", "/data")
    for command in commands:
        argv = [os.path.expandvars(word) for word in shlex.split(command)]
        prepare_ln.main(argv)  # argparse exits 2 on a missing required argument
    assert len(seen) == len(commands) and all(args[1].startswith("/data/") for args in seen)


@pytest.mark.slow  # about 60 s on 2 shared cores
def test_quick_start_prints_steps_and_table_without_third_party_warnings(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "lavis_regionvlm.quickstart", "--num-images", "20", "--epochs", "1",
         "--no-ablation", "--nproc", "1", "--workdir", str(tmp_path)],
        cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("$ ") == 4 and "own phrase ranked first" in done.stdout
    assert not KNOWN_WARNINGS.search(done.stderr) and "FutureWarning" not in done.stderr, done.stderr[:3000]
