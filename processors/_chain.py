"""The processors the RCA service runs on every metrics request, with their running totals."""

from __future__ import annotations

import collections
import threading
from typing import Any

from factorylens.processors._enrich import EnrichConfig, EnrichLabels, GpuJobIndex, enrich_metrics, learn_jobs
from factorylens.processors._normalize import NormalizeStats, normalize_metrics


class MetricsProcessors:
    """normalize → enrich, in place, on ingest and on WAL replay alike (the WAL keeps what the
    client sent, so a changed mapping applies to replayed data too)."""

    def __init__(self, enrich: EnrichConfig | None = None) -> None:
        self.enrich = enrich or EnrichConfig()
        self.index = GpuJobIndex(self.enrich.max_gpus)
        self._labels = EnrichLabels(self.enrich, self.index)
        self._lock = threading.Lock()
        self._totals = NormalizeStats()

    def process(self, request: Any) -> None:
        with self._lock:  # the index and the translation caches are shared by the server's threads
            if self.enrich.gpu_jobs_from_processes:
                learn_jobs(request, self.index)
            stats = normalize_metrics(request, labels=self._labels)
            enrich_metrics(request, self.enrich, self.index, done=stats.renamed, learn=False)
            if stats.translated or stats.unmapped:
                self._totals.merge(stats)

    def unmapped(self) -> collections.Counter[tuple[str, str]]:
        """Points left under a producer's own name so far, by (producer, name)."""
        with self._lock:
            return collections.Counter(self._totals.unmapped)

    def translated(self) -> int:
        with self._lock:
            return self._totals.translated
