"""Telling the plugin's datasets which epoch comes next, through LAVIS's loader wrappers."""
from __future__ import annotations

from typing import Any

from lavis_regionvlm.datasets.base import SkippingDataset
from lavis_regionvlm.datasets.mix import RegionGlobalMixDataset

# Where each wrapper keeps what it wraps: IterLoader, PrefetchLoader, DataLoader.
_WRAPPED = ("_dataloader", "loader", "dataset")
_LISTS = ("datasets", "loaders")  # ConcatDataset, MultiIterLoader


def set_epoch(obj: Any, epoch: int) -> int:
    """Call `set_epoch(epoch)` on every plugin dataset reachable from `obj`.

    `obj`: a dataset, a (LAVIS) ConcatDataset, a DataLoader, or LAVIS's PrefetchLoader,
    IterLoader or MultiIterLoader around one. Call it before the epoch's first batch is drawn:
    LAVIS's IterLoader makes the new DataLoader iterator (and so the workers' copies of the
    dataset) lazily, on the epoch's first `next()`. Returns how many datasets were told.
    """
    if isinstance(obj, (SkippingDataset, RegionGlobalMixDataset)):
        obj.set_epoch(epoch)
        return 1
    attributes = vars(obj) if hasattr(obj, "__dict__") else {}
    children = [attributes[name] for name in _WRAPPED if name in attributes]
    children += [child for name in _LISTS for child in attributes.get(name, [])]
    return sum(set_epoch(child, epoch) for child in children)
