"""Training-code instrumentation: step and phase spans and metrics joined to GPUs.
See ARCHITECTURE.md section 4."""
