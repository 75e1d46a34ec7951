"""A live simulated cluster's training job and analyzer, in real time (the end-to-end tests' cluster):
rank 0 of the job as a real instrumented training loop following the simulated cluster, and the
analyzer for telemetry that lives faster than its timestamps."""

from __future__ import annotations

import threading
from typing import Any

TRAINING_JOB = "llm-pretrain-7b"
DEVICE_TIME_S = 0.05
COLLECTIVE_TIME_S = 0.01
LOADER_DELAY_S = 0.002
CHECKPOINT_EVERY_STEPS = 200
CHECKPOINT_TIME_S = 0.5
BATCH_SIZE = 64
SEQUENCE_LENGTH = 2048  # tokens per sample of the 7B job the loop stands in for
HEALTHY_MFU = 0.45


class TrainingJob:
    """Rank 0 of the simulated cluster's training job as a real, instrumented training loop.

    The loop (``instrumentation/examples/train_numpy.py``) runs in a thread of this process and
    exports its steps over OTLP to the RCA service, with the ``hw.id`` of its GPU on the resource.
    Its phases follow the simulated cluster, as a synchronous job's would: compute follows the
    slowest GPU's clocks (a throttled or lost GPU anywhere), the all-reduce the slowest node's fabric,
    checkpoints the checkpoint mount, and the input pipeline the host's CPU and memory.
    """

    def __init__(self, cluster: Any, endpoint: str, interval_s: float) -> None:
        self._cluster = cluster
        self._endpoint = endpoint
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-training", daemon=True)
        self.instrumentor: Any = None

    def start(self) -> None:
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        from factorylens.gpus import peak_tflops
        from factorylens.instrumentation import TrainingConfig, TrainingInstrumentor
        from factorylens.telemetry import make_meter_provider, make_resource, periodic_reader

        gpus = self._cluster.job_gpus(TRAINING_JOB)
        if not gpus:
            return
        host, gpu = gpus[0]
        ranks = len(gpus)
        config = TrainingConfig(
            job_id=TRAINING_JOB,
            team="foundation-models",
            rank=0,
            world_size=ranks,
            host=host,
            gpu_ids=(gpu.uuid,),
            gpu_name=gpu.model.name,
            model_flops_per_sample=self._flops_per_sample(peak_tflops(gpu.model.name) or 0.0),
            export_interval_s=self._interval_s,
        )
        instrumentor = TrainingInstrumentor(config)
        resource = make_resource(instrumentor.identity(), "factorylens-demo-training")
        meters = make_meter_provider(
            resource,
            [periodic_reader(OTLPMetricExporter(endpoint=self._endpoint, insecure=True), self._interval_s)],
        )
        tracers = TracerProvider(resource=resource)
        tracers.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=self._endpoint, insecure=True)))
        self._providers = (meters, tracers)
        self.instrumentor = TrainingInstrumentor(config, meter_provider=meters, tracer_provider=tracers).instrument()
        self._thread.start()

    @staticmethod
    def _flops_per_sample(peak_tflops: float) -> float:
        """The loop stands in for the 7B job: its FLOPs per sample are what makes a healthy step run at
        ``HEALTHY_MFU`` of the GPU's peak, so MFU falls when the job slows."""
        return HEALTHY_MFU * peak_tflops * 1e12 * (DEVICE_TIME_S + COLLECTIVE_TIME_S + LOADER_DELAY_S) / BATCH_SIZE

    def _run(self) -> None:
        from factorylens.instrumentation.examples.train_numpy import train

        cluster = self._cluster
        train(
            steps=10**9,
            batch_size=BATCH_SIZE,
            tokens_per_sample=SEQUENCE_LENGTH,
            device_time_s=DEVICE_TIME_S,
            slowdown=lambda: 1.0 / max(cluster.job_compute_speed(TRAINING_JOB), 0.05),
            collective_time_s=COLLECTIVE_TIME_S,
            collective_slowdown=lambda: cluster.job_collective_slowdown(TRAINING_JOB),
            checkpoint_every=CHECKPOINT_EVERY_STEPS,
            checkpoint_time_s=CHECKPOINT_TIME_S,
            checkpoint_slowdown=lambda: cluster.job_checkpoint_slowdown(TRAINING_JOB),
            loader_delay_s=LOADER_DELAY_S,
            data_slowdown=lambda: cluster.job_data_slowdown(TRAINING_JOB),
            stop=self._stop,
        )

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        if self.instrumentor is not None:
            self.instrumentor.uninstrument()
            for provider in self._providers:
                provider.shutdown()


def scaled_analyzer(speed: float, interval_s: float) -> Any:
    """The RCA service's analyzer for a simulated cluster that lives ``speed`` times faster than the
    wall clock stamping its points: every window shrinks by the same factor (an hour of history is 6
    minutes at speed 10), and an incident resolves after at least three scrapes."""
    from factorylens.rca_service.analysis import KpiRankingAnalyzer, scaled_config

    return KpiRankingAnalyzer(scaled_config(speed, interval_s))
