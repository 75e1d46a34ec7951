"""The price catalog: what one GPU-hour and one kWh cost, per GPU model, cluster, team and contract.

A YAML file the operator writes (``factorylens cost catalog`` prints a labelled example).
Prices are never guessed: a GPU whose model matches no entry is *unpriced*, and every figure that
needs its price says so instead of counting it as free.

An hourly price is given directly (cloud on-demand or reserved) or amortized from a purchase
(on-prem): ``(purchase_price + yearly_operating_cost * years) / (years * 8760 * utilization)``, where
``utilization`` is the share of hours the owner expects to sell or use, so idle hours in the plan
raise the price of the used ones, as FinOps amortization does.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from factorylens.registry import PRICE_BASES

HOURS_PER_YEAR = 8760.0
_REGEX_SPECIAL = set("\\.+()[]{}^$|")
_MODEL_NAME = re.compile(r"[A-Za-z0-9_.:+-]+")
_TOP_KEYS = {"currency", "example", "models", "energy", "overrides"}
_MODEL_KEYS = {"match", "price_per_gpu_hour", "basis", "amortized", "includes_power", "source"}
_AMORTIZED_KEYS = {"purchase_price", "years", "utilization", "yearly_operating_cost"}
_ENERGY_KEYS = {"price_per_kwh", "pue"}
_OVERRIDE_KEYS = {"cluster", "team", "contract", "model", "price_per_gpu_hour", "basis", "amortized"}
_OVERRIDE_KEYS |= {"includes_power", "energy", "source"}


class CatalogError(ValueError):
    """The catalog is malformed; the message names the file and the entry."""


@dataclass(frozen=True)
class Energy:
    price_per_kwh: float
    pue: float = 1.0

    @property
    def billable_per_kwh(self) -> float:
        """Price of one kWh drawn by a GPU, the facility's overhead (PUE) included."""
        return round(self.price_per_kwh * self.pue, 12)


@dataclass(frozen=True)
class GpuPrice:
    """The price of one GPU-hour of a model in one scope (cluster, team; empty = any)."""

    model: str
    per_gpu_hour: float
    basis: str
    includes_power: bool
    energy: Energy | None
    cluster: str = ""
    team: str = ""
    contract: str = ""
    source: str = ""

    @property
    def energy_per_kwh(self) -> float:
        """Billable price per kWh a GPU draws: 0 where the GPU-hour price includes power (cloud)."""
        if self.includes_power or self.energy is None:
            return 0.0
        return self.energy.billable_per_kwh


@dataclass(frozen=True)
class ModelEntry:
    name: str
    patterns: tuple[str, ...]

    def matches(self, hw_name: str) -> bool:
        return any(fnmatch.fnmatchcase(hw_name.lower(), p.lower()) for p in self.patterns)

    def regex(self) -> str:
        """The patterns as one RE2 regex over ``hw_name`` (for the Prometheus recording rules)."""
        return "|".join(_glob_regex(p) for p in self.patterns)


