"""Optional parts of the installation (extras) and the clear error when one is missing.

The base install is what runs on every GPU node and in training images (node agent with a real
GPU, instrumentation); ``factorylens[sim]`` adds the simulated GPUs (numpy) and
``factorylens[rca]`` the RCA service's analysis stack (pandas, statsmodels, pyarrow).
"""

from __future__ import annotations

import importlib.util

EXTRAS: dict[str, tuple[str, ...]] = {
    "sim": ("numpy",),
    "rca": ("numpy", "pandas", "statsmodels", "pyarrow", "grpc_status", "cramjam"),
    "dashboards": ("grafana_foundation_sdk", "yaml"),
    # `factorylens demo`: the RCA service, rotel, the simulator and the live view
    "demo": ("numpy", "pandas", "statsmodels", "pyarrow", "grpc_status", "cramjam", "rotel", "rich"),
}


class MissingExtra(ImportError):
    """A feature whose extra is not installed; the message says what to install."""


def require(extra: str, feature: str) -> None:
    """Raise :class:`MissingExtra` naming the pip command when ``extra``'s modules are not installed."""
    missing = [m for m in EXTRAS[extra] if importlib.util.find_spec(m) is None]
    if missing:
        raise MissingExtra(
            f"{feature} needs the '{extra}' extra ({', '.join(missing)} not installed): "
            f"pip install 'factorylens[{extra}]'"
        )
