"""How T5 runs: the dtype of its input embeddings and the autocast around every T5 call.

Every T5 call of the package (training loss, scoring, RIS, VCR, generation, the interactive
predictor) takes both from `Blip2T5Region.t5_numerics()`, which calls `t5_numerics` below.

What the released code does (`blip2_t5.py`): T5's weights are bfloat16 and every T5 call sits
in `self.maybe_autocast(dtype=torch.float32)`, which is `torch.cuda.amp.autocast(dtype=
torch.float32)` on a GPU and no autocast at all on CPU (their `maybe_autocast` checks the
device; `torch.cuda.amp.autocast` would not touch CPU tensors anyway). The soft prompt
(`t5_proj` output, float32) is concatenated with the bfloat16 token embeddings, and
`torch.cat` promotes the result to float32. So the encoder's input, and with it the residual
stream, is float32; on a GPU the float32 autocast also runs every matmul in float32 (the
bfloat16 weights are cast up); only each T5 layer norm's output is rounded to bfloat16
(Hugging Face's `T5LayerNorm` casts to its weights' dtype). On CPU the same input is float32,
and the matmuls run in bfloat16 after each layer norm.

Settings (`t5_soft_prompt_dtype`, a model config key):
- "float32" (default, as released): inputs_embeds float32; on CUDA, autocast to float32.
- "model": inputs_embeds in the T5 weights' dtype (bfloat16 at the released precision), so
  the residual stream is bfloat16; on CUDA, autocast to that dtype (bfloat16; float32 with
  `t5_precision: fp32`, the path for GPUs without bfloat16, T4 and V100). Less memory and faster
  matmuls on a GPU; scores move by bfloat16 rounding, which can flip near-ties (the RIS
  argmin, VCR beams).
On CPU both settings run without autocast, or under bfloat16 autocast with the model's
`cpu_autocast`. With float32 T5 weights both settings give float32 inputs.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import ContextManager, Optional

import torch

T5_SOFT_PROMPT_DTYPES: tuple[str, ...] = ("float32", "model")


@dataclass(frozen=True)
class T5Numerics:
    """input_dtype: the dtype of inputs_embeds given to T5 (soft prompt and token embeddings).
    autocast_dtype: the autocast dtype around T5 calls on `device_type`; None: no autocast."""

    input_dtype: torch.dtype
    device_type: str
    autocast_dtype: Optional[torch.dtype]

    def autocast(self) -> ContextManager:
        """The context every T5 call runs in."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.autocast_dtype)


def t5_numerics(
    setting: str, device_type: str, weight_dtype: torch.dtype, cpu_autocast: bool = False
) -> T5Numerics:
    """Decide T5's input dtype and autocast (see the module docstring).

    Args:
        setting: "float32" (as released) or "model".
        device_type: the model's device type ("cuda", "cpu", ...).
        weight_dtype: the dtype of T5's weights (its input embedding's).
        cpu_autocast: the model's `cpu_autocast` (bfloat16 autocast on CPU).
    """
    if setting not in T5_SOFT_PROMPT_DTYPES:
        raise ValueError(f"t5_soft_prompt_dtype must be one of {T5_SOFT_PROMPT_DTYPES}, got {setting!r}")
    input_dtype = torch.float32 if setting == "float32" else weight_dtype
    if device_type == "cuda":
        # "model": the weights' own dtype (bfloat16 as released; float32 T5 on GPUs without bf16)
        autocast_dtype: Optional[torch.dtype] = torch.float32 if setting == "float32" else weight_dtype
    elif device_type == "cpu" and cpu_autocast:
        autocast_dtype = torch.bfloat16
    else:
        autocast_dtype = None
    return T5Numerics(input_dtype, device_type, autocast_dtype)
