"""Facts about real GPUs: peak dense tensor throughput, for model FLOPs utilization (MFU), and the
compute share of a MIG slice, for cost.

Dense (no sparsity) BF16 tensor-core TFLOPS from the vendors' data sheets; for GPUs without BF16
(V100) the FP16 tensor figure. Looked up by the product name NVML reports (``nvmlDeviceGetName``)
or a short key, most specific name first.
"""

from __future__ import annotations

import re

PEAK_BF16_DENSE_TFLOPS: tuple[tuple[str, float], ...] = (
    ("GB200", 2500.0),
    ("B200", 2250.0),
    ("GH200", 989.4),
    ("H200", 989.4),
    ("H100 NVL", 835.0),
    ("H100 PCIe", 756.0),
    ("H100", 989.4),  # SXM5
    ("A100", 312.0),
    ("A30", 165.0),
    ("L40S", 362.1),
    ("L40", 181.0),
    ("A10G", 70.0),
    ("A10", 125.0),
    ("L4", 121.0),
    ("V100", 125.0),
    ("MI300X", 1307.4),
)


def peak_tflops(gpu_name: str) -> float | None:
    """Peak dense BF16 TFLOPS of the GPU whose name contains a known key (case-insensitive)."""
    upper = gpu_name.upper()
    for key, tflops in PEAK_BF16_DENSE_TFLOPS:
        if key.upper() in upper:
            return tflops
    return None


# a GPU instance ``3g.40gb``, or a compute instance inside one, ``1c.3g.40gb`` (1 of its 3 slices)
_MIG_SLICES = re.compile(r"(?:(\d+)c\.)?(\d+)g\.")
# compute slices of a whole GPU in MIG mode (NVIDIA MIG user guide): 7 on A100/H100/H200/B200, 4 on A30
_GPU_SLICES_DEFAULT = 7
_GPU_SLICES = (("A30", 4),)


def mig_fraction(gpu_name: str, profile: str | None = None) -> float:
    """A MIG slice's compute share of its GPU (``3g.40gb`` on an H100: 3/7, ``1c.3g.40gb``: 1/7); 1 for a
    whole GPU.
    ``profile`` defaults to the one NVML puts in a MIG device's name (``NVIDIA H100 ... MIG 1g.10gb``)."""
    if profile is None:
        if " MIG " not in gpu_name:
            return 1.0
        profile = gpu_name.rsplit(" MIG ", 1)[1]
    match = _MIG_SLICES.match(profile.strip())
    if match is None:
        return 1.0
    slices = next((n for marker, n in _GPU_SLICES if marker in gpu_name), _GPU_SLICES_DEFAULT)
    return min(1.0, int(match.group(1) or match.group(2)) / slices)
