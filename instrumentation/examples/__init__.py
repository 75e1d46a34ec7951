"""Small real training loops, instrumented: ``train_numpy`` (no torch needed) and ``train_torch``."""
