"""Start-up hook: import `lavis_regionvlm.registration` as soon as `lavis` has been imported.

LAVIS registers models, datasets and tasks by decorator at import time and has no
plugin discovery, so stock LAVIS entry points (its `train.py`, `evaluate.py`,
`lavis.models.load_model_and_preprocess`) would never see this plugin's names.
The installed `lavis_regionvlm_autoload.pth` calls `install()` at interpreter
start. That puts one finder on `sys.meta_path` and nothing else: no torch, no
lavis, no plugin import happens until some code imports `lavis`.

When a plugin module is being imported at that moment (the plugin's own code imports
`lavis`), the hook registers nothing: registering then would import plugin modules that are
only half initialised. Plugin modules register what they define themselves, and the plugin's
entry points (launchers, CLI, demo, predictor) import `lavis_regionvlm.registration`.

Set `LAVIS_REGIONVLM_AUTOLOAD=0` to switch the hook off.

Two more jobs live here because they must run before `lavis` is imported and import
nothing but the standard library:
- `quiet_import_warnings()`: while `lavis` imports, hide the deprecation warnings its
  dependencies raise under current torch (timm's `torch.jit.script`, fairscale's
  `torch.cuda.amp.custom_fwd/custom_bwd`); only those messages from those modules, only
  during that import. The hook and `lavis_regionvlm.registration` import LAVIS inside it.
- `startup_hook_problem()`: why the hook did not run in this process, with the fix.
  `python -m lavis_regionvlm_autoload` prints it (exit 1) or says the hook is active.
  Code of ours can only tell when it runs: with the hook missing, LAVIS's own `train.py`
  never imports the plugin and reports only "Model 'blip2_t5_region' has not been
  registered"; our launchers, `python -m lavis_regionvlm.projects` and this module's
  command say what is wrong.
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.abc
import importlib.util
import os
import sys
import warnings
from typing import Iterator, Optional

_ENV_SWITCH = "LAVIS_REGIONVLM_AUTOLOAD"
PLUGIN = "lavis_regionvlm"
REGISTRATION_MODULE = "lavis_regionvlm.registration"
PTH_NAME = "lavis_regionvlm_autoload.pth"

# Deprecation warnings raised while `lavis` imports its dependencies, which neither a LAVIS
# user nor this plugin can act on: (message regex, category, emitting module regex).
IMPORT_TIME_WARNINGS = (
    # timm.models.layers.activations_jit decorates with @torch.jit.script at import
    (r"`torch\.jit\.script` is deprecated", FutureWarning, r"torch\.jit\._script\Z"),
    # fairscale.experimental.nn.offload wraps torch.cuda.amp.custom_fwd/custom_bwd at import
    (r"`torch\.cuda\.amp\.custom_(fwd|bwd)\(args\.\.\.\)` is deprecated", FutureWarning, r"fairscale\."),
)

# torch deprecations raised by calls inside LAVIS's own code at run time (its runner's
# GradScaler, its task's and BLIP-2's autocast; GPU runs): filtered for the `lavis.*` callers
# only, by our launchers (`ignore_lavis_call_warnings`).
LAVIS_CALL_WARNINGS = (
    (r"`torch\.cuda\.amp\.(autocast|GradScaler)\(args\.\.\.\)` is deprecated", FutureWarning, r"lavis\."),
)

_install_ran = False  # install() was called in this process (by the .pth at start-up)


class _ImportPluginAfterLavis(importlib.abc.Loader):
    """Wraps the loader of `lavis` and imports the plugin once `lavis` is executed."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        with quiet_import_warnings():
            self._loader.exec_module(module)
        if plugin_import_in_progress():
            return  # a plugin module imports lavis: it registers through its own imports
        try:
            importlib.import_module(REGISTRATION_MODULE)
        except Exception as exc:  # never break `import lavis` for other users
            warnings.warn(
                f"lavis_regionvlm could not register its models, datasets and tasks "
                f"with LAVIS ({type(exc).__name__}: {exc}). Import it directly to see "
                f"the full traceback (import {REGISTRATION_MODULE}), or set {_ENV_SWITCH}=0 "
                f"to silence this hook.",
                RuntimeWarning,
                stacklevel=2,
            )

    def __getattr__(self, name):
        # Resource readers and the like still come from the real loader.
        return getattr(self._loader, name)


