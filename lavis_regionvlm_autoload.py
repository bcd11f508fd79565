"""Start-up hook: import `lavis_regionvlm` as soon as `lavis` has been imported.

LAVIS registers models, datasets and tasks by decorator at import time and has no
plugin discovery, so stock LAVIS entry points (its `train.py`, `evaluate.py`,
`lavis.models.load_model_and_preprocess`) would never see this plugin's names.
The installed `lavis_regionvlm_autoload.pth` calls `install()` at interpreter
start. That puts one finder on `sys.meta_path` and nothing else: no torch, no
lavis, no plugin import happens until some code imports `lavis`.

Set `LAVIS_REGIONVLM_AUTOLOAD=0` to switch the hook off.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import os
import sys
import warnings

_ENV_SWITCH = "LAVIS_REGIONVLM_AUTOLOAD"


class _ImportPluginAfterLavis(importlib.abc.Loader):
    """Wraps the loader of `lavis` and imports the plugin once `lavis` is executed."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        self._loader.exec_module(module)
        try:
            importlib.import_module("lavis_regionvlm")
        except Exception as exc:  # never break `import lavis` for other users
            warnings.warn(
                f"lavis_regionvlm could not register its models, datasets and tasks "
                f"with LAVIS ({type(exc).__name__}: {exc}). Import it directly to see "
                f"the full traceback, or set {_ENV_SWITCH}=0 to silence this hook.",
                RuntimeWarning,
                stacklevel=2,
            )

    def __getattr__(self, name):
        # Resource readers and the like still come from the real loader.
        return getattr(self._loader, name)


class _LavisFinder(importlib.abc.MetaPathFinder):
    """Finds `lavis` with the ordinary finders, then wraps its loader."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "lavis":
            return None
        uninstall()
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _ImportPluginAfterLavis(spec.loader)
        return spec


def install() -> None:
    """Add the finder to `sys.meta_path` (once; a no-op when switched off)."""
    if os.environ.get(_ENV_SWITCH, "1") == "0" or "lavis" in sys.modules:
        return
    if not any(isinstance(finder, _LavisFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _LavisFinder())


def uninstall() -> None:
    """Remove the finder from `sys.meta_path`."""
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _LavisFinder)]
