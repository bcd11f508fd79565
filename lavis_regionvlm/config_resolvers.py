"""OmegaConf resolvers that make the project YAMLs work wherever they are run from.

Registered by `lavis_regionvlm.registration` (the start-up hook imports it right after
`lavis`, so LAVIS's own `train.py` / `evaluate.py` resolve them too), and by the commands
that read project YAMLs without LAVIS (`reproduce`, `ris.proposals`):

- `${regionvlm_cwd:output/x}`: `output/x` under the working directory, as an absolute path.
  Output folders are written this way because LAVIS's stock runner joins a relative
  `output_dir` to LAVIS's install folder (`registry.get_path("library_root")`), and
  `${oc.env:PWD}` fails when `PWD` is unset and is stale after a `cd` in a script.
- `${regionvlm_data:coco/images}`: `coco/images` under the data root, as an absolute path.
  The data root is set in one place: `--options run.data_root=DIR` (the config key
  `run.data_root`) or else the environment variable `REGIONVLM_DATA`; with neither, the
  interpolation fails with a message naming both (and OmegaConf adds the key it resolved).
  `${regionvlm_data:synthetic/images,data}` gives a default root (relative to the working
  directory) used when neither is set: the quick-start YAMLs use `data`, where the
  synthetic data commands write.

A relative data root is taken from the working directory. Paths holding OmegaConf's
special characters (braces of a shard range) are quoted: `${regionvlm_data:'laion/{0..9}.tar'}`.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import omegaconf
from omegaconf import OmegaConf

DATA_ROOT_KEY = "run.data_root"
DATA_ROOT_ENV = "REGIONVLM_DATA"
CWD_RESOLVER = "regionvlm_cwd"
DATA_RESOLVER = "regionvlm_data"


class DataRootError(ValueError):
    """No data root is set for a `${regionvlm_data:...}` path."""


def under_cwd(path: Any = "") -> str:
    """`path` (relative) under the current working directory, absolute; an absolute or
    `~` path is returned expanded and otherwise unchanged."""
    return str(Path.cwd() / Path(str(path)).expanduser())


def _configured_data_root(root_node: Any) -> Optional[str]:
    """`run.data_root` of the config being resolved; of a config without `run` (a builder's
    copy of its node), that of the LAVIS run in progress (the config LAVIS registered)."""
    has_run = root_node is not None and OmegaConf.select(root_node, "run", default=None) is not None
    value = OmegaConf.select(root_node, DATA_ROOT_KEY, default=None) if has_run else None
    if not has_run:
        from lavis.common.registry import registry

        lavis_config = registry.get("configuration", no_warning=True)
        if lavis_config is not None:
            value = OmegaConf.select(lavis_config.config, DATA_ROOT_KEY, default=None)
    return None if value in (None, "") else str(value)


def data_root(root_node: Any = None, default: Optional[str] = None) -> Path:
    """The data root: `run.data_root`, else `$REGIONVLM_DATA`, else `default`, made
    absolute from the working directory. Raises DataRootError when none is set."""
    value = _configured_data_root(root_node) or os.environ.get(DATA_ROOT_ENV) or default
    if not value:
        raise DataRootError(
            f"this project reads its data under a data root, and none is set: pass "
            f"--options {DATA_ROOT_KEY}=/your/data, or set the environment variable "
            f"{DATA_ROOT_ENV}=/your/data (the option wins when both are set)"
        )
    return Path.cwd() / Path(value).expanduser()


def under_data_root(path: Any = "", default_root: Any = None, *, _root_: Any = None) -> str:
    """The `${regionvlm_data:path[,default_root]}` resolver."""
    return str(data_root(_root_, None if default_root is None else str(default_root)) / str(path))


def register_resolvers() -> None:
    """Register both resolvers with OmegaConf (once per process; later calls do nothing)."""
    # OmegaConf 2.1-2.3 name it register_new_resolver; 2.4 renamed it register_resolver
    # and deprecates the old name (its 2.0 `register_resolver` took strings only).
    version = tuple(int(part) for part in omegaconf.__version__.split(".")[:2])
    register = OmegaConf.register_resolver if version >= (2, 4) else OmegaConf.register_new_resolver
    for name, resolver in ((CWD_RESOLVER, under_cwd), (DATA_RESOLVER, under_data_root)):
        if not OmegaConf.has_resolver(name):
            register(name, resolver)
