"""Grafana dashboards and Prometheus alerting rules for factorylens, generated from code.

``factorylens dashboards`` writes the committed files under ``dashboards/`` (``json/``,
``provisioning/``, ``alerts/``) from the boards in ``boards/`` built with grafana-foundation-sdk;
``--check`` fails when a committed file differs from what the code generates, so the JSON cannot
drift from the generator or from the metric registry it takes names from.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from factorylens._extras import require

ROOT = Path(__file__).resolve().parent
JSON_DIR = "json"


def all_boards() -> list:
    """Every board, in the order the docs list them."""
    require("dashboards", "the dashboards generator")
    from .boards import cost, fleet, gpu_health, incidents, inference, node, training

    return [m.BOARD for m in (fleet, gpu_health, node, training, inference, cost, incidents)]


def dashboard_json() -> dict[str, dict]:
    """``{uid: dashboard model}`` as Grafana imports it."""
    from grafana_foundation_sdk.cog.encoder import JSONEncoder

    from ._panels import build_dashboard

    with warnings.catch_warnings():
        # building a v1 dashboard warns too (see _panels.py)
        warnings.filterwarnings("ignore", "Prefer using dashboardv2", DeprecationWarning)
        return {b.uid: json.loads(json.dumps(build_dashboard(b).build(), cls=JSONEncoder)) for b in all_boards()}


def generated_files() -> dict[str, str]:
    """Every generated file as ``{path relative to dashboards/: text}``."""
    from ._alerts import alert_rules, alert_tests
    from ._provisioning import dashboard_provider, prometheus_datasource

    files = {f"{JSON_DIR}/{uid}.json": json.dumps(model, indent=2) + "\n" for uid, model in dashboard_json().items()}
    files["provisioning/dashboards/factorylens.yaml"] = dashboard_provider()
    files["provisioning/datasources/factorylens-prometheus.yaml"] = prometheus_datasource()
    files["alerts/factorylens-alerts.yaml"] = alert_rules()
    files["alerts/factorylens-alerts.test.yaml"] = alert_tests()
    return files


def write(root: Path = ROOT) -> list[str]:
    """Write the generated files under ``root``; returns the paths written. Old dashboard JSON that the
    code no longer generates is removed, so a renamed board leaves nothing behind."""
    files = generated_files()
    for stale in (root / JSON_DIR).glob("*.json"):
        if f"{JSON_DIR}/{stale.name}" not in files:
            stale.unlink()
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return sorted(files)


def stale(root: Path = ROOT) -> list[str]:
    """Paths under ``root`` that are missing, differ from the generated text, or are no longer generated."""
    files = generated_files()
    differ = [rel for rel, text in files.items() if not (root / rel).is_file() or (root / rel).read_text() != text]
    extra = [f"{JSON_DIR}/{p.name}" for p in (root / JSON_DIR).glob("*.json") if f"{JSON_DIR}/{p.name}" not in files]
    return sorted(differ + extra)
