"""The ``factorylens.rca.v1`` gRPC API: its .proto, the committed stubs, and the servicer."""
