"""Log records as counts per resource (a service instance): by severity and by template.

Each export request's records are binned (``log_bin_s``) per resource and written as delta points:
``factorylens.log.records{log.severity}`` and ``factorylens.log.templates{log.template.id,
log.severity}``, whose description is the template's text (see :mod:`._templates`). While a
resource logs, every count series it has gets a point in every bin, zero when none of its records
fell there (as span errors do while an operation is called), and a series that starts later first
gets zeros at the resource's last ``ZERO_BINS`` bins: a template that was 0 and is not any more
reads as new behaviour to the detectors, which score a series only against the points it has.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, OrderedDict, deque
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from factorylens.rca_service.store._series import ScalarSeries, SeriesKind
from factorylens.rca_service.store._templates import OTHER_TEXT, TemplateMiner
from factorylens.registry import REGISTRY, Attributes, Metrics

if TYPE_CHECKING:
    from factorylens.rca_service.store._store import SeriesStore

LOG_RECORDS = Metrics.FACTORYLENS_LOG_RECORDS
LOG_TEMPLATES = Metrics.FACTORYLENS_LOG_TEMPLATES
UNIT = REGISTRY.metric(LOG_RECORDS).unit
RECORDS_DESCRIPTION = REGISTRY.metric(LOG_RECORDS).description
# the registry's buckets: UNSPECIFIED, then TRACE … FATAL for severity numbers 1-4 … 21-24
SEVERITIES: tuple[str, ...] = REGISTRY.attribute(Attributes.LOG_SEVERITY).values or ()
# a record without a severity number is read by its text, the words loggers use for each bucket
_SEVERITY_WORDS = {
    **{s: s for s in SEVERITIES},
    "WARNING": "WARN",
    "NOTICE": "INFO",
    "ERR": "ERROR",
    "CRITICAL": "FATAL",
    "CRIT": "FATAL",
    "ALERT": "FATAL",
    "EMERG": "FATAL",
    "EMERGENCY": "FATAL",
    "PANIC": "FATAL",
}
# 10-s bins: more than a series' first detection pass reads as new (a tenth of its hour, 36) plus
# the 20 points of history it needs
ZERO_BINS = 64
MAX_TEMPLATES_PER_SOURCE = 100
MAX_TEMPLATES = 10_000  # across resources: the miners' memory (a few KB a template at most)
MAX_SOURCES = 10_000  # resources with a miner; the least recently logging one is forgotten first

Key = tuple[str, str]  # (template id, or "" for the count per severity; severity)
Batch = dict["_Source", dict[int, Counter[Key]]]  # per resource, per bin: records per series


def severity_of(number: int, text: str) -> str:
    """The OTel severity number's bucket; its text when the number is unset."""
    if 1 <= number <= 24:
        return SEVERITIES[(number - 1) // 4 + 1]
    return _SEVERITY_WORDS.get(text.strip().upper(), SEVERITIES[0])


class _Source:
    """One resource's templates, count series, and the bins it last logged in."""

    __slots__ = ("bins", "keys", "last_ns", "miner", "resource", "series")

    def __init__(self, resource: Mapping[str, Any]) -> None:
        self.resource = resource
        self.miner = TemplateMiner(MAX_TEMPLATES_PER_SOURCE)
        self.keys: dict[Key, None] = {}  # at most (templates + 1) × severities, in creation order
        self.bins: deque[int] = deque(maxlen=ZERO_BINS)  # ascending
        self.last_ns = 0
        self.series: dict[Key, ScalarSeries] = {}  # an alias cache (see LogCounts.drop_before)


class LogCounts:
    def __init__(self, store: SeriesStore, bin_s: float) -> None:
        self._store = store
        self._bin_ns = max(1, int(bin_s * 1e9))
        self._sources: OrderedDict[str, _Source] = OrderedDict()
        self._templates = 0

    def source(self, resource: Mapping[str, Any]) -> _Source:
        """The resource's state, made when new."""
        key = _resource_key(resource)
        found = self._sources.get(key)
        if found is None:
            found = self._sources[key] = _Source(resource)
            if len(self._sources) > MAX_SOURCES:
                _, evicted = self._sources.popitem(last=False)
                self._templates -= len(evicted.miner)
        self._sources.move_to_end(key)
        return found

    def count(self, batch: Batch, source: _Source, ts: int, severity: str, line: str) -> None:
        """One record, into the request's batch."""
        miner = source.miner
        before = len(miner)
        template = miner.match(line, may_add=self._templates < MAX_TEMPLATES)
        self._templates += len(miner) - before
        bins = batch.setdefault(source, {})
        counted = bins.get(ts - ts % self._bin_ns)
        if counted is None:
            counted = bins[ts - ts % self._bin_ns] = Counter()
        counted[("", severity)] += 1
        counted[(template.id, severity)] += 1

    def write(self, batch: Batch) -> None:
        """The batch's counts as points; zeros for the resource's other series in a bin newer than any
        it logged in before, and at its earlier bins for a series it did not have."""
        for source, bins in batch.items():
            for bin_ts in sorted(bins):
                counted = bins[bin_ts]
                for key, n in counted.items():
                    series = self._series(source, key)
                    if series is None:
                        continue
                    if key not in source.keys:
                        source.keys[key] = None
                        for earlier in source.bins:
                            if earlier != bin_ts:
                                series.append(earlier, 0.0)
                    series.append(bin_ts, float(n))
                if not source.bins or bin_ts > source.bins[-1]:
                    for key in source.keys:
                        if key not in counted and (series := self._series(source, key)) is not None:
                            series.append(bin_ts, 0.0)
                    source.bins.append(bin_ts)
                source.last_ns = max(source.last_ns, bin_ts)

    def _series(self, source: _Source, key: Key) -> ScalarSeries | None:
        """A count series of the resource (None at the series limit); a template's description
        follows its text as it generalizes."""
        template_id, severity = key
        text = ""
        if template_id:
            found = source.miner.get(template_id)
            text = found.text if found is not None else OTHER_TEXT
        series = source.series.get(key)
        if series is None:
            if template_id:
                metric, attributes, description = LOG_TEMPLATES, {Attributes.LOG_TEMPLATE_ID: template_id}, text
            else:
                metric, attributes, description = LOG_RECORDS, {}, RECORDS_DESCRIPTION
            attributes[Attributes.LOG_SEVERITY] = severity
            made = self._store._scalar(metric, SeriesKind.DELTA, UNIT, source.resource, attributes, description)
            if made is None:
                return None
            series = source.series[key] = made
        if text and series.info.description != text:
            self._store.redescribe(series.info, text)
        return series

    def drop_before(self, cutoff_ns: int) -> None:
        """Forget resources that logged nothing since ``cutoff_ns``, and every cached series (the
        store may have dropped some)."""
        for key in [k for k, s in self._sources.items() if s.last_ns < cutoff_ns]:
            self._templates -= len(self._sources.pop(key).miner)
        for source in self._sources.values():
            source.series.clear()

    def state(self) -> list[tuple[str, dict[str, Any], list[tuple[str, list[str]]], list[Key], list[int], int]]:
        return [
            (key, dict(s.resource), s.miner.state(), list(s.keys), list(s.bins), s.last_ns)
            for key, s in self._sources.items()
        ]

    def restore(self, state: list[Any]) -> None:
        self._sources.clear()
        self._templates = 0
        for key, resource, templates, keys, bins, last_ns in state[-MAX_SOURCES:]:
            source = self._sources[key] = _Source(resource)
            source.miner.restore(templates)
            source.keys = {(str(t), str(s)): None for t, s in keys}
            source.bins.extend(bins)
            source.last_ns = last_ns
            self._templates += len(source.miner)


def _resource_key(resource: Mapping[str, Any]) -> str:
    """The resource's identity, the same across restarts (what snapshots keep sources by)."""
    canonical = json.dumps(sorted(resource.items()), default=str, separators=(",", ":"))
    return hashlib.blake2b(canonical.encode(), digest_size=8).hexdigest()
