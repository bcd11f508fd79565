"""Load checkpoint files safely and report where every weight came from."""
from __future__ import annotations

import logging
import os
import pickle
import zipfile
from dataclasses import dataclass, field

import torch

from lavis_regionvlm.paths import resolve_path

logger = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
    """A checkpoint could not be found, read, or matched to the model."""


def _local_file(url_or_path: str) -> str:
    """Download a URL into the torch hub cache (as LAVIS does) or check a local path."""
    from lavis.common.dist_utils import download_cached_file
    from lavis.common.utils import is_url

    path = resolve_path(url_or_path)
    if is_url(path):
        return download_cached_file(path, check_hash=False, progress=True)
    if not os.path.isfile(path):
        raise CheckpointError(
            f"checkpoint {url_or_path!r} is neither a URL nor an existing file; "
            "set the model config's path to a local copy"
        )
    return path


def can_mmap(path: str) -> bool:
    """True if `torch.load(mmap=True)` can map the file: the zip format `torch.save` has
    written since torch 1.6. Legacy (non-zip) pickles, as some LAVIS-era files may be,
    can only be read whole."""
    return zipfile.is_zipfile(path)


def load_state_dict(url_or_path: str, mmap: bool = False) -> dict[str, torch.Tensor]:
    """Read a checkpoint with `torch.load(weights_only=True)`.

    Accepts a bare state dict or LAVIS's `{"model": state_dict, ...}` layout.
    A file that holds arbitrary Python objects is refused with what to do.
    mmap: map the file instead of reading it (its tensors then read pages of the file
    on first use); a legacy non-zip file is read whole instead, with a log line.
    """
    path = _local_file(url_or_path)
    if mmap and not can_mmap(path):
        logger.info("%s is a legacy (non-zip) torch file: read whole, not memory-mapped "
                    "(re-save it with torch.save to map it)", path)
        mmap = False
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path} holds Python objects besides tensors, so it was not loaded "
            f"(torch.load(weights_only=True) refused it: {str(exc).splitlines()[0]}). "
            "If you trust the file, re-save only its weights once: "
            "`torch.save({'model': torch.load(path, weights_only=False)['model']}, new_path)` "
            "and point the config at new_path."
        ) from exc
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path} holds a {type(checkpoint).__name__}, not a state dict")
    state_dict = checkpoint.get("model", checkpoint)
    bad = [k for k, v in state_dict.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: entries that are not tensors: {bad[:5]}")
    return state_dict


@dataclass
class LoadReport:
    """Which model weights came from which source, and what did not fit.

    `sources` maps a source label (e.g. "stage-2 checkpoint") to the model keys it set.
    `missing` are model keys that no source set (they keep their initial values).
    `unexpected` are checkpoint keys the model has no place for.
    `mismatched` are keys whose shapes differ, as "key: checkpoint shape vs model shape".
    """

    sources: dict[str, list[str]] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"{label}: {len(keys)} tensors" for label, keys in self.sources.items()]
        for name, keys in (("missing", self.missing), ("unexpected", self.unexpected),
                           ("shape mismatch", self.mismatched)):
            if keys:
                shown = ", ".join(keys[:8]) + (" ..." if len(keys) > 8 else "")
                lines.append(f"{name} ({len(keys)}): {shown}")
        return "; ".join(lines)


def copy_into_model(
    model: torch.nn.Module,
    state_dict: dict[str, torch.Tensor],
    report: LoadReport,
    label: str,
    keep=lambda key: True,
) -> None:
    """Copy the tensors of `state_dict` whose key passes `keep` into `model`.

    Shapes must match exactly; mismatches and unknown keys are recorded in `report`
    instead of silently dropped. `report.sources[label]` lists the model keys the load set.
    """
    own = model.state_dict()
    loaded = {}
    for key, tensor in state_dict.items():
        if not keep(key):
            continue
        if key not in own:
            report.unexpected.append(key)
        elif own[key].shape != tensor.shape:
            report.mismatched.append(
                f"{key}: {tuple(tensor.shape)} vs {tuple(own[key].shape)}"
            )
        else:
            loaded[key] = tensor
    result = model.load_state_dict(loaded, strict=False)
    # What the load set: the keys given, plus any a module's load hook derived from them
    # (`PointRowsEmbedding` fills `trainable_rows` from `weight`).
    report.sources.setdefault(label, []).extend(sorted(set(own) - set(result.missing_keys)))
