"""One module per dashboard, each exporting ``BOARD``."""
