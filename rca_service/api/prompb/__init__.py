"""Generated Prometheus remote-write messages (``prometheus.WriteRequest``) from the vendored
``proto/prometheus/prompb`` files (see ``api/_generate.py``)."""
