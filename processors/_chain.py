"""The processors the RCA service runs on every metrics request, with their running totals."""

from __future__ import annotations

import collections
import logging
import threading
from typing import Any

from factorylens.processors._enrich import EnrichConfig, EnrichLabels, GpuJobIndex, enrich_metrics, learn_jobs
from factorylens.processors._normalize import NormalizeStats, normalize_metrics
from factorylens.rca_service._ratelimit import RateLimitedLog

limited_log = RateLimitedLog(logging.getLogger(__name__))


class MetricsProcessors:
    """normalize → enrich, in place, on ingest and on WAL replay alike (the WAL keeps what the
    client sent, so a changed mapping applies to replayed data too)."""

    def __init__(self, enrich: EnrichConfig | None = None) -> None:
        self.enrich = enrich or EnrichConfig()
        self.index = GpuJobIndex(self.enrich.max_gpus)
        self._labels = EnrichLabels(self.enrich, self.index)
        self._lock = threading.Lock()
        self._totals = NormalizeStats()
        self.failed = 0  # requests a processor failed on (stored as they were)

    def process(self, request: Any) -> None:
        """Normalize and enrich ``request`` in place. A processor failing part way leaves the rest of
        the request as it is (logged, counted under ``failed``): a request is never lost to them."""
        with self._lock:  # the index and the translation caches are shared by the server's threads
            try:
                if self.enrich.gpu_jobs_from_processes:
                    learn_jobs(request, self.index)
                stats = normalize_metrics(request, labels=self._labels)
                done = {id(metric) for metric in stats.renamed}  # alive in stats.renamed meanwhile
                enrich_metrics(request, self.enrich, self.index, done=done, learn=False)
            except Exception:
                self.failed += 1
                limited_log.log(logging.ERROR, "processors", "a processor failed on a request", exc_info=True)
                return
            if stats.translated or stats.unmapped:
                self._totals.merge(stats)

    def unmapped(self) -> collections.Counter[tuple[str, str]]:
        """Points left under a producer's own name so far, by (producer, name)."""
        with self._lock:
            return collections.Counter(self._totals.unmapped)
