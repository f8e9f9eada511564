"""Turn a device string from the command line into a validated :class:`torch.device`.

Validation happens here, once, so that a typo or a missing GPU is reported before any data is built,
with a message that says what is visible instead.
"""

from __future__ import annotations

import re

import torch

_CUDA = re.compile(r"^cuda(?::(\d+))?$")


def resolve_device(spec: str = "auto") -> torch.device:
    """Return the device named by ``spec``: ``cpu``, ``cuda``, ``cuda:N``, ``mps`` or ``auto``.

    ``auto`` picks the current CUDA device when one is visible, then Apple's MPS, then the CPU.
    ``cuda`` means the current CUDA device (``CUDA_VISIBLE_DEVICES`` decides which physical GPU that is).
    """
    if not isinstance(spec, str):
        raise ValueError(f"device must be a string such as 'cpu', 'cuda:0' or 'auto', got {spec!r}")
    name = spec.strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "mps":
        if not _mps_available():
            raise ValueError("device 'mps' requested but Apple MPS is not available here; use 'cpu' or 'auto'")
        return torch.device("mps")
    match = _CUDA.match(name)
    if match is None:
        raise ValueError(f"unknown device {spec!r}; use cpu, cuda, cuda:N, mps or auto")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise ValueError(f"{name} requested but no CUDA device is visible; use 'cpu' or 'auto'")
    index = torch.cuda.current_device() if match.group(1) is None else int(match.group(1))
    if index >= count:
        plural = "device is" if count == 1 else "devices are"
        raise ValueError(
            f"{name} requested but only {count} CUDA {plural} visible (cuda:0..cuda:{count - 1}); "
            "check CUDA_VISIBLE_DEVICES or pick another index"
        )
    return torch.device("cuda", index)


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())
