"""RCA service: OTLP gRPC ingest, durable store, baselines, detection and root-cause ranking.
See ARCHITECTURE.md section 4."""
