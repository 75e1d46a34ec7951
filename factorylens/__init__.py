"""factorylens: OpenTelemetry-native observability and root-cause analysis for GPU clusters.

The package is one pipeline in stages, each a subpackage: ``factorylens.receivers`` (GPU and node
signals), ``factorylens.instrumentation`` (training code), ``factorylens.processors``,
``factorylens.rca_service``. This core package holds only what every stage shares: the metric
registry and the CLI.
"""

__version__ = "0.1.0"
