"""List pages (AIP-158) of the factorylens.rca.v1 API: page_size 0 means the default, larger ones are
capped; a page also stops before PAGE_BYTES of items (at least one item), far below gRPC's default
4 MiB receive limit. Kept apart from the servicer so that the CLI's client commands load without the
RCA service's analysis stack."""

DEFAULT_SERIES_PAGE = 1000
MAX_SERIES_PAGE = 10_000
DEFAULT_INCIDENTS_PAGE = 100
MAX_INCIDENTS_PAGE = 1000
PAGE_BYTES = 2 << 20
