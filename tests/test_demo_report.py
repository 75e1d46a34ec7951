"""The demo's HTML report: self-contained (no scripts, no links out), and what a browser draws of it. The
screenshot test renders a report in Debian's headless chromium and finds the plots' colours in the
pixels: the baseline band, the onset marker and the cost bars."""

from __future__ import annotations

import shutil
import struct
import subprocess
import zlib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from factorylens.demo.report import render, svg_chart, write_report
from factorylens.demo.view import Outcome, judge
from factorylens.processors.cost import CostTotals
from factorylens.rca_service.api.v1 import rca_pb2
from tests.test_demo import _incident, small_world

BAND = (0x9E, 0xCA, 0xE1)  # drawn at 50 % opacity on white
ONSET = (0xC0, 0x39, 0x2B)
BARS = (0x1F, 0x77, 0xB4)


class FakeStub:
    """The two reads the report makes, answered with a KPI that breaks at the onset."""

    def __init__(self, onset_ns: int) -> None:
        self.onset_ns = onset_ns

    def _times(self) -> list[int]:
        return [self.onset_ns + k * 10_000_000_000 for k in range(-60, 30)]

    def GetBaseline(self, request: Any, timeout: float) -> Any:
        times = self._times()
        observed = [2.1 if t < self.onset_ns else 3.7 for t in times]
        return rca_pb2.Baseline(
            info=rca_pb2.SeriesInfo(metric="factorylens.train.step.duration", entity="rank:llm-pretrain-7b/3"),
            time_unix_nano=times,
            observed=observed,
            expected=[2.1] * len(times),
            lower=[1.9] * len(times),
            upper=[2.3] * len(times),
        )

    def QuerySeries(self, request: Any, timeout: float) -> Any:
        times = self._times()
        values = [1.0 if t < self.onset_ns else 2.1 for t in times]
        return rca_pb2.QuerySeriesResponse(
            series=[rca_pb2.SeriesData(view="mean", time_unix_nano=times, values=values)]
        )


def report_inputs() -> tuple[Outcome, Any]:
    world = small_world()
    straggler = world.planned[0]
    incident = _incident("inc-1", straggler.onset_s + 10, straggler.truth.entity)
    incident.kpi_series_id = "kpi"
    incident.resolved_time_unix_nano = incident.onset_time_unix_nano + 200_000_000_000
    incident.updated_time_unix_nano = incident.resolved_time_unix_nano
    incident.causes[0].series_id = "cause"
    faults, unexplained, waste = judge(world, [incident])
    cost = SimpleNamespace(
        currency="USD",
        example_prices=True,
        groups={
            "foundation-models": CostTotals(allocated_h=14.0, gpu_time_cost=96.3, idle_cost=26.8, tokens=2e9),
            "research": CostTotals(allocated_h=2.8, gpu_time_cost=12.6, idle_cost=12.6),
        },
        predictability={"llm-pretrain-7b": 0.93},
    )
    outcome = Outcome(faults, [incident], unexplained, waste, cost, "", 2895.0, 290.0)
    follower = SimpleNamespace(world=world, stub=FakeStub(incident.onset_time_unix_nano))
    return outcome, follower


def test_the_report_is_one_self_contained_page_naming_the_fault_and_its_incident() -> None:
    outcome, follower = report_inputs()
    page = render(outcome, follower)  # type: ignore[arg-type]
    assert "<script" not in page and "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    assert page.count("<svg") == 3  # the KPI with its band, the first cause's series, the cost per team
    assert "top cause of inc-1" in page and "matched the injected fault" in page
    assert "rank 11 of llm-pretrain-7b" in page and "EXAMPLE list prices" in page


def test_a_chart_without_data_says_so_rather_than_drawing_nothing() -> None:
    assert "no data" in svg_chart("empty", [], [("x", [])])
    assert "no data" in svg_chart("all NaN", [0.0, 1.0], [("x", [float("nan")] * 2)])


def _png_pixels(path: Path) -> tuple[int, int, list[bytes]]:
    """Width, height and the RGB(A) rows of an 8-bit PNG (what chromium writes)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height, channels = 8, b"", 0, 0, 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and colour in (2, 6)
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw, stride, rows, previous = zlib.decompress(idat), width * channels, [], bytearray(width * channels)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up, corner = previous[i], previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 255
            elif kind == 2:
                line[i] = (line[i] + up) & 255
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 255
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 255
        rows.append(bytes(line))
        previous = line
    return width, channels, rows


def _count(rows: list[bytes], channels: int, rgb: tuple[int, int, int], tolerance: int = 12) -> int:
    found = 0
    for row in rows:
        for i in range(0, len(row), channels):
            if all(abs(row[i + c] - rgb[c]) <= tolerance for c in range(3)):
                found += 1
    return found


@pytest.mark.slow
def test_chromium_draws_the_band_the_onset_and_the_cost_bars(tmp_path: Path) -> None:
    browser = shutil.which("chromium")
    assert browser, "Debian's chromium draws the report: apt-get install chromium (make system-deps does)"
    outcome, follower = report_inputs()
    page = write_report(outcome, follower, tmp_path / "report")  # type: ignore[arg-type]
    shot = tmp_path / "report.png"
    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",  # as root (CI containers)
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1200,1400",
            f"--screenshot={shot}",
            page.resolve().as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    width, channels, rows = _png_pixels(shot)
    assert width == 1200
    half_band = tuple(round(255 - (255 - c) * 0.5) for c in BAND)
    assert _count(rows, channels, half_band) > 2000  # the band around the expected step time
    assert _count(rows, channels, ONSET, tolerance=30) > 30  # the dashed onset marker
    assert _count(rows, channels, BARS, tolerance=20) > 1500  # the cost bars (and the observed lines)
