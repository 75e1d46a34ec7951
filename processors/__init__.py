"""Processors: pure functions over OTLP data (normalize DCGM → hw.gpu.*, enrich with job/team/topology,
cost), run by the RCA service on ingest or inside rotel. See ARCHITECTURE.md section 4."""
