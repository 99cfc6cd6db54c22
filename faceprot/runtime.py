"""Process-wide runtime choices (torch threads, the device) and the default per-photo refinement."""

from __future__ import annotations

import os

#: per-photo refinement steps the app (Apply, and Protect on the selfie) and ``faceprot apply`` use
#: by default (:func:`faceprot.cloak.apply_mask`'s ``refine``): each photo's cloak becomes its own
#: and keeps protecting after the mask is stripped (BENCHMARKS.md, "Mask reuse"), at about 1.1-1.6 s
#: a face on one CPU thread. Here, with nothing heavy imported, so the command line's help can use it.
DEFAULT_REFINE = 10

_CONFIGURED = False


def default_threads() -> int:
    """Torch intra-op threads to use.

    On a 2-core shared machine, 2 torch threads were 7 to 20 times slower than 1 for the mask
    optimisation (FACTS.md section 1: 4.7 s with 1 thread vs 66-94 s with 2 on loaded cores), so
    small machines get 1 thread; bigger ones half their cores, capped at 8.
    """
    env = os.environ.get("FACEPROT_THREADS")
    if env:
        return max(1, int(env))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return 1 if cores <= 2 else min(8, cores // 2)


def configure_threads(n: int | None = None) -> int:
    """Set torch's thread count once per process (``FACEPROT_THREADS`` overrides). Returns it."""
    global _CONFIGURED
    import torch

    n = n or default_threads()
    torch.set_num_threads(n)
    if not _CONFIGURED:
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # only allowed before any parallel work has started
            pass
        _CONFIGURED = True
    return n


DEVICE_ENV = "FACEPROT_DEVICE"


def resolve_device(device=None):
    """The torch device for optimisation: ``device`` if given, else ``$FACEPROT_DEVICE``, else CUDA
    when a GPU is visible (a GPU Space, including a ZeroGPU worker) and the CPU otherwise.

    "auto" means the default. Asking for a device that is not there is a
    :class:`~faceprot.errors.FaceprotError` with a readable message, not a torch traceback.
    """
    import torch

    from .errors import FaceprotError

    wanted = device if device is not None else os.environ.get(DEVICE_ENV, "auto")
    said = f"{DEVICE_ENV}={wanted}: " if device is None else ""  # where a bad value came from
    if isinstance(wanted, str) and wanted.strip().lower() in ("", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(wanted)
    except (RuntimeError, TypeError):
        raise FaceprotError(f"{said}Unknown device {wanted!r}; use auto, cpu or cuda.") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise FaceprotError(f"{said}A CUDA GPU was asked for, but this machine has none; use cpu or auto.")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise FaceprotError(f"{said}There is no GPU {dev.index} here ({torch.cuda.device_count()} visible).")
    elif dev.type != "cpu":
        raise FaceprotError(f"{said}Device {wanted!r} is not supported; use auto, cpu or cuda.")
    return dev
