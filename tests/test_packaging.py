"""Both install modes carry the start-up hook: `pip install .` and `pip install -e .`.

pip builds through setuptools' PEP 517 backend; these tests call the same backend
hooks (`build_wheel`, `build_editable`) on a clean copy of the tracked files and
look inside the wheels pip would install.
"""
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PTH = "lavis_regionvlm_autoload.pth"


@pytest.fixture(scope="module")
def clean_copy(tmp_path_factory):
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, check=True,
    ).stdout.decode().split("\0")
    target = tmp_path_factory.mktemp("src")
    for name in filter(None, files):
        if (REPO / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, target / name)
    return target


def build(source: Path, hook: str, out: Path) -> zipfile.ZipFile:
    code = f"import setuptools.build_meta as b; print(b.{hook}({str(out)!r}))"
    result = subprocess.run([sys.executable, "-c", code], cwd=source, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    return zipfile.ZipFile(out / result.stdout.strip().splitlines()[-1])


def test_regular_wheel_installs_the_hook_the_package_and_its_files(clean_copy, tmp_path):
    wheel = build(clean_copy, "build_wheel", tmp_path)
    names = set(wheel.namelist())
    assert PTH in names and "lavis_regionvlm_autoload.py" in names
    assert wheel.read(PTH).decode().startswith("import lavis_regionvlm_autoload")
    for shipped in (
        "lavis_regionvlm/configs/models/blip2_t5_region_tiny.yaml",
        "lavis_regionvlm/assets/tiny/bert/vocab.txt",
        "lavis_regionvlm/assets/tiny/t5/tokenizer.json",
        "lavis_regionvlm/models/blip2_t5_region.py",
        "lavis_regionvlm/configs/models/blip2_opt_region_tiny.yaml",
        "lavis_regionvlm/assets/tiny/opt/vocab.json",
        "lavis_regionvlm/assets/tiny/opt/merges.txt",
        "lavis_regionvlm/assets/tiny/opt/config.json",
        "lavis_regionvlm/models/lm/opt.py",
    ):
        assert shipped in names, shipped


def test_editable_wheel_installs_the_hook_too(clean_copy, tmp_path):
    wheel = build(clean_copy, "build_editable", tmp_path)
    assert PTH in wheel.namelist()
    assert wheel.read(PTH).decode().startswith("import lavis_regionvlm_autoload")


def test_wheel_carries_the_projects_and_its_command_writes_them(clean_copy, tmp_path):
    """A wheel install has no repository checkout: the project YAMLs ride inside the package
    and `python -m lavis_regionvlm.projects --out DIR` writes them from there."""
    wheel = build(clean_copy, "build_wheel", tmp_path / "dist")
    projects = sorted(p.name for p in (REPO / "projects/regionvlm").glob("*.yaml"))
    packaged = sorted(n.rsplit("/", 1)[1] for n in wheel.namelist()
                      if n.startswith("lavis_regionvlm/projects/regionvlm/"))
    assert packaged == projects and "eval_tiny.yaml" in packaged
    installed = tmp_path / "site"
    wheel.extractall(installed)
    env = {**os.environ, "PYTHONPATH": str(installed), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "lavis_regionvlm.projects", "--out", str(tmp_path / "mine")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"from {installed / 'lavis_regionvlm/projects/regionvlm'} to" in done.stdout, done.stdout
    assert sorted(p.name for p in (tmp_path / "mine").glob("*.yaml")) == projects
    assert (tmp_path / "mine/eval_tiny.yaml").read_text() == (REPO / "projects/regionvlm/eval_tiny.yaml").read_text()
