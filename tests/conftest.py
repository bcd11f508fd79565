"""Shared fixtures. Everything runs offline: no hub, no downloads."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model():
    """The `tiny` model in eval mode, loaded once through LAVIS's public API."""
    from lavis.models import load_model_and_preprocess

    import lavis_regionvlm  # noqa: F401

    model, vis, txt = load_model_and_preprocess("blip2_t5_region", "tiny", is_eval=True)
    return model


@pytest.fixture(scope="session")
def tiny_config():
    """The `tiny` model's YAML as an OmegaConf node (copy before changing it)."""
    from omegaconf import OmegaConf

    from lavis_regionvlm.models import Blip2T5Region

    return OmegaConf.load(Blip2T5Region.default_config_path("tiny"))


@pytest.fixture
def images():
    """Two different (3, 64, 64) normalised-looking images, fixed by seed."""
    import torch

    generator = torch.Generator().manual_seed(0)
    return torch.randn(2, 3, 64, 64, generator=generator)


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread for a module: on a shared 2-core machine two threads fight the
    other jobs (the RIS timing-sensitive and training tests use it)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def prepared_synthetic_workdir(tmp_path_factory):
    """A function (name, num_images) -> a working directory whose data/synthetic holds a
    generated and prepared synthetic dataset, made with the commands users run."""
    import subprocess
    import sys

    def make(name: str, num_images: int):
        root = tmp_path_factory.mktemp(name)
        data = root / "data/synthetic"
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        for module, args in (
            ("lavis_regionvlm.data.synthetic", ["--out", str(data), "--num-images", str(num_images)]),
            ("lavis_regionvlm.data.prepare_synthetic", ["--root", str(data)]),
        ):
            subprocess.run([sys.executable, "-m", module, *args], check=True, env=env, capture_output=True)
        return root

    return make
