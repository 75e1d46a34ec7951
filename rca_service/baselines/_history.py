"""History to warm-start baselines from: a long-format CSV/Parquet file or a Prometheus range query.

(The third source, the service's own WAL, needs nothing here: after a restart the store is rebuilt
from snapshot and WAL, and the analyzer feeds each series' stored history to its baseline first.)
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd

History = dict[str, tuple[np.ndarray, np.ndarray]]
TIME_COLUMNS = ("time", "timestamp", "time_unix_nano")
PROMETHEUS_MAX_POINTS = 11_000  # per series and query: Prometheus refuses more


def _seconds(column: pd.Series) -> np.ndarray:
    if pd.api.types.is_numeric_dtype(column):
        t = column.to_numpy(dtype=float)
        magnitude = np.nanmedian(np.abs(t)) if t.size else 0.0
        # unix seconds, milliseconds, microseconds or nanoseconds, told apart by size
        for scale, bound in ((1e9, 1e17), (1e6, 1e14), (1e3, 1e11)):
            if magnitude > bound:
                return t / scale
        return t
    parsed = pd.to_datetime(column, utc=True, errors="raise")
    return (parsed - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy()


def read_history_file(path: str | Path, *, series_column: str = "series", value_column: str = "value") -> History:
    """``{series: (times_s, values)}`` from a long-format CSV or Parquet file: a time column (``time``,
    ``timestamp`` or ``time_unix_nano``; unix numbers or ISO-8601), a value column and, when there
    are several series, a series column. Rows are sorted by time per series."""
    path = Path(path)
    if path.suffix.lower() in (".parquet", ".pq"):
        frame = pd.read_parquet(path)
    elif path.suffix.lower() in (".csv", ".gz", ".txt"):
        frame = pd.read_csv(path)
    else:
        raise ValueError(f"{path}: expected a .csv or .parquet file")
    time_column = next((c for c in TIME_COLUMNS if c in frame.columns), None)
    if time_column is None or value_column not in frame.columns:
        raise ValueError(
            f"{path}: needs a time column ({', '.join(TIME_COLUMNS)}) and a {value_column!r} column; "
            f"has {', '.join(map(str, frame.columns))}"
        )
    frame = frame.assign(_t=_seconds(frame[time_column]), _v=pd.to_numeric(frame[value_column], errors="coerce"))
    groups = frame.groupby(series_column, sort=True) if series_column in frame.columns else [(path.stem, frame)]
    out: History = {}
    for name, group in groups:
        group = group.sort_values("_t", kind="stable")
        out[str(name)] = (group["_t"].to_numpy(float), group["_v"].to_numpy(float))
    return out


def query_prometheus_range(
    url: str,
    query: str,
    start_s: float,
    end_s: float,
    step_s: float,
    *,
    bearer_token: str | None = None,
    timeout_s: float = 30.0,
) -> History:
    """``{series labels: (times_s, values)}`` from Prometheus' ``/api/v1/query_range``, split into
    requests of at most 11,000 points per series (Prometheus' own limit)."""
    if step_s <= 0 or end_s <= start_s:
        raise ValueError("need step_s > 0 and end_s > start_s")
    out: dict[str, tuple[list[float], list[float]]] = {}
    span = step_s * (PROMETHEUS_MAX_POINTS - 1)
    window_start = start_s
    while window_start <= end_s:
        window_end = min(end_s, window_start + span)
        params = urllib.parse.urlencode(
            {"query": query, "start": f"{window_start:.3f}", "end": f"{window_end:.3f}", "step": f"{step_s:g}"}
        )
        request = urllib.request.Request(f"{url.rstrip('/')}/api/v1/query_range?{params}")
        if bearer_token:
            request.add_header("Authorization", f"Bearer {bearer_token}")
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:300]
            raise RuntimeError(f"Prometheus at {url} refused the range query ({exc.code}): {detail}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise RuntimeError(f"Prometheus at {url} is unreachable: {exc}") from exc
        if body.get("status") != "success" or body.get("data", {}).get("resultType") != "matrix":
            raise RuntimeError(f"Prometheus at {url} answered {body.get('status')}: {body.get('error', body)}")
        for result in body["data"]["result"]:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(result["metric"].items()))
            times, values = out.setdefault("{" + labels + "}", ([], []))
            for t, v in result["values"]:
                times.append(float(t))
                values.append(float(v) if v not in ("NaN", "+Inf", "-Inf") else math.nan)
        window_start = window_end + step_s
    return {k: (np.asarray(t), np.asarray(v)) for k, (t, v) in out.items()}
