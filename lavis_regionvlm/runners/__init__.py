"""Runners registered with LAVIS: `runner_region` (CPU/gloo and GPU, mid-epoch resume)."""
from lavis_regionvlm.runners.runner_region import RegionRunner

__all__ = ["RegionRunner"]
