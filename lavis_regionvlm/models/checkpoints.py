"""Load checkpoint files safely and report where every weight came from."""
from __future__ import annotations

import logging
import os
import pickle
import re
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
    if not os.path.exists(path):
        raise CheckpointError(
            f"checkpoint {url_or_path!r} is neither a URL nor an existing file; "
            "set the model config's path to a local copy"
        )
    return path


def read_checkpoint(path: str | os.PathLike) -> dict:
    """The contents of a local checkpoint file, read with `torch.load(weights_only=True)`.

    Every way the file can be unusable is a `CheckpointError` that names the file, says
    what is wrong (missing, a folder, empty, truncated or damaged, not a PyTorch
    checkpoint, holding Python objects besides tensors, not a dict) and what to do.
    """
    path = str(path)
    if os.path.isdir(path):
        raise CheckpointError(f"checkpoint {path} is a folder, not a checkpoint file; point to the .pth file in it")
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path} does not exist")
    if os.path.getsize(path) == 0:
        raise CheckpointError(
            f"checkpoint {path} is empty (0 bytes), as a save or copy cut off at its start leaves it; "
            "copy it again, or use an earlier checkpoint"
        )
    damaged = (
        f"checkpoint {path} is truncated or damaged ({{}}), as a save or copy cut off part-way "
        "leaves it; copy it again, or use an earlier checkpoint"
    )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        unsafe = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if unsafe:
            raise CheckpointError(
                f"checkpoint {path} holds Python objects besides tensors ({unsafe.group(1)}), so it was "
                "not loaded: torch.load(weights_only=True) refuses them, as loading them could run code. "
                "If you trust the file, re-save only its weights once: "
                "`torch.save({'model': torch.load(path, weights_only=False)['model']}, new_path)` "
                "and point the config at new_path."
            ) from None
        raise CheckpointError(_not_a_checkpoint(path)) from None
    except EOFError:
        raise CheckpointError(damaged.format("it ends early")) from None
    except RuntimeError as exc:
        if "zip archive" in str(exc) or "central directory" in str(exc):
            raise CheckpointError(damaged.format("its zip directory is missing or broken")) from None
        raise CheckpointError(damaged.format(str(exc).splitlines()[0])) from None
    except OSError as exc:  # the zip reader on some truncations: "[Errno 22] Invalid argument"
        raise CheckpointError(damaged.format(f"its zip archive cannot be opened: {exc.strerror or exc}")) from None
    except (ValueError, KeyError, TypeError, IndexError, AttributeError):
        raise CheckpointError(_not_a_checkpoint(path)) from None
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(checkpoint).__name__}, not a dict of weights")
    return checkpoint


def _not_a_checkpoint(path: str) -> str:
    with open(path, "rb") as f:
        head = f.read(4)
    kind = "a damaged PyTorch file" if head.startswith((b"PK\x03\x04", b"\x80")) else "not a PyTorch checkpoint"
    return (f"checkpoint {path} is {kind} (torch.load cannot read it); check that the path points "
            "to a .pth file saved with torch.save, or copy it again")


def load_state_dict(url_or_path: str) -> dict[str, torch.Tensor]:
    """Read a checkpoint's weights (`read_checkpoint`).

    Accepts a bare state dict or LAVIS's `{"model": state_dict, ...}` layout.
    """
    path = _local_file(url_or_path)
    checkpoint = read_checkpoint(path)
    state_dict = checkpoint.get("model", checkpoint)
    if not isinstance(state_dict, dict):
        raise CheckpointError(f"checkpoint {path}: 'model' holds a {type(state_dict).__name__}, not a state dict")
    bad = [k for k, v in state_dict.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"checkpoint {path}: entries that are not tensors: {bad[:5]}")
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
