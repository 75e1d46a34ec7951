"""Which GPUs this rank uses: their ``hw.id`` (UUID), the key that joins the training process's
signals to the GPU receiver's series, and their product name (for the MFU peak)."""

from __future__ import annotations

import logging
import os
from typing import Any

log = logging.getLogger(__name__)


def discover_gpus(local_rank: int, nvml: Any = None) -> tuple[tuple[str, ...], str]:
    """``((uuid,), name)`` of the GPU a rank uses, through NVML; ``((), "")`` when there is none.

    ``CUDA_VISIBLE_DEVICES`` is honoured (UUIDs, or indices in NVML's PCI order, which is what
    ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` gives); the rank uses the ``local_rank``-th visible device.
    """
    if nvml is None:
        try:
            import pynvml
        except ImportError:
            return (), ""
        nvml = pynvml
    try:
        nvml.nvmlInit()
    except Exception as exc:
        log.debug("no NVML (%s): no GPU ids on this rank's telemetry", exc)
        return (), ""
    try:
        setting = os.environ.get("CUDA_VISIBLE_DEVICES")
        visible = [v.strip() for v in (setting or "").split(",") if v.strip()]
        if setting is not None and not visible:
            return (), ""  # set but empty: no GPU for this process
        if visible:
            # one visible device (per-task binding by Slurm or Kubernetes) is this rank's, whatever its
            # local rank; otherwise the local_rank-th
            if len(visible) > 1 and local_rank >= len(visible):
                return (), ""
            entry = visible[0] if len(visible) == 1 else visible[local_rank]
            handle = (
                nvml.nvmlDeviceGetHandleByUUID(entry)
                if entry.startswith(("GPU-", "MIG-"))
                else nvml.nvmlDeviceGetHandleByIndex(int(entry))
            )
        else:
            if local_rank >= nvml.nvmlDeviceGetCount():
                return (), ""
            handle = nvml.nvmlDeviceGetHandleByIndex(local_rank)
        uuid, name = nvml.nvmlDeviceGetUUID(handle), nvml.nvmlDeviceGetName(handle)
        return (uuid.decode() if isinstance(uuid, bytes) else uuid,), (
            name.decode() if isinstance(name, bytes) else name
        )
    except Exception as exc:
        log.warning("could not identify this rank's GPU through NVML: %s", exc)
        return (), ""
    finally:
        try:
            nvml.nvmlShutdown()
        except Exception:
            pass
