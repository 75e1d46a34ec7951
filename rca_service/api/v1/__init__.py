"""Generated ``factorylens.rca.v1`` messages and gRPC stubs (see ``api/_generate.py``)."""
