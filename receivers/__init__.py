"""Receivers: the node agent's sources of signals (GPU now; host, storage and fabric to come)."""