@dataclass(frozen=True)
class PriceCatalog:
    """Prices per model (``models``), per scope (``overrides``: cluster and/or team, optionally one
    model), and energy. The most specific scope wins: cluster and team, then team, then cluster."""

    currency: str = "USD"
    example: bool = False
    models: tuple[ModelEntry, ...] = ()
    prices: tuple[GpuPrice, ...] = ()  # the default price of each model, then every override
    origin: str = "<catalog>"
    _index: dict[tuple[str, str, str], GpuPrice] = field(default_factory=dict, repr=False, compare=False)
    _models_of: dict[str, str | None] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        for price in self.prices:
            self._index[(price.model, price.cluster, price.team)] = price

    @classmethod
    def from_file(cls, path: str | Path) -> PriceCatalog:
        import yaml

        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise CatalogError(f"cannot read the price catalog {path}: {exc}") from exc
        return cls.from_dict(data, origin=str(path))

    @classmethod
    def from_dict(cls, data: Any, origin: str = "<catalog>") -> PriceCatalog:
        if not isinstance(data, dict):
            raise CatalogError(f"{origin}: expected a mapping with 'models', got {type(data).__name__}")
        _check_keys(data, _TOP_KEYS, origin)
        currency = str(data.get("currency", "USD"))
        if not re.fullmatch(r"[A-Z]{3}", currency):
            raise CatalogError(f"{origin}: currency must be an ISO 4217 code such as USD, got {currency!r}")
        models_data = data.get("models")
        if not isinstance(models_data, dict) or not models_data:
            raise CatalogError(f"{origin}: 'models' must map model names to prices (at least one)")
        energy = _energy(data.get("energy"), f"{origin}: energy") if data.get("energy") is not None else None
        models: list[ModelEntry] = []
        prices: list[GpuPrice] = []
        for name, entry in models_data.items():
            where = f"{origin}: models.{name}"
            if not isinstance(name, str) or not _MODEL_NAME.fullmatch(name):
                raise CatalogError(f"{where}: a model name is letters, digits and _ . : + - (it becomes a label)")
            if not isinstance(entry, dict):
                raise CatalogError(f"{where}: expected a mapping with match and a price")
            _check_keys(entry, _MODEL_KEYS, where)
            patterns = entry.get("match")
            if isinstance(patterns, str):
                patterns = [patterns]
            if not isinstance(patterns, list) or not patterns or not all(isinstance(p, str) and p for p in patterns):
                raise CatalogError(
                    f"{where}: 'match' must be a GPU name pattern or a list of them (e.g. 'NVIDIA H100*')"
                )
            if any("[" in p or "]" in p for p in patterns):
                raise CatalogError(
                    f"{where}: 'match' takes * and ? only (no [...] classes: PromQL reads them otherwise)"
                )
            models.append(ModelEntry(str(name), tuple(patterns)))
            per_hour, basis = _hourly(entry, where)
            includes_power = _flag(entry, "includes_power", basis != "amortized", where)
            if not includes_power and energy is None:
                raise CatalogError(f"{where}: the price excludes power, so the catalog needs energy.price_per_kwh")
            prices.append(
                GpuPrice(str(name), per_hour, basis, includes_power, energy, source=str(entry.get("source", "")))
            )
        defaults = {p.model: p for p in prices}
        overrides = data.get("overrides") or []
        if not isinstance(overrides, list):
            raise CatalogError(f"{origin}: 'overrides' must be a list")
        for i, entry in enumerate(overrides):
            prices.extend(_override(entry, f"{origin}: overrides[{i}]", defaults, energy))
        seen: set[tuple[str, str, str]] = set()
        for price in prices:
            key = (price.model, price.cluster, price.team)
            if key in seen:
                raise CatalogError(
                    f"{origin}: two prices for model {price.model} in cluster {price.cluster or '*'}, "
                    f"team {price.team or '*'}"
                )
            seen.add(key)
        return cls(currency, bool(data.get("example", False)), tuple(models), tuple(prices), origin)

    def model_of(self, hw_name: str) -> str | None:
        """The catalog model a GPU name (``hw.name``, e.g. ``NVIDIA H100 80GB HBM3``) belongs to."""
        if hw_name in self._models_of:
            return self._models_of[hw_name]
        found = next((model.name for model in self.models if model.matches(hw_name)), None)
        if len(self._models_of) < 10_000:  # a fleet has a handful of GPU names
            self._models_of[hw_name] = found
        return found

    def price(self, model: str, *, cluster: str = "", team: str = "") -> GpuPrice | None:
        """The most specific price for a model in a cluster and team; None when the model is unpriced."""
        for scope in ((cluster, team), ("", team), (cluster, "")):
            if scope != ("", ""):
                found = self._index.get((model, *scope))
                if found is not None:
                    return found
        return self._index.get((model, "", ""))


