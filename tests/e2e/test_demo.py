"""``factorylens demo`` headless (``--plain``) with every process real: the RCA service, rotel, the node
agents and the jobs, on the simulated clock. Every injected fault must be the first cause of an incident
of its own, and no incident may open that no injected fault explains.

It runs at 6× rather than the default 10×: the service's analysis of 4 × 8 GPUs takes about one CPU
second per 10 simulated seconds and gets at most a third of the wall clock (the rest is ingest's), so on
a busy 2-core machine at 10× it lags the world by half a minute and more; the ranking is then decided
on less evidence than the scenario suite's (which analyses every scrape), and a fault can be missed."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from factorylens.demo import DemoOptions, run_demo

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
SPEED = 6.0


def test_the_demo_names_every_injected_fault_and_opens_no_other_incident(tmp_path: Path) -> None:
    out = io.StringIO()
    stack_pids: list[int] = []
    outcome = run_demo(
        DemoOptions(plain=True, speed=SPEED, data_dir=str(tmp_path / "data"), report_dir=str(tmp_path / "report")),
        stream=out,
        on_started=lambda stack: stack_pids.extend(c.process.pid for c in stack.children),
    )
    text = out.getvalue()
    assert outcome is not None, text
    assert len(outcome.faults) == 5
    missed = [f.planned.name for f in outcome.faults if f.incident is None]
    assert not missed, text
    assert not outcome.unexplained, text
    # waste incidents are the idle notebooks' (and the bursty batch job's), never a training rank's
    assert all(i.causes[0].entity.startswith("job:") for i in outcome.waste if i.causes), text
    assert "foundation-models" in text and "per 1M tokens" in text
    # every process the demo started is gone
    assert len(stack_pids) >= 5  # the service, rotel, three world parts (and Prometheus where installed)
    for pid in stack_pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
