"""The generated Prometheus recording rules pass `promtool check rules` and the hand-computed
`promtool test rules` cases in cost_rules_test.yaml (Debian's prometheus ships promtool)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from factorylens.cli import main
from factorylens.processors.cost import RECORDED, WORKLOAD, PriceCatalog, recording_rules, rules_yaml
from factorylens.registry import REGISTRY

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    assert found, "promtool missing: `make test` installs Debian's prometheus (make system-deps)"
    return found


def test_rules_pass_promtool_check_and_the_hand_computed_unit_tests(tmp_path: Path, promtool: str) -> None:
    (tmp_path / "cost-rules.yaml").write_text(rules_yaml(PriceCatalog.from_file(HERE / "test-catalog.yaml")))
    shutil.copy(HERE / "cost_rules_test.yaml", tmp_path)
    check = subprocess.run(
        [promtool, "check", "rules", "cost-rules.yaml"], cwd=tmp_path, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    test = subprocess.run(
        [promtool, "test", "rules", "cost_rules_test.yaml"], cwd=tmp_path, capture_output=True, text=True
    )
    assert test.returncode == 0, test.stdout + test.stderr
    assert "SUCCESS" in test.stdout


def test_a_wrong_expectation_fails_promtool(tmp_path: Path, promtool: str) -> None:
    """The unit tests can fail: the same file with one hand value changed does."""
    (tmp_path / "cost-rules.yaml").write_text(rules_yaml(PriceCatalog.from_file(HERE / "test-catalog.yaml")))
    text = (HERE / "cost_rules_test.yaml").read_text().replace("value: 1.0075", "value: 1.0076")
    (tmp_path / "cost_rules_test.yaml").write_text(text)
    test = subprocess.run(
        [promtool, "test", "rules", "cost_rules_test.yaml"], cwd=tmp_path, capture_output=True, text=True
    )
    assert test.returncode != 0 and "1.0076" in test.stdout + test.stderr


def test_rules_read_the_registry_names_and_the_catalog_patterns() -> None:
    catalog = PriceCatalog.from_file(HERE / "test-catalog.yaml")
    rules = recording_rules(catalog)["groups"][0]["rules"]
    text = "\n".join(r["expr"] for r in rules)
    for metric in (
        "factorylens.gpu.allocation.time",
        "factorylens.gpu.active.time",
        "factorylens.gpu.allocation.energy",
    ):
        assert REGISTRY.metric(metric).prometheus_name in text
    assert REGISTRY.metric("factorylens.gpu.price").prometheus_name == "factorylens_gpu_price_per_hour"
    assert "factorylens_gpu_price_per_hour" in text
    assert '"hw_model", "H100", "hw_name", "(?i:NVIDIA H100.*)"' in text
    records = {r["record"] for r in rules}
    assert {rule for rule, _ in RECORDED.values()} <= records and WORKLOAD in records
    figures = [r["labels"]["factorylens_cost_figure"] for r in rules if r["record"] == WORKLOAD]
    assert figures == [*RECORDED, "samples", "tokens"]  # every figure once, and the jobs' output


def test_cost_rules_command_writes_the_same_rules(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "rules.yaml"
    assert main(["cost", "rules", "--catalog", str(HERE / "test-catalog.yaml"), "-o", str(out)]) == 0
    assert yaml.safe_load(out.read_text()) == recording_rules(PriceCatalog.from_file(HERE / "test-catalog.yaml"))
    (tmp_path / "bad.yaml").write_text("models: {}")
    assert main(["cost", "rules", "--catalog", str(tmp_path / "bad.yaml")]) == 2
    assert "'models' must map model names" in capsys.readouterr().err
