"""Device and dtype selection: cuda when present; bf16 on GPU (fp16 without bf16), fp32 on CPU."""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def select_device(preference: str = "auto") -> torch.device:
    """``auto`` -> cuda:0 when available, else cpu. ``cuda`` without a GPU is a configuration error."""
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if preference == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but no CUDA device is available")
    return torch.device(preference)


def select_dtype(preference: str, device: torch.device) -> torch.dtype:
    """``auto`` -> bf16 on GPUs that support it, fp16 on older GPUs, fp32 on CPU."""
    if preference != "auto":
        return _DTYPES[preference]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32
