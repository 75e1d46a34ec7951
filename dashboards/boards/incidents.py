"""Incidents: what the RCA service found, ranked, with each KPI against the band it broke, and links
to the job and GPU dashboards with the same variables."""

from factorylens.registry import Attributes, Metrics

from .._panels import Board, Link, Query, Row, eq, label, match, sel, stat_panel, table_panel, ts

UID = "factorylens-incidents"
_INCIDENT = label(Attributes.FACTORYLENS_INCIDENT_ID)
_RANK = label(Attributes.FACTORYLENS_CAUSE_RANK)
_ENTITY = label(Attributes.FACTORYLENS_ENTITY)
_DOMAIN = label(Attributes.FACTORYLENS_DOMAIN)
_METRIC = label(Attributes.FACTORYLENS_METRIC)
_CAUSES = sel(Metrics.FACTORYLENS_INCIDENT_CAUSE_SCORE)
_TOP_CAUSE = sel(Metrics.FACTORYLENS_INCIDENT_CAUSE_SCORE, eq(Attributes.FACTORYLENS_CAUSE_RANK, "1"))
# the KPIs whose breaks open incidents (the RCA service's defaults, rca_service/analysis/_kpis.py)
KPIS = "|".join(
    (
        Metrics.FACTORYLENS_TRAIN_STEP_DURATION,
        Metrics.FACTORYLENS_TRAIN_SAMPLES_RATE,
        Metrics.FACTORYLENS_TRAIN_TOKENS_RATE,
        Metrics.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN,
        Metrics.GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN,
    )
)
_OF_KPIS = match(Attributes.FACTORYLENS_METRIC, KPIS)
_LINKS = (
    Link("Training job", "factorylens-training"),
    Link("GPU health", "factorylens-gpu"),
    Link("Node", "factorylens-node"),
)

BOARD = Board(
    uid=UID,
    title="factorylens / Incidents",
    description="Open and recent incidents with their ranked causes, anomaly scores, and each KPI against its "
    "baseline band; links carry the variables to the job, GPU and node dashboards.",
    rows=(
        Row(
            "Open now",
            (
                stat_panel(
                    "Open incidents",
                    "Incidents the RCA service holds open now.",
                    "none",
                    Query(f"max({sel(Metrics.FACTORYLENS_INCIDENTS_OPEN)})"),
                    thresholds=((None, "green"), (1, "red")),
                    width=6,
                    height=8,
                ),
                table_panel(
                    "Open incidents and their causes",
                    "Each open incident's ranked causes (rank 1 is the likeliest): the entity, its domain, the signal "
                    "and the score in [0, 1]. Links open the job, GPU and node dashboards with these variables.",
                    "percentunit",
                    Query(
                        f"max by ({_INCIDENT}, {_RANK}, {_ENTITY}, {_DOMAIN}, {_METRIC}) ({_CAUSES})",
                        instant=True,
                        format="table",
                    ),
                    width=18,
                    links=_LINKS,
                    thresholds=((None, "green"), (0.5, "orange"), (0.8, "red")),
                ),
            ),
        ),
        Row(
            "Recent",
            (
                table_panel(
                    "Recent incidents: top cause",
                    "Every incident open at some time in the range, with its top cause and highest score.",
                    "percentunit",
                    Query(
                        f"max by ({_INCIDENT}, {_ENTITY}, {_DOMAIN}, {_METRIC}) "
                        f"(max_over_time({_TOP_CAUSE}[$__range]))",
                        instant=True,
                        format="table",
                    ),
                    links=_LINKS,
                ),
                ts(
                    "Incidents over time",
                    "Top-cause score of each incident while it is open: when each started and ended.",
                    "percentunit",
                    Query(
                        f"max by ({_INCIDENT}, {_ENTITY}) ({_TOP_CAUSE})",
                        legend="{{factorylens_incident_id}} {{factorylens_entity}}",
                    ),
                    min=0,
                ),
            ),
        ),
        Row(
            "Evidence",
            (
                ts(
                    "KPIs against their baseline bands",
                    "The band the RCA service expects of each KPI (step time, throughput, TTFT, TPOT): an incident "
                    "opens when a KPI leaves it.",
                    "short",
                    Query(
                        f"max by ({_ENTITY}, {_METRIC}) ({sel(Metrics.FACTORYLENS_BASELINE_LOWER, _OF_KPIS)})",
                        legend="{{factorylens_entity}} {{factorylens_metric}} lower",
                    ),
                    Query(
                        f"max by ({_ENTITY}, {_METRIC}) ({sel(Metrics.FACTORYLENS_BASELINE_UPPER, _OF_KPIS)})",
                        legend="{{factorylens_entity}} {{factorylens_metric}} upper",
                    ),
                    Query(
                        f"max by ({_ENTITY}, {_METRIC}) ({sel(Metrics.FACTORYLENS_ANOMALY_SCORE, _OF_KPIS)})",
                        legend="{{factorylens_entity}} {{factorylens_metric}} anomaly score",
                    ),
                ),
                ts(
                    "Top anomaly scores",
                    "The 10 most anomalous series now, by entity and signal (scores in [0, 1]).",
                    "percentunit",
                    Query(
                        f"topk(10, max by ({_ENTITY}, {_DOMAIN}, {_METRIC}) "
                        f"({sel(Metrics.FACTORYLENS_ANOMALY_SCORE)}))",
                        legend="{{factorylens_domain}} {{factorylens_entity}} {{factorylens_metric}}",
                    ),
                    min=0,
                    max=1,
                    thresholds=((None, "green"), (0.8, "red")),
                ),
                table_panel(
                    "Anomalous series by domain",
                    "How many series of each domain scored above 0.8 at some time in the range.",
                    "none",
                    Query(
                        f"count by ({_DOMAIN}) "
                        f"(max by ({_ENTITY}, {_DOMAIN}, {_METRIC}) "
                        f"(max_over_time({sel(Metrics.FACTORYLENS_ANOMALY_SCORE)}[$__range])) > 0.8)",
                        instant=True,
                        format="table",
                    ),
                ),
                ts(
                    "Predictability",
                    "Per workload: how well its signals follow their baselines.",
                    "percentunit",
                    Query(
                        f"max by ({label(Attributes.FACTORYLENS_WORKLOAD)}) "
                        f"({sel(Metrics.FACTORYLENS_BASELINE_PREDICTABILITY)})",
                        legend="{{factorylens_workload}}",
                    ),
                    min=0,
                    max=1,
                ),
            ),
        ),
    ),
)
