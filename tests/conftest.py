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
