"""The project YAMLs (`projects/regionvlm/*.yaml`), also for a wheel install.

The repository keeps them in `projects/regionvlm/`; building the wheel copies them into the
package as `lavis_regionvlm/projects/regionvlm/` (setup.py's `build_py`). `projects_dir()`
finds whichever this install has, and

    python -m lavis_regionvlm.projects --out DIR      (or: regionvlm projects --out DIR)

writes them into a folder the user names, to run with LAVIS's `train.py` or our launchers.
Their paths do not depend on that folder: data paths are `${regionvlm_data:...}` (the data
root: `--options run.data_root=DIR` or `REGIONVLM_DATA`), output folders
`${regionvlm_cwd:...}` (under the working directory).
"""
from __future__ import annotations

import shutil
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_NAME = "regionvlm"


def projects_dir() -> Path:
    """The folder holding the project YAMLs: the copy packaged into a wheel, else the
    source checkout's `projects/regionvlm` (editable install, PYTHONPATH)."""
    for candidate in (PACKAGE_DIR / PROJECT_NAME, PACKAGE_DIR.parents[1] / "projects" / PROJECT_NAME):
        if any(candidate.glob("*.yaml")):
            return candidate
    raise FileNotFoundError(
        f"no project YAMLs in {PACKAGE_DIR / PROJECT_NAME} (wheel) nor in "
        f"{PACKAGE_DIR.parents[1] / 'projects' / PROJECT_NAME} (source checkout): reinstall lavis-regionvlm"
    )


def project_files() -> list[Path]:
    """Every project YAML, sorted by name."""
    return sorted(projects_dir().glob("*.yaml"))


def project_path(name: str) -> Path:
    """The path of one project YAML by file name (`eval_tiny.yaml`, or `eval_tiny`)."""
    path = projects_dir() / (name if name.endswith(".yaml") else f"{name}.yaml")
    if not path.is_file():
        known = ", ".join(p.name for p in project_files())
        raise FileNotFoundError(f"no project {name!r}; the projects are: {known}")
    return path


def write_projects(out: Path, overwrite: bool = False) -> list[Path]:
    """Copy every project YAML into `out` (made if missing). Refuses, before writing
    anything, to replace files already there unless `overwrite`. Returns the written paths."""
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} is a file, not a folder")
    sources = project_files()
    clashes = [out / s.name for s in sources if (out / s.name).exists()]
    if clashes and not overwrite:
        raise FileExistsError(
            f"--out {out} already holds {', '.join(p.name for p in clashes)}: "
            "pass --force to overwrite them, or name another folder"
        )
    out.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copyfile(source, out / source.name)) for source in sources]
