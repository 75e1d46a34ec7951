"""Peak dense tensor throughput of real GPUs, for model FLOPs utilization (MFU).

Dense (no sparsity) BF16 tensor-core TFLOPS from the vendors' data sheets; for GPUs without BF16
(V100) the FP16 tensor figure. Looked up by the product name NVML reports (``nvmlDeviceGetName``)
or a short key, most specific name first.
"""

from __future__ import annotations

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
