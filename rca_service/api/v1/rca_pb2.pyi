from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Attribute(_message.Message):
    __slots__ = ("key", "value")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: str
    def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class HealthRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class HealthResponse(_message.Message):
    __slots__ = ("status", "version", "analyzer", "uptime_seconds", "series", "points", "store_bytes", "events", "points_accepted", "points_rejected", "spans_accepted", "spans_rejected", "log_records_accepted", "log_records_rejected", "requests_refused", "wal_bytes", "wal_last_lsn", "snapshot_lsn", "queue_depth", "open_incidents")
    class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATUS_UNSPECIFIED: _ClassVar[HealthResponse.Status]
        SERVING: _ClassVar[HealthResponse.Status]
        DEGRADED: _ClassVar[HealthResponse.Status]
    STATUS_UNSPECIFIED: HealthResponse.Status
    SERVING: HealthResponse.Status
    DEGRADED: HealthResponse.Status
    STATUS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ANALYZER_FIELD_NUMBER: _ClassVar[int]
    UPTIME_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SERIES_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    STORE_BYTES_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    POINTS_ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    POINTS_REJECTED_FIELD_NUMBER: _ClassVar[int]
    SPANS_ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    SPANS_REJECTED_FIELD_NUMBER: _ClassVar[int]
    LOG_RECORDS_ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    LOG_RECORDS_REJECTED_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_REFUSED_FIELD_NUMBER: _ClassVar[int]
    WAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    WAL_LAST_LSN_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_LSN_FIELD_NUMBER: _ClassVar[int]
    QUEUE_DEPTH_FIELD_NUMBER: _ClassVar[int]
    OPEN_INCIDENTS_FIELD_NUMBER: _ClassVar[int]
    status: HealthResponse.Status
    version: str
    analyzer: str
    uptime_seconds: float
    series: int
    points: int
    store_bytes: int
    events: int
    points_accepted: int
    points_rejected: int
    spans_accepted: int
    spans_rejected: int
    log_records_accepted: int
    log_records_rejected: int
    requests_refused: int
    wal_bytes: int
    wal_last_lsn: int
    snapshot_lsn: int
    queue_depth: int
    open_incidents: int
    def __init__(self, status: _Optional[_Union[HealthResponse.Status, str]] = ..., version: _Optional[str] = ..., analyzer: _Optional[str] = ..., uptime_seconds: _Optional[float] = ..., series: _Optional[int] = ..., points: _Optional[int] = ..., store_bytes: _Optional[int] = ..., events: _Optional[int] = ..., points_accepted: _Optional[int] = ..., points_rejected: _Optional[int] = ..., spans_accepted: _Optional[int] = ..., spans_rejected: _Optional[int] = ..., log_records_accepted: _Optional[int] = ..., log_records_rejected: _Optional[int] = ..., requests_refused: _Optional[int] = ..., wal_bytes: _Optional[int] = ..., wal_last_lsn: _Optional[int] = ..., snapshot_lsn: _Optional[int] = ..., queue_depth: _Optional[int] = ..., open_incidents: _Optional[int] = ...) -> None: ...

