"""The generated dashboards, provisioning files and alerting rules: committed files match the generator,
the JSON validates against Grafana's schemas (shared/schemas/grafana), every panel says what it shows
(unit, description), every PromQL expression parses once Grafana's variables are substituted and reads
only series the metric registry exports, and the alerting rules pass promtool's check and unit tests."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import jsonschema
import promql_parser
import pytest
import yaml

from factorylens.cli import main
from factorylens.dashboards import JSON_DIR, ROOT, dashboard_json, generated_files, stale, write
from factorylens.dashboards._queries import (
    RATE_INTERVAL_SCRAPES,
    SCRAPE_INTERVAL_S,
    expand,
    metric_names,
    panel_queries,
    registry_series_names,
    variable_queries,
)
from factorylens.datasets import ENV_DATA, shared_data_dir

VARIABLES = ["datasource", "cluster", "node", "gpu", "job"]
RATE_FUNCTIONS = {"rate", "irate", "increase"}
GENERATION_BUDGET_S = 2.0


def schemas_dir() -> Path:
    """``shared/schemas/grafana``: beside ``$FACTORYLENS_DATA`` when set, else beside the checkout; like the
    labelled datasets, a checkout without the shared folder skips the schema checks, saying where it looked."""
    data = os.environ.get(ENV_DATA)
    base = Path(data) if data else shared_data_dir()
    folder = base.parent / "schemas" / "grafana" if base is not None else None
    if folder is None or not (folder / "dashboard.jsonschema.json").is_file():
        pytest.skip(
            f"no Grafana schemas at {folder or '../shared/schemas/grafana'} (the shared folder beside the "
            f"checkout, or {ENV_DATA} pointing at its data/)"
        )
    return folder


@pytest.fixture(scope="module")
def models() -> dict[str, dict[str, Any]]:
    return dashboard_json()


@pytest.fixture(scope="module")
def schemas() -> dict[str, dict[str, Any]]:
    return {p.name.removesuffix(".jsonschema.json"): json.loads(p.read_text()) for p in schemas_dir().glob("*.json")}


def _validator(schema: dict[str, Any], definition: str | None = None) -> jsonschema.Draft7Validator:
    if definition is None:
        return jsonschema.Draft7Validator(schema)
    return jsonschema.Draft7Validator({"$ref": f"#/definitions/{definition}", "definitions": schema["definitions"]})


def _panels(models: dict[str, dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [(m["title"], p) for m in models.values() for p in m["panels"] if p["type"] != "row"]


def test_committed_files_are_what_the_generator_writes_and_a_stale_one_is_reported(tmp_path: Path) -> None:
    assert stale(ROOT) == [], "run `factorylens dashboards` and commit the result"
    assert main(["dashboards", "--check"]) == 0
    write(tmp_path)
    assert stale(tmp_path) == []
    fleet = tmp_path / JSON_DIR / "factorylens-fleet.json"
    fleet.write_text(fleet.read_text().replace("Idle but allocated", "Idle"))
    (tmp_path / JSON_DIR / "removed-board.json").write_text("{}")
    assert stale(tmp_path) == [f"{JSON_DIR}/factorylens-fleet.json", f"{JSON_DIR}/removed-board.json"]
    assert main(["dashboards", "--check", "--output", str(tmp_path)]) == 1
    assert main(["dashboards", "--output", str(tmp_path)]) == 0
    assert stale(tmp_path) == [] and not (tmp_path / JSON_DIR / "removed-board.json").exists()


def test_generating_everything_takes_under_two_seconds() -> None:
    started = time.perf_counter()
    files = generated_files()
    elapsed = time.perf_counter() - started
    assert len([f for f in files if f.startswith(JSON_DIR)]) == 7
    assert elapsed <= GENERATION_BUDGET_S, f"generation took {elapsed:.2f} s"


def test_dashboards_validate_against_grafanas_schemas(models: dict, schemas: dict) -> None:
    errors = [
        f"{m['title']}: {'/'.join(map(str, e.absolute_path))}: {e.message}"
        for m in models.values()
        for e in _validator(schemas["dashboard"]).iter_errors(m)
    ]
    units = {d["const"] for d in schemas["units"]["definitions"].values() if "const" in d}
    for board, panel in _panels(models):
        kind = panel["type"].replace("-", "")  # state-timeline's schema is statetimeline
        where = f"{board} / {panel['title']}"
        errors += [
            f"{where}: options: {e.message}" for e in _validator(schemas[kind], "Options").iter_errors(panel["options"])
        ]
        if "FieldConfig" in schemas[kind]["definitions"]:
            custom = panel["fieldConfig"]["defaults"].get("custom", {})
            errors += [
                f"{where}: custom: {e.message}" for e in _validator(schemas[kind], "FieldConfig").iter_errors(custom)
            ]
        for target in panel["targets"]:
            errors += [f"{where}: target: {e.message}" for e in _validator(schemas["prometheus"]).iter_errors(target)]
        if panel["fieldConfig"]["defaults"].get("unit") not in units:
            errors.append(f"{where}: unit {panel['fieldConfig']['defaults'].get('unit')!r} is not a Grafana unit")
    assert errors == []


def test_a_schema_error_is_caught(models: dict, schemas: dict) -> None:
    """The validation above can fail: a panel without a grid position or with a bad option is rejected."""
    broken = json.loads(json.dumps(models["factorylens-fleet"]))
    broken["panels"][1]["gridPos"] = {"w": "wide"}
    assert list(_validator(schemas["dashboard"]).iter_errors(broken))
    options = dict(broken["panels"][1]["options"], graphMode="sparkles")
    assert list(_validator(schemas["stat"], "Options").iter_errors(options))


def test_every_panel_has_a_unit_a_description_a_legend_and_a_place_on_the_grid(models: dict) -> None:
    seen_ids: dict[str, set[int]] = {}
    for board, panel in _panels(models):
        where = f"{board} / {panel['title']}"
        assert panel["description"].strip(), where
        assert panel["fieldConfig"]["defaults"]["unit"], where
        assert panel["targets"], where
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, where
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24 and pos["h"] > 0, where
        assert panel["id"] not in seen_ids.setdefault(board, set()), f"duplicate id in {where}"
        seen_ids[board].add(panel["id"])
        if panel["type"] in ("timeseries", "statetimeline"):
            assert panel["options"]["legend"]["showLegend"], where
    thresholds = [p for _, p in _panels(models) if "thresholds" in p["fieldConfig"]["defaults"]]
    assert len(thresholds) >= 20


def test_variables_run_datasource_cluster_node_gpu_job_multi_with_all(models: dict) -> None:
    for model in models.values():
        variables = model["templating"]["list"]
        assert [v["name"] for v in variables][:5] == VARIABLES, model["title"]
        for variable in variables[1:]:
            assert variable["multi"] and variable["includeAll"] and variable["allValue"] == ".*", variable["name"]
        for _, query in variable_queries(model):
            inner = re.fullmatch(r"label_values\((.+), (\w+)\)", query)
            assert inner, query
            promql_parser.parse(expand(inner.group(1)))
            assert metric_names(expand(inner.group(1))) <= registry_series_names(), query
        # each level is filtered by the ones before it
        definitions = {v["name"]: v.get("definition", "") for v in variables}
        assert "$cluster" in definitions["node"] and "$node" in definitions["gpu"] and "$gpu" in definitions["job"]


def test_every_query_parses_rates_over_the_rate_interval_and_reads_registry_series(models: dict) -> None:
    known = registry_series_names()
    rate_window_s = RATE_INTERVAL_SCRAPES * SCRAPE_INTERVAL_S
    problems = []
    count = 0
    for model in models.values():
        for q in panel_queries(model):
            count += 1
            expr = expand(q.expr)
            where = f"{q.dashboard} / {q.panel} / {q.ref}"
            try:
                ast = promql_parser.parse(expr)
            except Exception as exc:  # promql_parser raises ValueError with the position
                problems.append(f"{where}: does not parse: {exc}: {expr}")
                continue
            unknown = metric_names(expr) - known
            if unknown:
                problems.append(f"{where}: series not in the registry: {sorted(unknown)}")

            def windows(node: object, where: str = where) -> bool:
                if isinstance(node, promql_parser.Call) and node.func.name in RATE_FUNCTIONS:
                    window_s = node.args[0].range.total_seconds()
                    if window_s != rate_window_s:
                        problems.append(f"{where}: {node.func.name} over {window_s} s, not $__rate_interval")
                return True

            promql_parser.walk(ast, windows)
            if re.search(r"\b(rate|irate|increase)\(", q.expr) and "$__rate_interval" not in q.expr:
                problems.append(f"{where}: a rate without $__rate_interval")
    assert count >= 80
    assert problems == []


def test_a_query_on_a_series_outside_the_registry_is_caught() -> None:
    assert metric_names(expand('sum(rate(hw_gpu_utilisation{hw_id=~"$gpu"}[$__rate_interval]))')) - (
        registry_series_names()
    ) == {"hw_gpu_utilisation"}
    with pytest.raises(ValueError):
        promql_parser.parse(expand("sum(rate(hw_errors_total[$__rate_interval])"))


def test_incident_links_carry_the_variables_to_the_job_and_gpu_dashboards(models: dict) -> None:
    incidents = models["factorylens-incidents"]
    table = next(p for p in incidents["panels"] if p["title"] == "Open incidents and their causes")
    urls = {link["title"]: link["url"] for link in table["fieldConfig"]["defaults"]["links"]}
    assert urls["Training job"].startswith("/d/factorylens-training?")
    assert urls["GPU health"].startswith("/d/factorylens-gpu?")
    for url in urls.values():
        for name in VARIABLES:
            assert f"${{{name}:queryparam}}" in url
        assert "${__url_time_range}" in url
    assert set(models) >= {"factorylens-training", "factorylens-gpu"}


def test_provisioning_points_grafana_at_the_json_and_a_fixed_datasource(models: dict) -> None:
    files = generated_files()
    provider = yaml.safe_load(files["provisioning/dashboards/factorylens.yaml"])
    datasource = yaml.safe_load(files["provisioning/datasources/factorylens-prometheus.yaml"])
    assert provider["apiVersion"] == 1 and provider["providers"][0]["type"] == "file"
    assert datasource["apiVersion"] == 1
    (source,) = datasource["datasources"]
    assert source["type"] == "prometheus" and source["uid"]
    assert source["jsonData"]["timeInterval"] == f"{SCRAPE_INTERVAL_S}s"
    for model in models.values():
        assert model["templating"]["list"][0]["current"]["value"] == source["uid"]


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    assert found, "promtool missing: `make test` installs Debian's prometheus (make system-deps)"
    return found


def test_alerting_rules_pass_promtool_check_and_their_unit_tests(tmp_path: Path, promtool: str) -> None:
    files = generated_files()
    for name in ("factorylens-alerts.yaml", "factorylens-alerts.test.yaml"):
        (tmp_path / name).write_text(files[f"alerts/{name}"])
    check = subprocess.run(
        [promtool, "check", "rules", "factorylens-alerts.yaml"], cwd=tmp_path, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 8 rules found" in check.stdout
    test = subprocess.run(
        [promtool, "test", "rules", "factorylens-alerts.test.yaml"], cwd=tmp_path, capture_output=True, text=True
    )
    assert test.returncode == 0, test.stdout + test.stderr
    rules = yaml.safe_load(files["alerts/factorylens-alerts.yaml"])["groups"][0]["rules"]
    for rule in rules:
        assert metric_names(rule["expr"]) <= registry_series_names(), rule["alert"]


@pytest.mark.parametrize(
    ("before", "after", "alert"),
    [
        (") > 10\n", ") > 1000\n", "FactorylensXidStorm"),  # a threshold above the test's burst: never fires
        ("  for: 5m\n", "  for: 0m\n", "FactorylensThermalThrottling"),  # no hold: fires before 5 minutes
    ],
)
def test_promtool_tests_fail_when_a_rule_changes(
    tmp_path: Path, promtool: str, before: str, after: str, alert: str
) -> None:
    """The unit tests have teeth: a threshold raised past its case, or a ``for`` dropped, fails them."""
    files = generated_files()
    rules = files["alerts/factorylens-alerts.yaml"].replace(before, after)
    assert rules != files["alerts/factorylens-alerts.yaml"]
    (tmp_path / "factorylens-alerts.yaml").write_text(rules)
    (tmp_path / "factorylens-alerts.test.yaml").write_text(files["alerts/factorylens-alerts.test.yaml"])
    test = subprocess.run(
        [promtool, "test", "rules", "factorylens-alerts.test.yaml"], cwd=tmp_path, capture_output=True, text=True
    )
    assert test.returncode != 0 and f"alertname: {alert}" in test.stdout + test.stderr
