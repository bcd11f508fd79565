"""Tasks registered with LAVIS."""
from lavis_regionvlm.tasks.region_captioning import RegionCaptioningTask  # noqa: F401
from lavis_regionvlm.tasks.zero_shot_ris import ZeroShotRISTask  # noqa: F401
