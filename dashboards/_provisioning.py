"""Grafana provisioning files: a dashboard provider reading the generated JSON, and a Prometheus data
source with the fixed uid the dashboards' ``datasource`` variable defaults to."""

from __future__ import annotations

import yaml

from ._panels import DATASOURCE_UID

FOLDER = "factorylens"
# where the files are mounted in a Grafana container (docker run -v ...; see docs/dashboards.md)
DASHBOARDS_PATH = "/var/lib/grafana/dashboards/factorylens"
DEFAULT_PROMETHEUS_URL = "http://prometheus:9090"


def dashboard_provider() -> str:
    """``provisioning/dashboards/factorylens.yaml``: load every JSON in ``DASHBOARDS_PATH``, read-only."""
    return yaml.safe_dump(
        {
            "apiVersion": 1,
            "providers": [
                {
                    "name": "factorylens",
                    "orgId": 1,
                    "folder": FOLDER,
                    "type": "file",
                    "disableDeletion": True,
                    "allowUiUpdates": False,
                    "updateIntervalSeconds": 60,
                    "options": {"path": DASHBOARDS_PATH, "foldersFromFilesStructure": False},
                }
            ],
        },
        sort_keys=False,
    )


def prometheus_datasource(url: str = DEFAULT_PROMETHEUS_URL) -> str:
    """``provisioning/datasources/factorylens-prometheus.yaml``: the Prometheus the dashboards query."""
    return yaml.safe_dump(
        {
            "apiVersion": 1,
            "datasources": [
                {
                    "name": "factorylens",
                    "uid": DATASOURCE_UID,
                    "type": "prometheus",
                    "access": "proxy",
                    "url": url,
                    "isDefault": False,
                    "editable": False,
                    "jsonData": {"timeInterval": "15s", "httpMethod": "POST"},
                }
            ],
        },
        sort_keys=False,
    )