def plugin_import_in_progress() -> bool:
    """Whether some `lavis_regionvlm` module is executing its import right now."""
    return any(
        getattr(getattr(module, "__spec__", None), "_initializing", False)
        for name, module in list(sys.modules.items())
        if name == PLUGIN or name.startswith(PLUGIN + ".")
    )


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
    global _install_ran
    _install_ran = True
    if os.environ.get(_ENV_SWITCH, "1") == "0" or "lavis" in sys.modules:
        return
    if not any(isinstance(finder, _LavisFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _LavisFinder())


def uninstall() -> None:
    """Remove the finder from `sys.meta_path`."""
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _LavisFinder)]


@contextlib.contextmanager
def quiet_import_warnings() -> Iterator[None]:
    """Ignore IMPORT_TIME_WARNINGS inside the block, then remove exactly the filters added
    (filters the imported packages add for themselves stay, as without this)."""
    before = list(warnings.filters)
    added = []
    for message, category, module in IMPORT_TIME_WARNINGS:
        warnings.filterwarnings("ignore", message, category, module)
        added.append(warnings.filters[0])
    try:
        yield
    finally:
        for item in added:
            if item not in before and item in warnings.filters:
                warnings.filters.remove(item)


def ignore_lavis_call_warnings() -> None:
    """Ignore LAVIS_CALL_WARNINGS from here on (warnings LAVIS's code raises, nobody else's)."""
    for message, category, module in LAVIS_CALL_WARNINGS:
        warnings.filterwarnings("ignore", message, category, module)


def _site_dirs() -> list:
    """The folders whose `.pth` files Python runs at start-up."""
    import site

    dirs = list(site.getsitepackages()) if hasattr(site, "getsitepackages") else []
    if site.ENABLE_USER_SITE:
        dirs.append(site.getusersitepackages())
    return dirs


def startup_hook_problem() -> Optional[str]:
    """None when the start-up hook ran in this process; else what is wrong and the fix."""
    consequence = (
        "LAVIS's own train.py / evaluate.py and code that never imports lavis_regionvlm "
        "(load_model_and_preprocess) will report \"Model 'blip2_t5_region' has not been "
        "registered\"."
    )
    if os.environ.get(_ENV_SWITCH, "1") == "0":
        return (f"the lavis_regionvlm start-up hook is switched off ({_ENV_SWITCH}=0): "
                f"{consequence} Fix: unset {_ENV_SWITCH}.")
    if _install_ran:
        return None
    found = [d for d in _site_dirs() if os.path.isfile(os.path.join(d, PTH_NAME))]
    where = (f"{PTH_NAME} is in {found[0]} but Python did not run it at start-up (python -S, or "
             f"another Python environment)" if found else
             f"{PTH_NAME} is not in this Python's site-packages ({', '.join(_site_dirs())})")
    return (f"the lavis_regionvlm start-up hook did not run: {where}. {consequence} Fix: "
            f"reinstall the plugin into the Python that runs LAVIS from the checkout or the "
            f"wheel you installed it from (lavis-regionvlm is not on a package index): "
            f"{sys.executable} -m pip install --force-reinstall --no-deps PATH_TO_CHECKOUT "
            f"(or the .whl file), or pip install -e . in the checkout; both write the .pth. "
            f"Or import {REGISTRATION_MODULE} in your script before LAVIS reads the config.")


def main() -> int:
    """`python -m lavis_regionvlm_autoload`: say whether the start-up hook is active."""
    import lavis_regionvlm_autoload as hook  # the module the .pth ran, not this __main__

    problem = hook.startup_hook_problem()
    if problem:
        print(problem, file=sys.stderr)
        return 1
    print("the lavis_regionvlm start-up hook is active: importing lavis registers the plugin")
    return 0


if __name__ == "__main__":
    sys.exit(main())
