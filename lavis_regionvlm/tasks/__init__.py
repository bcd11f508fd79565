"""Tasks registered with LAVIS: `region_captioning`, `zero_shot_ris`, `zero_shot_vcr`,
`captioning_offline`."""
from lavis_regionvlm.tasks.captioning_offline import OfflineCaptionTask  # noqa: F401
from lavis_regionvlm.tasks.region_captioning import RegionCaptioningTask  # noqa: F401
from lavis_regionvlm.tasks.zero_shot_ris import ZeroShotRISTask  # noqa: F401
from lavis_regionvlm.tasks.zero_shot_vcr import ZeroShotVCRTask  # noqa: F401
