"""rotel metrics processor: dcgm-exporter, node-exporter, hostmetrics and OpenLIT names → ours, and
jobs/teams on GPU series, inside the collector. Load it with
``--otlp-with-metrics-processor otel-config/rotel/normalize.py`` (``factorylens collector`` does),
with this venv's site-packages on ``PYTHONPATH``."""

from factorylens.processors.rotel import process_metrics

__all__ = ["process_metrics"]