def _check_keys(data: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = set(data) - allowed
    if unknown:
        raise CatalogError(f"{where}: unknown keys {sorted(unknown)} (allowed: {sorted(allowed)})")


def _number(value: Any, where: str, *, positive: bool = True, upper: float = math.inf) -> float:
    try:
        number = float(value) if not isinstance(value, bool) and isinstance(value, (int, float)) else math.nan
    except OverflowError:
        number = math.nan
    if not math.isfinite(number):
        raise CatalogError(f"{where}: expected a number, got {str(value)[:40]!r}")
    value = number
    if value < 0 or (positive and value == 0) or value > upper:
        bound = f" and at most {upper:g}" if upper != math.inf else ""
        raise CatalogError(f"{where}: must be {'positive' if positive else 'non-negative'}{bound}, got {value!r}")
    return float(value)


def _flag(entry: Mapping[str, Any], key: str, default: bool, where: str) -> bool:
    value = entry.get(key, default)
    if not isinstance(value, bool):
        raise CatalogError(f"{where}.{key}: expected true or false, got {value!r}")
    return value


def _energy(data: Any, where: str) -> Energy:
    if not isinstance(data, dict):
        raise CatalogError(f"{where}: expected a mapping with price_per_kwh and pue")
    _check_keys(data, _ENERGY_KEYS, where)
    if "price_per_kwh" not in data:
        raise CatalogError(f"{where}: price_per_kwh is required")
    price = _number(data["price_per_kwh"], f"{where}.price_per_kwh", positive=False)
    pue = _number(data.get("pue", 1.0), f"{where}.pue", upper=3.0)
    if pue < 1.0:
        raise CatalogError(f"{where}.pue: a power usage effectiveness is at least 1.0, got {pue!r}")
    return Energy(price, pue)


def _hourly(entry: Mapping[str, Any], where: str) -> tuple[float, str]:
    """A GPU-hour price and its basis, from ``price_per_gpu_hour`` or ``amortized``."""
    has_price, has_amortized = "price_per_gpu_hour" in entry, "amortized" in entry
    if has_price == has_amortized:
        raise CatalogError(f"{where}: give exactly one of price_per_gpu_hour or amortized")
    if has_price:
        basis = str(entry.get("basis", "on_demand"))
        if basis not in PRICE_BASES or basis == "amortized":
            raise CatalogError(f"{where}.basis: expected on_demand or reserved, got {basis!r}")
        return _number(entry["price_per_gpu_hour"], f"{where}.price_per_gpu_hour", positive=False), basis
    if "basis" in entry and entry["basis"] != "amortized":
        raise CatalogError(f"{where}.basis: an amortized price has basis amortized, got {entry['basis']!r}")
    plan = entry["amortized"]
    sub = f"{where}.amortized"
    if not isinstance(plan, dict):
        raise CatalogError(f"{sub}: expected purchase_price, years and utilization")
    _check_keys(plan, _AMORTIZED_KEYS, sub)
    for key in ("purchase_price", "years"):
        if key not in plan:
            raise CatalogError(f"{sub}: {key} is required")
    purchase = _number(plan["purchase_price"], f"{sub}.purchase_price")
    years = _number(plan["years"], f"{sub}.years", upper=20)
    utilization = _number(plan.get("utilization", 1.0), f"{sub}.utilization", upper=1.0)
    opex = _number(plan.get("yearly_operating_cost", 0.0), f"{sub}.yearly_operating_cost", positive=False)
    return (purchase + opex * years) / (years * HOURS_PER_YEAR * utilization), "amortized"


def _override(entry: Any, where: str, defaults: Mapping[str, GpuPrice], energy: Energy | None) -> Iterable[GpuPrice]:
    if not isinstance(entry, dict):
        raise CatalogError(f"{where}: expected a mapping with cluster and/or team")
    _check_keys(entry, _OVERRIDE_KEYS, where)
    for key in ("cluster", "team", "contract", "model", "source"):
        if key in entry and not isinstance(entry[key], str):
            raise CatalogError(f"{where}.{key}: expected a name, got {entry[key]!r}")
    cluster, team = str(entry.get("cluster", "")), str(entry.get("team", ""))
    if not cluster and not team:
        raise CatalogError(f"{where}: an override needs a cluster, a team or both")
    model = entry.get("model")
    if model is not None and model not in defaults:
        raise CatalogError(f"{where}.model: {model!r} is not in models ({sorted(defaults)})")
    scoped_energy = _energy(entry["energy"], f"{where}.energy") if "energy" in entry else energy
    has_price = "price_per_gpu_hour" in entry or "amortized" in entry
    hourly = _hourly(entry, where) if has_price else None
    if hourly is None and "energy" not in entry:
        raise CatalogError(f"{where}: an override sets a price (price_per_gpu_hour or amortized), energy, or both")
    for name in [model] if model else list(defaults):
        base = defaults[name]
        per_hour, basis = hourly if hourly else (base.per_gpu_hour, base.basis)
        includes_power = _flag(
            entry, "includes_power", base.includes_power if not hourly else basis != "amortized", where
        )
        if not includes_power and scoped_energy is None:
            raise CatalogError(f"{where}: the price excludes power, so it needs energy.price_per_kwh")
        yield GpuPrice(
            name,
            per_hour,
            basis,
            includes_power,
            scoped_energy,
            cluster,
            team,
            str(entry.get("contract", "")),
            str(entry.get("source", base.source)),
        )


def _glob_regex(pattern: str) -> str:
    """An fnmatch glob as a case-insensitive RE2 regex (Prometheus anchors it)."""
    out = []
    for char in pattern:
        if char == "*":
            out.append(".*")
        elif char == "?":
            out.append(".")
        elif char in _REGEX_SPECIAL:
            out.append("\\" + char)
        else:
            out.append(char)
    return "(?i:" + "".join(out) + ")"
