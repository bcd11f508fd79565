"""Install `lavis_regionvlm`, the RegionVLM plugin for Salesforce LAVIS.

Besides the package, the install writes `lavis_regionvlm_autoload.pth` into
site-packages. Python runs that one line at start-up; it only registers a tiny
import hook (no torch, no lavis import) that imports `lavis_regionvlm.registration`
right after `lavis` finishes importing. That is how stock LAVIS entry points
(`train.py`, `load_model_and_preprocess`) see the plugin's registry names
without importing it. Both `pip install .` and `pip install -e .` write it:
PEP 660 editable wheels skip `build_py` outputs outside packages, so the
editable command is extended too.

`build_py` also copies the project YAMLs (`projects/regionvlm/*.yaml`) into the package
as `lavis_regionvlm/projects/regionvlm/`, so a wheel install has them
(`python -m lavis_regionvlm.projects --out DIR` writes them out). An editable install
reads them from the checkout.
"""
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py
from setuptools.command.editable_wheel import editable_wheel

HERE = Path(__file__).parent
PTH_NAME = "lavis_regionvlm_autoload.pth"
PTH_LINE = "import lavis_regionvlm_autoload; lavis_regionvlm_autoload.install()\n"
PROJECTS = Path("projects") / "regionvlm"
PACKAGED_PROJECTS = Path("lavis_regionvlm") / "projects" / "regionvlm"


class BuildPyWithStartupHook(build_py):
    """`build_py` that also places the start-up `.pth` at the wheel's root and the
    project YAMLs inside the package."""

    def run(self):
        super().run()
        target = Path(self.build_lib) / PTH_NAME
        target.write_text(PTH_LINE)
        sources = sorted((HERE / PROJECTS).glob("*.yaml"))
        if not sources:
            raise RuntimeError(f"no project YAMLs in {HERE / PROJECTS}: the wheel would have none")
        (Path(self.build_lib) / PACKAGED_PROJECTS).mkdir(parents=True, exist_ok=True)
        for source in sources:
            self.copy_file(str(source), str(Path(self.build_lib) / PACKAGED_PROJECTS / source.name))

    def get_outputs(self, include_bytecode=True):
        return super().get_outputs(include_bytecode) + [
            str(Path(self.build_lib) / PTH_NAME)
        ] + [str(Path(self.build_lib) / PACKAGED_PROJECTS / p.name) for p in (HERE / PROJECTS).glob("*.yaml")]


class EditableWheelWithStartupHook(editable_wheel):
    """PEP 660 editable wheel that also carries the start-up `.pth`."""

    def _install_namespaces(self, installation_dir, pth_prefix):
        super()._install_namespaces(installation_dir, pth_prefix)
        (Path(installation_dir) / PTH_NAME).write_text(PTH_LINE)


setup(
    name="lavis-regionvlm",
    version="0.1.0",
    description=(
        "RegionVLM (NAACL 2024) for Salesforce LAVIS: BLIP-2 FlanT5 that understands "
        "the image region a user points at"
    ),
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="BSD-3-Clause",
    python_requires=">=3.9",
    packages=find_packages(include=["lavis_regionvlm", "lavis_regionvlm.*"]),
    py_modules=["lavis_regionvlm_autoload"],
    include_package_data=True,
    package_data={"lavis_regionvlm": ["configs/**/*.yaml", "assets/**/*", "demo/static/*"]},
    install_requires=[
        "salesforce-lavis==1.0.2",
        # LAVIS 1.0.2's working pins (its own metadata is looser than what runs).
        "transformers>=4.25,<4.27",
        "huggingface-hub<1.0",
        "numpy<2",
        "pandas<3",
        "opencv-python-headless==4.5.5.64",
        "torch>=2.1",
        "torchvision>=0.16",
        "segment-anything>=1.0",
        "pycocotools>=2.0.6",
        "pycocoevalcap",
        "webdataset",
        "omegaconf",
        "sentencepiece",
        "Pillow",
        "tqdm",
        # the web demo (`regionvlm demo`)
        "fastapi>=0.110",
        "uvicorn>=0.29",
        "python-multipart>=0.0.9",
    ],
    extras_require={
        # the browser test drives Debian's chromium (scripts/test.sh installs it)
        "test": ["pytest>=7", "httpx>=0.27", "playwright>=1.44"],
    },
    entry_points={"console_scripts": ["regionvlm = lavis_regionvlm.cli:main"]},
    cmdclass={
        "build_py": BuildPyWithStartupHook,
        "editable_wheel": EditableWheelWithStartupHook,
    },
)
