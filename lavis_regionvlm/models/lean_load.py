"""Lean loading: build the big pretrained parts (EVA ViT, T5) without random weights and
stream their checkpoint files straight into their final dtype and device.

Today's path (as LAVIS): the ViT is built with random float32 weights, its checkpoint is
read whole, copied in, then cast to fp16; T5's `from_pretrained` builds random float32
weights, reads each checkpoint shard whole, and the model then casts T5 to bfloat16. At
FlanT5-XL that peaks near twice the weights' final size. Here instead:

1. the module is built on the "meta" device (`meta_device()`: shapes and dtypes, no memory),
   and given the final dtypes there (the same casts the standard path makes, on meta);
2. each checkpoint file is memory-mapped (`torch.load(mmap=True, weights_only=True)`;
   legacy non-zip files are read whole, see `checkpoints.can_mmap`);
3. every tensor is copied once into a new tensor of its final dtype on its final device
   (`copy_`, the same conversion `load_state_dict` makes), which replaces the meta tensor,
   and the file pages it read are handed back to the OS (`release_pages`), so the process
   holds the final weights plus one tensor in flight.

Values are bit for bit those of the standard path (same source, same single rounding).
Values no file sets keep their random initialisation in both paths, but not the same random
numbers: the standard path's random ViT and T5 init consume the RNG first (with the shipped
model types this is only the Q-Former's `[DEC]` embedding row, when `text_branch_pretrained`
is null).
Parameters or buffers that no file provides are refused with their names: meta tensors
cannot hold values, and EVA ViT-g and T5 have no buffers outside their checkpoints.
"""
from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import mmap
import os
from functools import partial
from typing import Iterable, Iterator, Mapping

import torch
from torch import nn
from torch.utils._device import DeviceContext

from lavis_regionvlm.models.checkpoints import CheckpointError, _local_file, can_mmap, load_state_dict

logger = logging.getLogger(__name__)

_MADV_DONTNEED = 4  # Linux <sys/mman.h>


