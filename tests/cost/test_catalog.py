"""The price catalog: prices per model and scope, amortization, and clear errors for bad files."""

from __future__ import annotations

from pathlib import Path

import pytest

from factorylens.cost_report import example_catalog_path
from factorylens.processors.cost import CatalogError, PriceCatalog

HERE = Path(__file__).parent


def catalog(text: str, tmp_path: Path) -> PriceCatalog:
    path = tmp_path / "prices.yaml"
    path.write_text(text)
    return PriceCatalog.from_file(path)


def test_the_most_specific_scope_wins() -> None:
    c = PriceCatalog.from_file(HERE / "test-catalog.yaml")
    assert c.model_of("NVIDIA H100 80GB HBM3") == "H100"
    assert c.model_of("nvidia h100 80gb hbm3 MIG 1g.10gb") == "H100"  # case-insensitive, MIG slices too
    assert c.model_of("NVIDIA GB200") is None
    price = lambda **scope: c.price("H100", **scope).per_gpu_hour  # noqa: E731
    assert price() == 4.0
    assert price(cluster="c1") == 4.0  # no override for c1
    assert price(team="research") == 3.0
    assert price(cluster="c1", team="research") == 3.0
    assert price(cluster="c2") == 5.0
    assert price(cluster="c2", team="vision") == 5.0
    assert price(cluster="c2", team="research") == 2.5
    assert c.price("A100", cluster="c2", team="research").per_gpu_hour == 2.0  # overrides named H100 only
    assert c.price("GB200") is None
    reserved = c.price("H100", team="research")
    assert (reserved.basis, reserved.contract) == ("reserved", "r-2026")


def test_energy_is_billed_only_where_the_gpu_hour_price_excludes_power() -> None:
    c = PriceCatalog.from_file(HERE / "test-catalog.yaml")
    assert c.price("H100").includes_power and c.price("H100").energy_per_kwh == 0.0
    a100 = c.price("A100")
    assert not a100.includes_power
    assert a100.energy_per_kwh == pytest.approx(0.10 * 1.5)  # price per kWh times PUE


def test_amortized_price_spreads_purchase_and_running_cost_over_the_planned_hours(tmp_path: Path) -> None:
    c = catalog(
        """
energy: {price_per_kwh: 0.08, pue: 1.2}
models:
  H100:
    match: "NVIDIA H100*"
    amortized: {purchase_price: 30000, years: 4, utilization: 0.85, yearly_operating_cost: 1500}
""",
        tmp_path,
    )
    price = c.price("H100")
    assert price.basis == "amortized"
    assert price.per_gpu_hour == pytest.approx((30000 + 4 * 1500) / (4 * 8760 * 0.85))
    assert not price.includes_power  # on-prem: power is billed on top
    assert price.energy_per_kwh == pytest.approx(0.096)


def test_the_shipped_example_is_valid_and_says_it_is_an_example() -> None:
    c = PriceCatalog.from_file(example_catalog_path())
    assert c.example is True
    assert c.currency == "USD"
    assert all(p.source for p in c.prices), "every example price names where it comes from"
    assert "EXAMPLE" in example_catalog_path().read_text()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[]", "expected a mapping with 'models'"),
        ("models: {}", "'models' must map model names"),
        ("models: {H100: {price_per_gpu_hour: 2}}", "'match' must be a GPU name pattern"),
        ("models: {H100: {match: x}}", "exactly one of price_per_gpu_hour or amortized"),
        ("models: {H100: {match: x, price_per_gpu_hour: -1}}", "must be non-negative"),
        ("models: {H100: {match: x, price_per_gpu_hour: two}}", "expected a number"),
        ("models: {H100: {match: x, price_per_gpu_hour: 1" + "0" * 400 + "}}", "expected a number"),
        ('models: {"H100 \\"SXM\\"": {match: x, price_per_gpu_hour: 1}}', "a model name is letters"),
        ("models: {H100: {match: 'NVIDIA L[4]*', price_per_gpu_hour: 1}}", "takes * and ? only"),
        (
            "models: {H100: {match: x, price_per_gpu_hour: 1}}\noverrides: [{cluster: null, price_per_gpu_hour: 2}]",
            "expected a name",
        ),
        (
            "models: {H100: {match: x, price_per_gpu_hour: 1}}\noverrides: [{team: [a, b], price_per_gpu_hour: 2}]",
            "expected a name",
        ),
        ("models: {H100: {match: x, price_per_gpu_hour: 2, prise: 1}}", "unknown keys ['prise']"),
        ("models: {H100: {match: x, price_per_gpu_hour: 2, includes_power: false}}", "needs energy.price_per_kwh"),
        ("models: {H100: {match: x, amortized: {years: 3}}}", "purchase_price is required"),
        ("models: {H100: {match: x, amortized: {purchase_price: 1, years: 3, utilization: 1.5}}}", "at most 1"),
        ("energy: {price_per_kwh: 0.1, pue: 0.9}\nmodels: {H100: {match: x, price_per_gpu_hour: 1}}", "at least 1.0"),
        ("currency: dollars\nmodels: {H100: {match: x, price_per_gpu_hour: 1}}", "ISO 4217"),
        ("models: {H100: {match: x, price_per_gpu_hour: 1}}\noverrides: [{price_per_gpu_hour: 2}]", "a cluster"),
        (
            "models: {H100: {match: x, price_per_gpu_hour: 1}}\n"
            "overrides: [{team: t, model: B200, price_per_gpu_hour: 2}]",
            "'B200' is not in models",
        ),
        ("models: {H100: {match: x, price_per_gpu_hour: 1}}\noverrides: [{team: t}]", "sets a price"),
        (
            "models: {H100: {match: x, price_per_gpu_hour: 1}}\n"
            "overrides: [{team: t, price_per_gpu_hour: 2}, {team: t, price_per_gpu_hour: 3}]",
            "two prices for model H100",
        ),
    ],
)
def test_a_bad_catalog_is_refused_with_a_message_naming_the_entry(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(CatalogError) as error:
        catalog(text, tmp_path)
    assert message in str(error.value)
    assert str(tmp_path / "prices.yaml") in str(error.value)


def test_an_unreadable_file_is_a_catalog_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="cannot read the price catalog"):
        PriceCatalog.from_file(tmp_path / "missing.yaml")
    (tmp_path / "broken.yaml").write_text("models: {H100: [")
    with pytest.raises(CatalogError, match="cannot read the price catalog"):
        PriceCatalog.from_file(tmp_path / "broken.yaml")


def test_an_empty_catalog_prices_nothing() -> None:
    c = PriceCatalog()
    assert c.model_of("NVIDIA H100 80GB HBM3") is None
    assert c.price("H100") is None
    assert c.prices == ()


def test_a_catalog_that_is_not_text_is_a_catalog_error(tmp_path: Path) -> None:
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe\x00models")
    with pytest.raises(CatalogError, match="cannot read the price catalog"):
        PriceCatalog.from_file(tmp_path / "binary.yaml")
