"""``otel-config/agent.yaml``, generated: the otelcol-contrib agent whose ``transform`` processors rename other
producers' series to ours at the edge, from the same registry tables the RCA service's normalize processor reads,
so the two cannot disagree (a test fails when the committed file is stale).

OTTL works on one data point (or one metric) at a time. What fits that model is done here: renames, units, scale
factors, constant attributes, label renames and moves to the resource, the gauge/sum kind, and the throttle bitmask
(one ``copy_metric`` per bit, then integer arithmetic). What needs two series at once — node-exporter's
``used = total − free`` (``DERIVED_TRANSLATIONS``) — is left to the service: those source series pass through
untouched, and so does every field the tables do not name.

Statements use the transform processor's grouped form without ``context:`` (v0.120+): each group's context is
inferred from its paths, groups run in order, and a group's ``conditions`` (ORed) select what it touches.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from factorylens.registry import (
    ATTRIBUTE_TRANSLATIONS,
    DERIVED_TRANSLATIONS,
    GPU_RECEIVER,
    METRIC_TRANSLATIONS,
    PRODUCER_ATTRIBUTES,
    PRODUCER_SCOPES,
    REGISTRY,
    Attributes,
    AttributeTranslation,
    Instrument,
    MetricTranslation,
    Producer,
    prometheus_label,
)

# otel-config/ of the checkout this module runs from (where `factorylens otel-config` writes by default)
CHECKOUT_CONFIG_DIR = Path(__file__).resolve().parents[2] / "otel-config"
_TOTAL = "_total"


@dataclass(frozen=True)
class StatementGroup:
    """One entry of a transform processor's ``metric_statements``: a comment saying why, the ORed
    ``conditions`` that select what the group touches, and statements run in order."""

    comment: str
    statements: tuple[str, ...]
    conditions: tuple[str, ...] = ()


# ---------------------------------------------------------------------------- OTTL text


def _q(text: str) -> str:
    """An OTTL string literal (double quotes, backslash escapes)."""
    return json.dumps(text, ensure_ascii=False)


def _num(value: float) -> str:
    """An OTTL float literal: digits with a dot, never an exponent (the grammar has none)."""
    text = f"{value:.12f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def _any(clauses: Sequence[str]) -> str:
    return clauses[0] if len(clauses) == 1 else "(" + " or ".join(clauses) + ")"


def _name_is(names: Iterable[str]) -> list[str]:
    return [f"metric.name == {_q(n)}" for n in names]


def _where(*clauses: str | None) -> str:
    kept = [c for c in clauses if c]
    return " where " + " and ".join(kept) if kept else ""


def _attr(scope: str, key: str) -> str:
    return f"{scope}.attributes[{_q(key)}]"


def _rename(scope: str, source: str, target: str, convert: str | None, where: str | None) -> list[str]:
    """``source`` → ``target`` in ``scope``'s attributes; ``convert`` (``Int``, ``Bool``) is tried on the copy and
    leaves the string when it fails (as the service's processor does). ``Int`` first drops a leading word
    (hostmetrics' ``cpu3``)."""
    src, dst = _attr(scope, source), _attr(scope, target)
    statements = [] if source == target else [f"set({dst}, {src}){_where(where)}"]
    if convert == "Int":
        statements.append(f'replace_pattern({dst}, "^[a-z]+", ""){_where(where)}')
    if convert:
        statements.append(f"set({dst}, {convert}({dst})){_where(where)}")
    if source != target:
        statements.append(f"delete_key({scope}.attributes, {_q(source)}){_where(where)}")
    return statements


# ---------------------------------------------------------------------------- normalize (other producers → ours)


GEN_AI_PREFIX = "gen_ai."  # the OTel GenAI metrics, which carry the scrape target's server.address and port


def arriving_names(translation: MetricTranslation) -> tuple[str, ...]:
    """The names a source metric may arrive under: the collector's ``prometheus`` receiver may trim ``_total``."""
    source = translation.source
    return (source, source[: -len(_TOTAL)]) if source.endswith(_TOTAL) else (source,)


def edge_translations() -> tuple[MetricTranslation, ...]:
    """The translations done at the edge: all but the sources of derived series, which the service must still see
    under their own names to join them."""
    derived = {name for d in DERIVED_TRANSLATIONS for name in (d.minuend, d.subtrahend)}
    return tuple(t for t in METRIC_TRANSLATIONS if t.source not in derived and not _scaled_histogram(t))


def _scaled_histogram(translation: MetricTranslation) -> bool:
    """OTTL cannot multiply a histogram's bucket bounds (Triton's ms histogram): the service converts it."""
    return translation.scale != 1.0 and REGISTRY.metric(translation.target).instrument is Instrument.HISTOGRAM


def _bit_copy(name: str, bit: int) -> str:
    return f"{name}.bit{bit}"


def _streams(translation: MetricTranslation) -> tuple[str, ...]:
    """Every metric name that ends up as ``translation.target``: the arriving names and, for a bitmask, the copy
    made for each bit above bit 0 (bit 0 is the original metric)."""
    names = arriving_names(translation)
    copies = tuple(_bit_copy(n, bit) for n in names for bit in range(1, len(translation.bits)))
    return names + copies


def _ordered_renames(renames: Sequence[AttributeTranslation]) -> list[AttributeTranslation]:
    """Renames applied one after another act like the service's simultaneous renames when a rename into key K runs
    after every rename (or drop) out of K."""
    pending, ordered = list(renames), []
    while pending:
        ready = [r for r in pending if not any(o is not r and o.source == r.target and r.target for o in pending)]
        if not ready:
            raise ValueError(f"attribute renames form a cycle: {[(r.source, r.target) for r in pending]}")
        ordered += ready
        pending = [r for r in pending if r not in ready]
    return ordered


def _attribute_group(producer: Producer, translations: Sequence[MetricTranslation]) -> StatementGroup | None:
    mine = [t for t in translations if t.producer is producer]
    streams = {t: _streams(t) for t in mine}
    names = [n for t in mine for n in streams[t]]
    scopes = [fragment for fragment, p in PRODUCER_SCOPES if p is producer]
    scope_clause = _any([f"IsMatch(scope.name, {_q(f)})" for f in scopes]) if scopes else None
    translated = _any(_name_is(names)) if names and scopes else None  # the group's conditions say it otherwise
    statements: list[str] = []
    for rename in _ordered_renames([a for a in ATTRIBUTE_TRANSLATIONS if a.producer is producer]):
        where = None
        if rename.metrics:  # only where the (target) metric name starts with one of these
            clauses = _name_is(n for t in mine if t.target.startswith(rename.metrics) for n in streams[t])
            if scope_clause:
                prefixes = _any([f"HasPrefix(metric.name, {_q(p)})" for p in rename.metrics])
                clauses.append(f"({scope_clause} and {prefixes})")
            if not clauses:
                continue
            where = _any(clauses)
        if not rename.target:
            statements.append(f"delete_key(datapoint.attributes, {_q(rename.source)}){_where(where)}")
        elif rename.to_resource:  # a scrape is one host: keep what the resource already says
            dst = _attr("resource", rename.target)
            statements.append(
                f"set({dst}, {_attr('datapoint', rename.source)}){_where(f'{dst} == nil', translated, where)}"
            )
            statements.append(f"delete_key(datapoint.attributes, {_q(rename.source)}){_where(where)}")
        else:
            statements += _rename("datapoint", rename.source, rename.target, "Int" if rename.integer else None, where)
    for key, value in PRODUCER_ATTRIBUTES.get(producer, ()):
        statements.append(f"set({_attr('datapoint', key)}, {_q(value)}){_where(translated)}")
    # GenAI metrics: the scrape target's address and port (an int, only with the address), as the service adds them
    gen_ai = _name_is(n for t in mine if t.target.startswith(GEN_AI_PREFIX) for n in streams[t])
    if gen_ai:
        address = _attr("resource", Attributes.SERVER_ADDRESS)
        statements.append(f"set({_attr('datapoint', Attributes.SERVER_ADDRESS)}, {address}){_where(_any(gen_ai))}")
        port = f"Int({_attr('resource', Attributes.SERVER_PORT)})"
        where = _where(f"{address} != nil", _any(gen_ai))
        statements.append(f"set({_attr('datapoint', Attributes.SERVER_PORT)}, {port}){where}")
    for t in mine:
        for key, value in t.attributes:
            statements.append(f"set({_attr('datapoint', key)}, {_q(value)}){_where(_any(_name_is(streams[t])))}")
    if not statements:
        return None
    conditions = tuple(_name_is(names)) + tuple(f"IsMatch(scope.name, {_q(f)})" for f in scopes)
    return StatementGroup(f"{producer.value}: labels to our attributes", tuple(statements), conditions)


def _kind_statement(instrument: Instrument, where: str) -> str:
    if instrument is Instrument.GAUGE:
        return f"convert_sum_to_gauge(){_where(where)}"
    monotonic = "true" if instrument is Instrument.COUNTER else "false"
    return f'convert_gauge_to_sum("cumulative", {monotonic}){_where(where)}'


def normalize_groups() -> list[StatementGroup]:
    """The ``transform/normalize`` statements: dcgm-exporter, node-exporter, hostmetrics and OpenLIT series
    under our names, units and attributes."""
    translations = edge_translations()
    targets = {t.target for t in translations}
    if clash := targets & {n for t in translations for n in arriving_names(t)}:
        raise ValueError(f"a target is also a source, so renames would chain: {sorted(clash)}")
    valued = [t for t in translations if t.scale != 1.0 or t.bits]
    scaled = [t for t in translations if t.scale != 1.0]
    bitmasks = [t for t in translations if t.bits]
    groups = [
        StatementGroup(
            "values: integers as doubles (a scrape gives doubles, OTLP senders may not), then unit scale factors",
            (
                "set(datapoint.value_double, Double(datapoint.value_int)) where datapoint.value_int != 0",
                *(
                    f"set(datapoint.value_double, datapoint.value_double * {_num(t.scale)})"
                    f"{_where(_any(_name_is(arriving_names(t))))}"
                    for t in scaled
                ),
            ),
            tuple(_name_is(n for t in valued for n in arriving_names(t))),
        ),
        StatementGroup(
            "bitmasks (throttle reasons): a copy of the metric per bit above 0; the original becomes bit 0",
            tuple(
                f"copy_metric(name={_q(_bit_copy(name, bit))}){_where(f'metric.name == {_q(name)}')}"
                for t in bitmasks
                for name in arriving_names(t)
                for bit in range(1, len(t.bits))
            ),
        ),
    ]
    bit_statements = []
    for t in bitmasks:
        for name in arriving_names(t):
            for bit, reason in enumerate(t.bits):
                stream = _bit_copy(name, bit) if bit else name
                mask = "Int(datapoint.value_double)"
                low = f"{mask} / {2**bit}" if bit else mask
                where = _where(f"metric.name == {_q(stream)}")
                bit_statements += [
                    f"set({_attr('datapoint', t.bit_attribute)}, {_q(reason)}){where}",
                    f"set(datapoint.value_int, {low} - 2 * ({mask} / {2 ** (bit + 1)})){where}",
                ]
    groups.append(
        StatementGroup(
            "bitmasks: each copy keeps its bit (integer division): 1 while that reason holds",
            tuple(bit_statements),
            tuple(_name_is(n for t in bitmasks for n in _streams(t))),
        )
    )
    for producer in Producer:
        group = _attribute_group(producer, translations)
        if group is not None:
            groups.append(group)
    metric_statements = []
    for t in translations:
        spec = REGISTRY.metric(t.target)
        where = _any(_name_is(_streams(t)))
        histogram = spec.instrument is Instrument.HISTOGRAM  # the receiver already made it one
        metric_statements += [
            *([] if histogram else [_kind_statement(spec.instrument, where)]),
            f"set(metric.unit, {_q(spec.unit)}){_where(where)}",
            f"set(metric.description, {_q(spec.description)}){_where(where)}",
            f"set(metric.name, {_q(t.target)}){_where(where)}",
        ]
    groups.append(
        StatementGroup(
            "names last: kind (gauge or sum, as the registry declares), unit, description, then our name",
            tuple(metric_statements),
        )
    )
    return [g for g in groups if g.statements]


# ---------------------------------------------------------------------------- our own /metrics, scraped


_CONVERTERS = {"int": "Int", "bool": "Bool"}


def _typed(name: str) -> str | None:
    return _CONVERTERS.get(REGISTRY.attribute(name).type)


def prometheus_names_groups() -> list[StatementGroup]:
    """The ``transform/prometheus_names`` statements: the node agent's ``/metrics`` (``factorylens gpu
    --prometheus-port``) scraped by the ``prometheus`` receiver arrives under Prometheus names
    (``hw_gpu_utilization_ratio``, ``hw_id``; resource attributes from ``target_info``) and goes on under ours."""
    specs = [m for m in REGISTRY.emitted_by(GPU_RECEIVER) if m.instrument is not Instrument.HISTOGRAM]
    by_name: dict[str, str] = {}
    metric_statements = []
    for spec in specs:
        names = [spec.prometheus_name]
        if spec.prometheus_name.endswith(_TOTAL):
            names.append(spec.prometheus_name[: -len(_TOTAL)])
        for name in names:
            if by_name.setdefault(name, spec.name) != spec.name:
                raise ValueError(f"{name} is the Prometheus name of both {by_name[name]} and {spec.name}")
        where = _any(_name_is(names))
        if spec.instrument is Instrument.UPDOWNCOUNTER:  # exposed as a gauge
            metric_statements.append(_kind_statement(spec.instrument, where))
        metric_statements += [
            f"set(metric.unit, {_q(spec.unit)}){_where(where)}",
            f"set(metric.name, {_q(spec.name)}){_where(where)}",
        ]
    attributes = sorted({a for spec in specs for a in REGISTRY.allowed_attributes(spec)})
    point_statements = [
        s
        for a in attributes
        if prometheus_label(a) != a or _typed(a)
        for s in _rename("datapoint", prometheus_label(a), a, _typed(a), None)
    ]
    resource_statements = [
        s
        for a in REGISTRY.resource_attributes
        if prometheus_label(a) != a or _typed(a)
        for s in _rename("resource", prometheus_label(a), a, _typed(a), None)
    ]
    return [
        StatementGroup("resource attributes (from target_info) under our names", tuple(resource_statements)),
        StatementGroup("labels under our attribute names", tuple(point_statements)),
        StatementGroup("metric names, units and kinds from the registry", tuple(metric_statements)),
    ]


# ---------------------------------------------------------------------------- agent.yaml


def _render_groups(groups: Sequence[StatementGroup], indent: int) -> str:
    pad = " " * indent

    def item(text: str) -> str:
        return "'" + text.replace("'", "''").replace("$", "$$") + "'"

    lines: list[str] = []
    for group in groups:
        lines.append(f"{pad}# {group.comment}")
        if group.conditions:
            lines.append(f"{pad}- conditions:")
            lines += [f"{pad}    - {item(c)}" for c in group.conditions]
            lines.append(f"{pad}  statements:")
        else:
            lines.append(f"{pad}- statements:")
        lines += [f"{pad}    - {item(s)}" for s in group.statements]
    return "\n".join(lines)


_AGENT = """\
# GENERATED by `factorylens otel-config` from factorylens/collector/otel_config.py and the registry's translation
# tables (factorylens/registry/_translations.py): edit those and regenerate; a test fails when this file is stale.
#
# otelcol-contrib agent, one per GPU node (a DaemonSet): OTLP from workloads and our node agent, the node's host
# metrics, a scrape of this node's dcgm-exporter (and of our node agent's /metrics, if it does not export OTLP),
# renamed to our names here at the edge, then OTLP/gRPC to the gateway (gateway.yaml) or straight to the RCA service.
# Component names are those of otelcol-contrib 0.159 (see otel-config/README.md for older releases).
#
# Environment:
#   FACTORYLENS_UPSTREAM_ENDPOINT  host:port of the gateway's or the RCA service's OTLP/gRPC receiver (required)
#   K8S_NODE_NAME                  this node (downward API spec.nodeName): scrape and watch only its pods
#   FACTORYLENS_QUEUE_DIR          the export queue's folder, a hostPath so a restart loses nothing
#                                  (default /var/lib/otelcol/file_storage)
#   OTEL_RESOURCE_ATTRIBUTES       e.g. host.name=$(K8S_NODE_NAME),k8s.node.name=$(K8S_NODE_NAME): the env detector
#                                  runs first, so host.name is the node's, not the pod's hostname

extensions:
  health_check:
    endpoint: 0.0.0.0:13133
  # the sending queue on disk: what was accepted but not yet delivered survives a collector restart
  file_storage:
    directory: ${env:FACTORYLENS_QUEUE_DIR:-/var/lib/otelcol/file_storage}
    create_directory: true
    timeout: 1s

receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 0.0.0.0:4317
        # tls:  # serve OTLP over TLS: mount the files (e.g. from a Secret) and uncomment
        #   cert_file: /etc/otelcol/tls/tls.crt
        #   key_file: /etc/otelcol/tls/tls.key
      http:
        endpoint: 0.0.0.0:4318
  # the node's CPU, memory, disks, file systems and interfaces, read from the host's /proc and /sys mounted at /hostfs
  hostmetrics:
    root_path: /hostfs
    collection_interval: 10s
    scrapers:
      cpu: {}
      memory: {}
      disk: {}
      filesystem:
        exclude_fs_types:
          fs_types: [autofs, binfmt_misc, bpf, cgroup2, configfs, debugfs, devpts, devtmpfs, fusectl, hugetlbfs,
                     mqueue, nsfs, overlay, proc, procfs, pstore, rpc_pipefs, securityfs, selinuxfs, squashfs,
                     sysfs, tracefs]
          match_type: strict
        exclude_mount_points:
          mount_points: [^/dev/, ^/proc/, ^/sys/, ^/run/containerd/, ^/var/lib/docker/, ^/var/lib/kubelet/]
          match_type: regexp
      network: {}
  # dcgm-exporter on this node (GPU Operator: label app=nvidia-dcgm-exporter; Helm chart:
  # app.kubernetes.io/name=dcgm-exporter; either way port 9400)
  prometheus/dcgm:
    config:
      scrape_configs:
        - job_name: dcgm-exporter
          scrape_interval: 10s  # at least dcgm-exporter's --collect-interval
          honor_labels: true    # pod/namespace/container name the workload using the GPU, not the exporter
          kubernetes_sd_configs:
            - role: pod
              selectors:
                - role: pod
                  field: spec.nodeName=${env:K8S_NODE_NAME}
          relabel_configs:
            - action: keep
              source_labels: [__meta_kubernetes_pod_label_app, __meta_kubernetes_pod_label_app_kubernetes_io_name,
                              __meta_kubernetes_pod_container_port_number]
              regex: nvidia-dcgm-exporter;.*;.*|.*;dcgm-exporter;.*|.*;.*;9400
            # our node agent serves 9400 too: it has its own job below
            - action: drop
              source_labels: [__meta_kubernetes_pod_label_app_kubernetes_io_name]
              regex: factorylens-gpu-receiver
            # a pod that declares no port: scrape 9400 (the collector expands $, so $$1 is the regex group)
            - action: replace
              source_labels: [__meta_kubernetes_pod_ip, __meta_kubernetes_pod_container_port_number]
              regex: (.+);
              replacement: $$1:9400
              target_label: __address__
  # LLM serving engines on this node (vLLM, SGLang, TGI, Triton), each pod annotated with the port of its
  # /metrics: factorylens.io/serving-metrics-port: "8000" (vLLM and SGLang serve it on their API port,
  # TGI on its own, Triton on 8002); transform/normalize renames them to the OTel GenAI names
  prometheus/serving:
    config:
      scrape_configs:
        - job_name: llm-serving
          scrape_interval: 10s
          kubernetes_sd_configs:
            - role: pod
              selectors:
                - role: pod
                  field: spec.nodeName=${env:K8S_NODE_NAME}
          relabel_configs:
            - action: keep
              source_labels: [__meta_kubernetes_pod_annotation_factorylens_io_serving_metrics_port]
              regex: .+
            # one target per pod (pod discovery lists every container port): the annotated one
            - action: replace
              source_labels: [__meta_kubernetes_pod_ip,
                              __meta_kubernetes_pod_annotation_factorylens_io_serving_metrics_port]
              regex: (.+);(.+)
              replacement: $$1:$$2
              target_label: __address__
  # our node agent's /metrics (`factorylens gpu --prometheus-port 9400`), for agents that do not export OTLP
  # here: scraping an agent that also exports OTLP would deliver each series twice
  prometheus/factorylens:
    config:
      scrape_configs:
        - job_name: factorylens-gpu-receiver
          scrape_interval: 10s
          kubernetes_sd_configs:
            - role: pod
              selectors:
                - role: pod
                  field: spec.nodeName=${env:K8S_NODE_NAME}
          relabel_configs:
            - action: keep
              source_labels: [__meta_kubernetes_pod_label_app_kubernetes_io_name,
                              __meta_kubernetes_pod_container_port_name]
              regex: factorylens-gpu-receiver;metrics

processors:
  memory_limiter:
    check_interval: 1s
    limit_percentage: 80
    spike_limit_percentage: 20
  # host.name and friends where senders did not set them (override: false keeps what the SDKs said)
  resourcedetection:
    detectors: [env, system]
    override: false
    timeout: 2s
    system:
      hostname_sources: [os]
  # pod metadata for OTLP senders on this node, looked up by the connection's pod IP. Series scraped from
  # dcgm-exporter are not touched: their pod labels name the workload and become k8s.* attributes in
  # transform/normalize. Needs RBAC: get, list, watch on pods, namespaces and replicasets.
  k8sattributes:
    auth_type: serviceAccount
    filter:
      node_from_env_var: K8S_NODE_NAME
    pod_association:
      - sources:
          - from: resource_attribute
            name: k8s.pod.uid
      - sources:
          - from: resource_attribute
            name: k8s.pod.ip
      - sources:
          - from: connection
    extract:
      metadata: [k8s.namespace.name, k8s.pod.name, k8s.pod.uid, k8s.node.name, k8s.deployment.name,
                 k8s.statefulset.name, k8s.daemonset.name, k8s.job.name]
  batch:
    send_batch_size: 8192
    send_batch_max_size: 16384
    timeout: 1s
  # dcgm-exporter, node-exporter, hostmetrics and OpenLIT series under our names (generated from the registry).
  # Not here, so done by the RCA service's normalize processor: node-exporter's used = total - free (it joins two
  # series; their sources pass through untouched). dcgm-exporter fields the registry does not name pass untouched.
  transform/normalize:
    error_mode: ignore
    metric_statements:
{normalize}
  # our node agent's /metrics under our OTel names again (generated from the registry)
  transform/prometheus_names:
    error_mode: ignore
    metric_statements:
{prometheus_names}

exporters:
  # `otlp_grpc` since core v0.144; older collectors call it `otlp` (still accepted as a deprecated alias)
  otlp_grpc/upstream:
    endpoint: ${env:FACTORYLENS_UPSTREAM_ENDPOINT}
    compression: gzip  # the RCA service takes gzip or none, never snappy or zstd
    timeout: 10s
    tls:
      insecure: true  # plaintext inside the cluster; for TLS set false and uncomment what applies:
      # ca_file: /etc/otelcol/tls/ca.crt
      # cert_file: /etc/otelcol/tls/client.crt  # mutual TLS
      # key_file: /etc/otelcol/tls/client.key
    # headers:  # the RCA service's bearer token, when it requires one
    #   authorization: Bearer ${env:FACTORYLENS_RCA_TOKEN}
    retry_on_failure:
      enabled: true
      initial_interval: 1s
      max_interval: 30s
      max_elapsed_time: 1h  # an outage longer than this drops the oldest batches (0: retry forever)
    sending_queue:
      enabled: true
      storage: file_storage  # on disk: survives a restart
      num_consumers: 4
      queue_size: 5000

service:
  extensions: [health_check, file_storage]
  pipelines:
    metrics:
      receivers: [otlp, hostmetrics, prometheus/dcgm, prometheus/serving]
      processors: [memory_limiter, transform/normalize, resourcedetection, k8sattributes, batch]
      exporters: [otlp_grpc/upstream]
    metrics/factorylens_scrape:
      receivers: [prometheus/factorylens]
      processors: [memory_limiter, transform/prometheus_names, resourcedetection, batch]
      exporters: [otlp_grpc/upstream]
    traces:
      receivers: [otlp]
      processors: [memory_limiter, resourcedetection, k8sattributes, batch]
      exporters: [otlp_grpc/upstream]
    logs:
      receivers: [otlp]
      processors: [memory_limiter, resourcedetection, k8sattributes, batch]
      exporters: [otlp_grpc/upstream]
"""


def render_agent() -> str:
    """The whole of ``otel-config/agent.yaml``."""
    return _AGENT.replace("{normalize}", _render_groups(normalize_groups(), 6)).replace(
        "{prometheus_names}", _render_groups(prometheus_names_groups(), 6)
    )


def generated_files() -> dict[str, str]:
    return {"agent.yaml": render_agent()}


def stale_files(directory: Path) -> list[str]:
    """The generated files that are missing from ``directory`` or differ from what the registry gives now."""
    return [
        name
        for name, text in generated_files().items()
        if not (directory / name).is_file() or (directory / name).read_text(encoding="utf-8") != text
    ]


# ---------------------------------------------------------------------------- CLI


def add_otel_config_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "otel-config",
        help="write the otelcol-contrib agent config generated from the metric registry",
        description="Write otel-config/agent.yaml: the otelcol-contrib agent whose transform statements rename "
        "dcgm-exporter, node-exporter, hostmetrics and OpenLIT series (and our node agent's scraped /metrics) "
        "to our names, generated from the registry's translation tables.",
    )
    p.add_argument(
        "--output",
        type=Path,
        default=CHECKOUT_CONFIG_DIR if CHECKOUT_CONFIG_DIR.is_dir() else Path("otel-config"),
        metavar="DIR",
        help="where to write (default: %(default)s)",
    )
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file there is stale")
    p.set_defaults(func=_run_otel_config)


def _run_otel_config(args: argparse.Namespace) -> int:
    directory: Path = args.output
    if args.check:
        stale = stale_files(directory)
        for name in stale:
            print(f"{directory / name} is stale: run `factorylens otel-config --output {directory}`", file=sys.stderr)
        return 1 if stale else 0
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in generated_files().items():
        (directory / name).write_text(text, encoding="utf-8")
        print(directory / name)
    return 0
