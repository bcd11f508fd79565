"""Shared fixtures. Everything runs offline: no hub, no downloads."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def plugin_registered():
    """Every plugin name in LAVIS's registry, as in a user's process (the start-up hook).

    A test module that imports a plugin module before `lavis` gets only that module's
    registrations from the hook (see `lavis_regionvlm_autoload`); this completes them."""
    import lavis_regionvlm.registration  # noqa: F401


@pytest.fixture(scope="session")
def tiny_model():
    """The `tiny` model in eval mode, loaded once through LAVIS's public API."""
    from lavis.models import load_model_and_preprocess

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
            ("lavis_regionvlm.preparation.synthetic", ["--out", str(data), "--num-images", str(num_images)]),
            ("lavis_regionvlm.preparation.prepare_synthetic", ["--root", str(data)]),
        ):
            subprocess.run([sys.executable, "-m", module, *args], check=True, env=env, capture_output=True)
        return root

    return make


@pytest.fixture(scope="session")
def random_image():
    """A function (seed=0, size=(48, 80)) -> an (H, W, 3) uint8 noise image."""
    import numpy as np

    def make(seed=0, size=(48, 80)):
        return (np.random.default_rng(seed).random((*size, 3)) * 255).astype(np.uint8)

    return make


@pytest.fixture
def vit_calls(predictor):
    """Counts forward passes of the ViT of `predictor` (the test module's fixture) while the
    test runs."""
    calls = []
    handle = predictor.model.visual_encoder.register_forward_hook(lambda *a: calls.append(1))
    yield calls
    handle.remove()


@pytest.fixture(scope="session")
def scene_png(tmp_path_factory):
    """A 64x64 PNG: a red disc on the left, a blue square on the right, light background."""
    from PIL import Image, ImageDraw

    path = tmp_path_factory.mktemp("scene") / "scene.png"
    image = Image.new("RGB", (64, 64), (235, 235, 225))
    draw = ImageDraw.Draw(image)
    draw.ellipse((6, 20, 28, 42), fill=(220, 30, 30))
    draw.rectangle((38, 22, 58, 42), fill=(30, 60, 220))
    image.save(path)
    return path


@pytest.fixture(scope="module")
def demo_server():
    """A function (model="blip2_t5_region", **DemoConfig fields) -> a running demo server on
    127.0.0.1 and a free port, around that model's `tiny` type: a namespace with `url` and
    `predictor` (its base predictor). Servers stop at the end of the module."""
    from types import SimpleNamespace

    from lavis_regionvlm.demo import DemoConfig, create_app, start_server
    from lavis_regionvlm.interactive import RegionPredictor

    running = []

    def start(model: str = "blip2_t5_region", **config):
        predictor = RegionPredictor.from_pretrained("tiny", name=model)
        server = start_server(create_app(predictor, DemoConfig(**config)))
        running.append(server)
        return SimpleNamespace(url=server.url, predictor=predictor)

    yield start
    for server in running:
        server.stop()
