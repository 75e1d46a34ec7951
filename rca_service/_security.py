"""TLS credentials (optionally mTLS) and the bearer-token check applied to every RPC."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc


class BearerTokenInterceptor(grpc.ServerInterceptor):
    """Rejects any call without ``authorization: Bearer <token>`` with UNAUTHENTICATED."""

    def __init__(self, token: str, on_reject: Callable[[str], None] | None = None) -> None:
        self._expected = f"Bearer {token}".encode()
        self._on_reject = on_reject

        def deny(request: Any, context: grpc.ServicerContext) -> None:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")

        self._deny = grpc.unary_unary_rpc_method_handler(deny)

    def intercept_service(self, continuation: Callable, handler_call_details: grpc.HandlerCallDetails) -> Any:
        given = b""
        for key, value in handler_call_details.invocation_metadata or ():
            if key == "authorization":
                given = value.encode() if isinstance(value, str) else value
                break
        if hmac.compare_digest(given, self._expected):
            return continuation(handler_call_details)
        if self._on_reject:
            self._on_reject(handler_call_details.method)
        return self._deny


def server_credentials(cert: str, key: str, client_ca: str = "") -> grpc.ServerCredentials:
    """Server TLS; with ``client_ca`` clients must present a certificate it signed (mTLS)."""
    root = Path(client_ca).read_bytes() if client_ca else None
    return grpc.ssl_server_credentials(
        [(Path(key).read_bytes(), Path(cert).read_bytes())], root_certificates=root, require_client_auth=bool(client_ca)
    )
