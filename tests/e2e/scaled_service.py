"""``factorylens rca serve`` for a simulated cluster that runs ``--speed`` times faster than the clock.

The end-to-end tests run the RCA service as a real process (so it can be killed with SIGKILL and
restarted on its port) in front of the simulated cluster of ``factorylens demo``. A simulated hour
passes in minutes there, so the analysis windows must shrink by the same factor or no incident
opens within a test's time; ``factorylens rca serve`` has no option for that, so this launcher builds
the service with ``factorylens.simulation.live_training.scaled_analyzer``, and otherwise serves
like ``rca serve`` (SIGTERM stops it cleanly, SIGKILL leaves the WAL to replay)::

    python -m tests.e2e.scaled_service --listen 127.0.0.1:P --metrics-listen 127.0.0.1:Q \\
        --data-dir DIR --speed 10 --interval 1
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from factorylens.rca_service import RcaService, RcaServiceConfig
from factorylens.simulation.live_training import scaled_analyzer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.e2e.scaled_service", description=__doc__)
    parser.add_argument("--listen", required=True, metavar="HOST:PORT")
    parser.add_argument("--metrics-listen", required=True, metavar="HOST:PORT")
    parser.add_argument("--data-dir", required=True, metavar="DIR")
    parser.add_argument("--speed", type=float, required=True, help="simulated seconds per second")
    parser.add_argument("--interval", type=float, required=True, help="scrape and analysis interval (s)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    service = RcaService(
        RcaServiceConfig(
            listen=args.listen,
            metrics_listen=args.metrics_listen,
            data_dir=args.data_dir,
            analysis_interval_s=args.interval,
        ),
        analyzer=scaled_analyzer(args.speed, args.interval),
    )
    service.start()
    terminate = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: terminate.set())
    try:
        while not terminate.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    service.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