class SeriesInfo(_message.Message):
    __slots__ = ("id", "metric", "kind", "unit", "domain", "entity", "resource", "attributes", "points", "first_time_unix_nano", "last_time_unix_nano", "default_view", "description")
    ID_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    ENTITY_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    FIRST_TIME_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    LAST_TIME_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_VIEW_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    id: str
    metric: str
    kind: str
    unit: str
    domain: str
    entity: str
    resource: _containers.RepeatedCompositeFieldContainer[Attribute]
    attributes: _containers.RepeatedCompositeFieldContainer[Attribute]
    points: int
    first_time_unix_nano: int
    last_time_unix_nano: int
    default_view: str
    description: str
    def __init__(self, id: _Optional[str] = ..., metric: _Optional[str] = ..., kind: _Optional[str] = ..., unit: _Optional[str] = ..., domain: _Optional[str] = ..., entity: _Optional[str] = ..., resource: _Optional[_Iterable[_Union[Attribute, _Mapping]]] = ..., attributes: _Optional[_Iterable[_Union[Attribute, _Mapping]]] = ..., points: _Optional[int] = ..., first_time_unix_nano: _Optional[int] = ..., last_time_unix_nano: _Optional[int] = ..., default_view: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class ListSeriesRequest(_message.Message):
    __slots__ = ("metric", "match", "domain", "entity", "limit", "page_size", "page_token")
    METRIC_FIELD_NUMBER: _ClassVar[int]
    MATCH_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    ENTITY_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    metric: str
    match: _containers.RepeatedCompositeFieldContainer[Attribute]
    domain: str
    entity: str
    limit: int
    page_size: int
    page_token: str
    def __init__(self, metric: _Optional[str] = ..., match: _Optional[_Iterable[_Union[Attribute, _Mapping]]] = ..., domain: _Optional[str] = ..., entity: _Optional[str] = ..., limit: _Optional[int] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListSeriesResponse(_message.Message):
    __slots__ = ("series", "truncated", "next_page_token")
    SERIES_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    series: _containers.RepeatedCompositeFieldContainer[SeriesInfo]
    truncated: bool
    next_page_token: str
    def __init__(self, series: _Optional[_Iterable[_Union[SeriesInfo, _Mapping]]] = ..., truncated: _Optional[bool] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class QuerySeriesRequest(_message.Message):
    __slots__ = ("series_ids", "start_time_unix_nano", "end_time_unix_nano", "view")
    SERIES_IDS_FIELD_NUMBER: _ClassVar[int]
    START_TIME_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    END_TIME_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    VIEW_FIELD_NUMBER: _ClassVar[int]
    series_ids: _containers.RepeatedScalarFieldContainer[str]
    start_time_unix_nano: int
    end_time_unix_nano: int
    view: str
    def __init__(self, series_ids: _Optional[_Iterable[str]] = ..., start_time_unix_nano: _Optional[int] = ..., end_time_unix_nano: _Optional[int] = ..., view: _Optional[str] = ...) -> None: ...

class SeriesData(_message.Message):
    __slots__ = ("info", "view", "time_unix_nano", "values")
    INFO_FIELD_NUMBER: _ClassVar[int]
    VIEW_FIELD_NUMBER: _ClassVar[int]
    TIME_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    info: SeriesInfo
    view: str
    time_unix_nano: _containers.RepeatedScalarFieldContainer[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, info: _Optional[_Union[SeriesInfo, _Mapping]] = ..., view: _Optional[str] = ..., time_unix_nano: _Optional[_Iterable[int]] = ..., values: _Optional[_Iterable[float]] = ...) -> None: ...

class QuerySeriesResponse(_message.Message):
    __slots__ = ("series",)
    SERIES_FIELD_NUMBER: _ClassVar[int]
    series: _containers.RepeatedCompositeFieldContainer[SeriesData]
    def __init__(self, series: _Optional[_Iterable[_Union[SeriesData, _Mapping]]] = ...) -> None: ...

class ListIncidentsRequest(_message.Message):
    __slots__ = ("open_only", "limit", "page_size", "page_token")
    OPEN_ONLY_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    open_only: bool
    limit: int
    page_size: int
    page_token: str
    def __init__(self, open_only: _Optional[bool] = ..., limit: _Optional[int] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListIncidentsResponse(_message.Message):
    __slots__ = ("incidents", "next_page_token")
    INCIDENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    incidents: _containers.RepeatedCompositeFieldContainer[Incident]
    next_page_token: str
    def __init__(self, incidents: _Optional[_Iterable[_Union[Incident, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetIncidentRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class Evidence(_message.Message):
    __slots__ = ("series_id", "description", "time_unix_nano", "observed", "expected", "lower", "upper", "trace_ids")
    SERIES_ID_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    TIME_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_FIELD_NUMBER: _ClassVar[int]
    LOWER_FIELD_NUMBER: _ClassVar[int]
    UPPER_FIELD_NUMBER: _ClassVar[int]
    TRACE_IDS_FIELD_NUMBER: _ClassVar[int]
    series_id: str
    description: str
    time_unix_nano: int
    observed: float
    expected: float
    lower: float
    upper: float
    trace_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, series_id: _Optional[str] = ..., description: _Optional[str] = ..., time_unix_nano: _Optional[int] = ..., observed: _Optional[float] = ..., expected: _Optional[float] = ..., lower: _Optional[float] = ..., upper: _Optional[float] = ..., trace_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class Cause(_message.Message):
    __slots__ = ("rank", "entity", "domain", "signal", "series_id", "onset_time_unix_nano", "score", "explanation", "evidence")
    RANK_FIELD_NUMBER: _ClassVar[int]
    ENTITY_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    SERIES_ID_FIELD_NUMBER: _ClassVar[int]
    ONSET_TIME_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    EXPLANATION_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    rank: int
    entity: str
    domain: str
    signal: str
    series_id: str
    onset_time_unix_nano: int
    score: float
    explanation: str
    evidence: _containers.RepeatedCompositeFieldContainer[Evidence]
    def __init__(self, rank: _Optional[int] = ..., entity: _Optional[str] = ..., domain: _Optional[str] = ..., signal: _Optional[str] = ..., series_id: _Optional[str] = ..., onset_time_unix_nano: _Optional[int] = ..., score: _Optional[float] = ..., explanation: _Optional[str] = ..., evidence: _Optional[_Iterable[_Union[Evidence, _Mapping]]] = ...) -> None: ...

class Incident(_message.Message):
    __slots__ = ("id", "state", "title", "opened_time_unix_nano", "onset_time_unix_nano", "updated_time_unix_nano", "resolved_time_unix_nano", "kpi_series_id", "score", "summary", "causes", "kind", "severity")
    ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    OPENED_TIME_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    ONSET_TIME_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    UPDATED_TIME_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_TIME_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    KPI_SERIES_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    CAUSES_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    id: str
    state: str
    title: str
    opened_time_unix_nano: int
    onset_time_unix_nano: int
    updated_time_unix_nano: int
    resolved_time_unix_nano: int
    kpi_series_id: str
    score: float
    summary: str
    causes: _containers.RepeatedCompositeFieldContainer[Cause]
    kind: str
    severity: str
    def __init__(self, id: _Optional[str] = ..., state: _Optional[str] = ..., title: _Optional[str] = ..., opened_time_unix_nano: _Optional[int] = ..., onset_time_unix_nano: _Optional[int] = ..., updated_time_unix_nano: _Optional[int] = ..., resolved_time_unix_nano: _Optional[int] = ..., kpi_series_id: _Optional[str] = ..., score: _Optional[float] = ..., summary: _Optional[str] = ..., causes: _Optional[_Iterable[_Union[Cause, _Mapping]]] = ..., kind: _Optional[str] = ..., severity: _Optional[str] = ...) -> None: ...

class GetBaselineRequest(_message.Message):
    __slots__ = ("series_id", "start_time_unix_nano", "end_time_unix_nano", "view")
    SERIES_ID_FIELD_NUMBER: _ClassVar[int]
    START_TIME_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    END_TIME_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    VIEW_FIELD_NUMBER: _ClassVar[int]
    series_id: str
    start_time_unix_nano: int
    end_time_unix_nano: int
    view: str
    def __init__(self, series_id: _Optional[str] = ..., start_time_unix_nano: _Optional[int] = ..., end_time_unix_nano: _Optional[int] = ..., view: _Optional[str] = ...) -> None: ...

class Baseline(_message.Message):
    __slots__ = ("info", "method", "view", "time_unix_nano", "observed", "expected", "lower", "upper", "score", "predictability", "season_periods_s")
    INFO_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    VIEW_FIELD_NUMBER: _ClassVar[int]
    TIME_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_FIELD_NUMBER: _ClassVar[int]
    LOWER_FIELD_NUMBER: _ClassVar[int]
    UPPER_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    PREDICTABILITY_FIELD_NUMBER: _ClassVar[int]
    SEASON_PERIODS_S_FIELD_NUMBER: _ClassVar[int]
    info: SeriesInfo
    method: str
    view: str
    time_unix_nano: _containers.RepeatedScalarFieldContainer[int]
    observed: _containers.RepeatedScalarFieldContainer[float]
    expected: _containers.RepeatedScalarFieldContainer[float]
    lower: _containers.RepeatedScalarFieldContainer[float]
    upper: _containers.RepeatedScalarFieldContainer[float]
    score: _containers.RepeatedScalarFieldContainer[float]
    predictability: float
    season_periods_s: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, info: _Optional[_Union[SeriesInfo, _Mapping]] = ..., method: _Optional[str] = ..., view: _Optional[str] = ..., time_unix_nano: _Optional[_Iterable[int]] = ..., observed: _Optional[_Iterable[float]] = ..., expected: _Optional[_Iterable[float]] = ..., lower: _Optional[_Iterable[float]] = ..., upper: _Optional[_Iterable[float]] = ..., score: _Optional[_Iterable[float]] = ..., predictability: _Optional[float] = ..., season_periods_s: _Optional[_Iterable[float]] = ...) -> None: ...

class GetCostReportRequest(_message.Message):
    __slots__ = ("start_time_unix_nano", "end_time_unix_nano", "group_by")
    START_TIME_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    END_TIME_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    start_time_unix_nano: int
    end_time_unix_nano: int
    group_by: str
    def __init__(self, start_time_unix_nano: _Optional[int] = ..., end_time_unix_nano: _Optional[int] = ..., group_by: _Optional[str] = ...) -> None: ...

class CostFigures(_message.Message):
    __slots__ = ("group", "allocated_gpu_hours", "active_gpu_hours", "active_sm_gpu_hours", "idle_gpu_hours", "unallocated_gpu_hours", "unpriced_gpu_hours", "useful_gpu_hours", "energy_kwh", "unallocated_energy_kwh", "gpu_time_cost", "energy_cost", "idle_cost", "unallocated_cost", "useful_cost", "total_cost", "samples", "tokens", "cost_per_1k_samples", "cost_per_1m_tokens", "efficiency", "idle_ratio", "measured_gpu_hours", "team", "sample_jobs_cost", "token_jobs_cost", "useful_basis_gpu_hours")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    ALLOCATED_GPU_HOURS_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_GPU_HOURS_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_SM_GPU_HOURS_FIELD_NUMBER: _ClassVar[int]
    IDLE_GPU_HOURS_FIELD_NUMBER: _ClassVar[int]
    UNALLOCATED_GPU_HOURS_FIELD_NUMBER: _ClassVar[int]
    UNPRICED_GPU_HOURS_FIELD_NUMBER: _ClassVar[int]
    USEFUL_GPU_HOURS_FIELD_NUMBER: _ClassVar[int]
    ENERGY_KWH_FIELD_NUMBER: _ClassVar[int]
    UNALLOCATED_ENERGY_KWH_FIELD_NUMBER: _ClassVar[int]
    GPU_TIME_COST_FIELD_NUMBER: _ClassVar[int]
    ENERGY_COST_FIELD_NUMBER: _ClassVar[int]
    IDLE_COST_FIELD_NUMBER: _ClassVar[int]
    UNALLOCATED_COST_FIELD_NUMBER: _ClassVar[int]
    USEFUL_COST_FIELD_NUMBER: _ClassVar[int]
    TOTAL_COST_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    COST_PER_1K_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    COST_PER_1M_TOKENS_FIELD_NUMBER: _ClassVar[int]
    EFFICIENCY_FIELD_NUMBER: _ClassVar[int]
    IDLE_RATIO_FIELD_NUMBER: _ClassVar[int]
    MEASURED_GPU_HOURS_FIELD_NUMBER: _ClassVar[int]
    TEAM_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_JOBS_COST_FIELD_NUMBER: _ClassVar[int]
    TOKEN_JOBS_COST_FIELD_NUMBER: _ClassVar[int]
    USEFUL_BASIS_GPU_HOURS_FIELD_NUMBER: _ClassVar[int]
    group: str
    allocated_gpu_hours: float
    active_gpu_hours: float
    active_sm_gpu_hours: float
    idle_gpu_hours: float
    unallocated_gpu_hours: float
    unpriced_gpu_hours: float
    useful_gpu_hours: float
    energy_kwh: float
    unallocated_energy_kwh: float
    gpu_time_cost: float
    energy_cost: float
    idle_cost: float
    unallocated_cost: float
    useful_cost: float
    total_cost: float
    samples: float
    tokens: float
    cost_per_1k_samples: float
    cost_per_1m_tokens: float
    efficiency: float
    idle_ratio: float
    measured_gpu_hours: float
    team: str
    sample_jobs_cost: float
    token_jobs_cost: float
    useful_basis_gpu_hours: float
    def __init__(self, group: _Optional[str] = ..., allocated_gpu_hours: _Optional[float] = ..., active_gpu_hours: _Optional[float] = ..., active_sm_gpu_hours: _Optional[float] = ..., idle_gpu_hours: _Optional[float] = ..., unallocated_gpu_hours: _Optional[float] = ..., unpriced_gpu_hours: _Optional[float] = ..., useful_gpu_hours: _Optional[float] = ..., energy_kwh: _Optional[float] = ..., unallocated_energy_kwh: _Optional[float] = ..., gpu_time_cost: _Optional[float] = ..., energy_cost: _Optional[float] = ..., idle_cost: _Optional[float] = ..., unallocated_cost: _Optional[float] = ..., useful_cost: _Optional[float] = ..., total_cost: _Optional[float] = ..., samples: _Optional[float] = ..., tokens: _Optional[float] = ..., cost_per_1k_samples: _Optional[float] = ..., cost_per_1m_tokens: _Optional[float] = ..., efficiency: _Optional[float] = ..., idle_ratio: _Optional[float] = ..., measured_gpu_hours: _Optional[float] = ..., team: _Optional[str] = ..., sample_jobs_cost: _Optional[float] = ..., token_jobs_cost: _Optional[float] = ..., useful_basis_gpu_hours: _Optional[float] = ...) -> None: ...

class CostReport(_message.Message):
    __slots__ = ("start_time_unix_nano", "end_time_unix_nano", "group_by", "currency", "example_prices", "catalog", "groups", "unpriced_models", "predictability")
    class PredictabilityEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    START_TIME_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    END_TIME_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    EXAMPLE_PRICES_FIELD_NUMBER: _ClassVar[int]
    CATALOG_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    UNPRICED_MODELS_FIELD_NUMBER: _ClassVar[int]
    PREDICTABILITY_FIELD_NUMBER: _ClassVar[int]
    start_time_unix_nano: int
    end_time_unix_nano: int
    group_by: str
    currency: str
    example_prices: bool
    catalog: str
    groups: _containers.RepeatedCompositeFieldContainer[CostFigures]
    unpriced_models: _containers.RepeatedScalarFieldContainer[str]
    predictability: _containers.ScalarMap[str, float]
    def __init__(self, start_time_unix_nano: _Optional[int] = ..., end_time_unix_nano: _Optional[int] = ..., group_by: _Optional[str] = ..., currency: _Optional[str] = ..., example_prices: _Optional[bool] = ..., catalog: _Optional[str] = ..., groups: _Optional[_Iterable[_Union[CostFigures, _Mapping]]] = ..., unpriced_models: _Optional[_Iterable[str]] = ..., predictability: _Optional[_Mapping[str, float]] = ...) -> None: ...