class _MetaDevice(DeviceContext):
    """`torch.device("meta")` for construction, except `torch.linspace`, which EVA's ViT turns
    into Python floats with `.item()` (drop-path rates) and so must be real."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.linspace and kwargs.get("device") is None:
            kwargs["device"] = "cpu"
        return super().__torch_function__(func, types, args, kwargs)


def meta_device() -> DeviceContext:
    """Context in which modules are built on the meta device (no memory, no random init)."""
    return _MetaDevice("meta")


def release_pages(tensor: torch.Tensor) -> None:
    """Hand the pages of a memory-mapped (read-only used) tensor back to the OS.

    Pages of a mapped file that were read stay in the process's resident set until the map
    is closed; `madvise(MADV_DONTNEED)` drops them now (a later read would fetch them from
    the file again). Only for tensors of a `torch.load(mmap=True)` map: on anonymous memory
    it would zero data. Does nothing where libc's madvise is unavailable (not Linux).
    """
    nbytes = tensor.untyped_storage().nbytes()
    if nbytes == 0:
        return
    try:
        madvise = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return
    page = mmap.PAGESIZE
    start = tensor.untyped_storage().data_ptr()
    aligned = start - start % page
    madvise(ctypes.c_void_p(aligned), ctypes.c_size_t(start + nbytes - aligned), _MADV_DONTNEED)


def read_mapped(url_or_path: str, mmap: bool = True) -> tuple[dict[str, torch.Tensor], bool]:
    """`checkpoints.load_state_dict`, memory-mapped when `mmap` and the file allows it.
    Returns (state_dict, mapped): whether its tensors live in a map of the file."""
    path = _local_file(url_or_path)
    return load_state_dict(path, mmap=mmap), mmap and can_mmap(path)


def _release_all(sources: list[torch.Tensor], module: nn.Module, incompatible_keys) -> None:
    for tensor in sources:
        release_pages(tensor)


@contextlib.contextmanager
def pages_released_after_copy(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> Iterator[None]:
    """While `model.load_state_dict` (or `copy_into_model`) copies from the memory-mapped
    `state_dict`, hand each module's source pages back as soon as that module has copied them
    (a load-state-dict post hook per module), so the file's pages do not pile up in memory.
    Only for a mapped `state_dict` (see `release_pages`)."""
    handles = []
    for prefix, module in model.named_modules():
        keys = [f"{prefix}.{name}" if prefix else name for name in (*module._parameters, *module._buffers)]
        sources = [state_dict[key] for key in keys if key in state_dict]
        if sources:
            handles.append(module.register_load_state_dict_post_hook(partial(_release_all, sources)))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _owners(module: nn.Module) -> dict[str, list[tuple[nn.Module, str]]]:
    """For each state-dict key of `module`, every (submodule, attribute) holding that tensor
    (tied weights, e.g. T5's `shared` and `encoder.embed_tokens`, share one list)."""
    by_tensor: dict[int, list[tuple[nn.Module, str]]] = {}
    keys: dict[str, int] = {}
    for prefix, sub in module.named_modules(remove_duplicate=False):
        for table in (sub._parameters, sub._buffers):
            for leaf, tensor in table.items():
                if tensor is None:
                    continue
                places = by_tensor.setdefault(id(tensor), [])
                if (sub, leaf) not in places:
                    places.append((sub, leaf))
                keys[f"{prefix}.{leaf}" if prefix else leaf] = id(tensor)
    return {key: by_tensor[tid] for key, tid in keys.items()}


def assign_tensors(
    module: nn.Module,
    tensors: Mapping[str, torch.Tensor],
    device: torch.device | str,
    mapped: bool,
    source: str,
) -> set[str]:
    """Replace the tensors of `module` named in `tensors` with copies on `device`, each in the
    dtype the module's current (meta) tensor has. Keys the module lacks are skipped.

    Args:
        module: the module, typically built under `meta_device()`.
        tensors: state-dict key -> source tensor (any dtype; shapes must match exactly).
        device: where the new tensors live.
        mapped: the sources come from a memory-mapped file: release each one's pages after
            its copy (see `release_pages`).
        source: the file, for error messages.
    Returns the keys set.
    """
    owners = _owners(module)
    done: set[str] = set()
    for key, src in tensors.items():
        places = owners.get(key)
        if not places:
            continue
        sub, leaf = places[0]
        old = sub._parameters.get(leaf) if leaf in sub._parameters else sub._buffers[leaf]
        if tuple(src.shape) != tuple(old.shape):
            raise CheckpointError(
                f"{source}: {key} has shape {tuple(src.shape)}, the model expects {tuple(old.shape)}"
            )
        new = torch.empty(old.shape, dtype=old.dtype, device=device)
        with torch.no_grad():
            new.copy_(src)
        if mapped:
            release_pages(src)
        if isinstance(old, nn.Parameter):
            new = nn.Parameter(new, requires_grad=old.requires_grad)
        for owner, name in places:
            table = owner._parameters if name in owner._parameters else owner._buffers
            table[name] = new
        done.add(key)
    return done


def still_on_meta(module: nn.Module) -> list[str]:
    """State-dict keys (and non-persistent buffers) of `module` that are still meta tensors."""
    found = [name for name, p in module.named_parameters(remove_duplicate=False) if p.is_meta]
    return found + [name for name, b in module.named_buffers(remove_duplicate=False) if b.is_meta]


def _check_complete(module: nn.Module, what: str, files: Iterable[str]) -> None:
    left = still_on_meta(module)
    if left:
        raise CheckpointError(
            f"lean_load: {len(left)} {what} tensors are in none of {list(files)}: {left[:8]}; "
            "these files cannot be loaded leanly (set lean_load: false to initialise them randomly)"
        )


def stream_vit_weights(encoder: nn.Module, vit_weights: str, device: torch.device | str) -> None:
    """Fill a meta-built EVA ViT from `vit_weights` (LAVIS's `eva_vit_g.pth` layout), with the
    position embedding interpolated to the model's image size as LAVIS does.

    Raises as the standard path does when the file lacks ViT weights (it names them).
    """
    from lavis.models.eva_vit import interpolate_pos_embed

    state_dict, mapped = read_mapped(vit_weights)
    interpolate_pos_embed(encoder, state_dict)  # shapes only from the model; a new pos_embed tensor
    expected = list(encoder.state_dict())
    missing = [k for k in expected if k not in state_dict]
    if missing:
        raise RuntimeError(f"{vit_weights} lacks ViT weights: {missing[:5]}")
    # the interpolated pos_embed is a new tensor in anonymous memory: never release it
    assign_tensors(encoder, {k: state_dict[k] for k in expected if k != "pos_embed"}, device, mapped, vit_weights)
    if "pos_embed" in expected:
        assign_tensors(encoder, {"pos_embed": state_dict["pos_embed"]}, device, False, vit_weights)
    del state_dict
    _check_complete(encoder, "ViT", [vit_weights])


def hf_weight_files(name_or_folder: str) -> list[str]:
    """The PyTorch weight files `from_pretrained` reads for a hub name or local folder:
    `pytorch_model.bin`, or the shards listed in `pytorch_model.bin.index.json`."""
    from transformers.utils import WEIGHTS_INDEX_NAME, WEIGHTS_NAME, cached_file
    from transformers.utils.hub import get_checkpoint_shard_files

    if os.path.isdir(name_or_folder):
        single = os.path.join(name_or_folder, WEIGHTS_NAME)
        index = os.path.join(name_or_folder, WEIGHTS_INDEX_NAME)
        if os.path.isfile(single):
            return [single]
        if os.path.isfile(index):
            with open(index) as handle:
                shards = sorted(set(json.load(handle)["weight_map"].values()))
            return [os.path.join(name_or_folder, shard) for shard in shards]
        raise CheckpointError(
            f"lean_load: {name_or_folder} has neither {WEIGHTS_NAME} nor {WEIGHTS_INDEX_NAME} "
            "(other formats load with lean_load: false)"
        )
    kwargs = {"_raise_exceptions_for_missing_entries": False}
    single = cached_file(name_or_folder, WEIGHTS_NAME, **kwargs)
    if single:
        return [single]
    index = cached_file(name_or_folder, WEIGHTS_INDEX_NAME, **kwargs)
    if not index:
        raise CheckpointError(
            f"lean_load: found neither {WEIGHTS_NAME} nor {WEIGHTS_INDEX_NAME} for {name_or_folder!r}"
        )
    files, _ = get_checkpoint_shard_files(name_or_folder, index)
    return list(files)


def with_base_prefix(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`state_dict` with the model's `base_model_prefix` added to keys saved without it, as
    `from_pretrained` reads them (OPT's hub files hold `decoder.*` for `model.decoder.*`)."""
    prefix = getattr(model, "base_model_prefix", "")
    own = set(model.state_dict(keep_vars=True))
    if not prefix:
        return dict(state_dict)
    return {
        (f"{prefix}.{key}" if key not in own and f"{prefix}.{key}" in own else key): value
        for key, value in state_dict.items()
    }


def stream_hf_weights(
    model: nn.Module, name_or_folder: str, device: torch.device | str, what: str = "T5"
) -> None:
    """Fill a meta-built Hugging Face model (T5, OPT) from its weight files, one file at a time,
    and finish it as `from_pretrained` does (eval mode, generation config).

    Keys the model lacks are ignored, as `from_pretrained` ignores them; weights the files
    lack are refused (`from_pretrained` would initialise them randomly).
    """
    files = hf_weight_files(name_or_folder)
    for path in files:
        state_dict, mapped = read_mapped(path)
        assign_tensors(model, with_base_prefix(model, state_dict), device, mapped, path)
        del state_dict
    _check_complete(model, what, files)
    model.eval()
    if model.can_generate():
        from transformers import GenerationConfig

        try:
            model.generation_config = GenerationConfig.from_pretrained(name_or_folder)
        except OSError:
            pass  # no generation_config.json: keep the one derived from the model config
