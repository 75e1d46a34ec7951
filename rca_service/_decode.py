"""Decoding an OTLP export request item by item when the whole request does not decode.

protobuf's decoder refuses a message nested deeper than its limit (100), so one over-deep attribute
would make a whole batch INVALID_ARGUMENT, losing a collector's other items. When the whole request
fails, it is decoded again level by level with "shallow" twins of the OTLP messages, which read the
same field numbers as opaque bytes: resource → scope → item (metric, span, log record). Each item that
decodes is kept; each one that does not is counted as rejected. Bytes that are not even a sequence of
resources fail as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope
from opentelemetry.proto.resource.v1.resource_pb2 import Resource


def _shallow_types() -> tuple[Any, Any, Any]:
    """Messages with the OTLP request/resource/scope layout, every nested message left as bytes."""
    file = descriptor_pb2.FileDescriptorProto(
        name="factorylens_shallow_otlp.proto", package="factorylens.shallow", syntax="proto3"
    )
    repeated, optional = (
        descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED,
        descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
    )
    as_bytes, as_string = (
        descriptor_pb2.FieldDescriptorProto.TYPE_BYTES,
        descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
    )
    request = file.message_type.add(name="Request")
    request.field.add(name="resources", number=1, label=repeated, type=as_bytes)
    for name in ("ResourceLevel", "ScopeLevel"):
        level = file.message_type.add(name=name)
        level.field.add(name="head", number=1, label=optional, type=as_bytes)
        level.field.add(name="children", number=2, label=repeated, type=as_bytes)
        level.field.add(name="schema_url", number=3, label=optional, type=as_string)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return tuple(
        message_factory.GetMessageClass(pool.FindMessageTypeByName(f"factorylens.shallow.{name}"))
        for name in ("Request", "ResourceLevel", "ScopeLevel")
    )


_SHALLOW_REQUEST, _SHALLOW_RESOURCE, _SHALLOW_SCOPE = _shallow_types()

# per request type: (repeated resource field, repeated scope field, repeated item field)
_LAYOUT: dict[str, tuple[str, str, str]] = {
    "ExportMetricsServiceRequest": ("resource_metrics", "scope_metrics", "metrics"),
    "ExportTraceServiceRequest": ("resource_spans", "scope_spans", "spans"),
    "ExportLogsServiceRequest": ("resource_logs", "scope_logs", "log_records"),
}


@dataclass
class Salvaged:
    """A request rebuilt from the items that decode, and how many did not."""

    request: Any
    rejected_items: int
    first_error: str


def salvage(request_type: Any, raw: bytes) -> Salvaged:
    """Decode ``raw`` item by item; raises ``DecodeError`` when not even its outline decodes."""
    resource_field, scope_field, item_field = _LAYOUT[request_type.DESCRIPTOR.name]
    request = request_type()
    rejected = 0
    first_error = ""
    outline = _SHALLOW_REQUEST.FromString(raw)
    for resource_raw in outline.resources:
        level = _SHALLOW_RESOURCE.FromString(resource_raw)
        scopes = [_SHALLOW_SCOPE.FromString(scope_raw) for scope_raw in level.children]
        target = getattr(request, resource_field).add()
        try:
            target.resource.CopyFrom(Resource.FromString(level.head))
        except Exception as exc:
            rejected += sum(len(scope.children) for scope in scopes)
            first_error = first_error or f"resource: {exc}"
            del getattr(request, resource_field)[-1]
            continue
        target.schema_url = level.schema_url
        for scope in scopes:
            scope_target = getattr(target, scope_field).add()
            scope_target.schema_url = scope.schema_url
            try:
                scope_target.scope.CopyFrom(InstrumentationScope.FromString(scope.head))
            except Exception as exc:
                rejected += len(scope.children)
                first_error = first_error or f"scope: {exc}"
                del getattr(target, scope_field)[-1]
                continue
            items = getattr(scope_target, item_field)
            for item_raw in scope.children:
                try:
                    items.add().ParseFromString(item_raw)
                except Exception as exc:
                    del items[-1]
                    rejected += 1
                    first_error = first_error or f"{item_field[:-1]}: {exc}"
    return Salvaged(request, rejected, first_error)
