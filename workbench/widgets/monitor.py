"""`Monitor`: how processing went and whether the stores agree, on one page.

>>> from workbench.widgets.monitor import Monitor
>>> Monitor(wb)                                         # doctest: +SKIP

Sections, each a plain HTML table with a stable ``data-testid`` so browser
tests read the numbers the user reads:

* ``[data-testid=runs]`` the processing runs (ingest, embed) with photos/s and
  faces/s; rows ``tr[data-testid=run-row]`` carry ``data-run``, ``data-photos``,
  ``data-faces`` and ``data-photos-per-second``; beside it a plotly chart of
  both speeds over time (``.wb-speed-chart``);
* ``[data-testid=status-counts]`` photos per source and status
  (``data-total``; cells ``td[data-status]``);
* ``[data-testid=errors]`` the newest photos in error with their reasons
  (``data-count``);
* ``[data-testid=agreement]`` per pack, catalog faces vs index vectors
  (``data-agree`` true/false on the table and each row; the words *agree* /
  *differ*);
* ``[data-testid=metrics]`` this process's Prometheus metrics from
  ``prometheus_client``'s registry: the workbench's own (``workbench_*``,
  ``data-package-metrics="true"``): counters and gauges with their value,
  histograms (stage and search latency) as one row per series with the count
  and mean / p50 / p95 (``data-p50``, ``data-p95`` in seconds). A registry
  without them (a test's own) shows every sample and says so.

The numbers come from `workbench.analysis.reports` (shared with the report notebook)
and `Workbench.stats`; this module only renders them. Each section fails on
its own, in words: a Milvus server that is down leaves the run history usable.
"""

from __future__ import annotations

import datetime as dt
import html
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import ipywidgets as widgets
import pandas as pd
from loguru import logger

from workbench.analysis import reports
from workbench.errors import WorkbenchError
from workbench.widgets.common import Banner, ReadyMarker, app_module

if TYPE_CHECKING:
    from workbench.core import Workbench

MAX_RUNS: Final = 50
"""Newest processing runs shown (and charted)."""
MAX_ERRORS: Final = 20
"""Newest photos in error shown."""
PACKAGE_METRIC_PREFIX: Final = "workbench_"
"""Prometheus metrics whose name starts so are the package's own (others are the process's)."""

_TABLE_STYLE = "font-size:12px;border-collapse:collapse;margin:4px 0"
_CELL = "padding:2px 8px;border-bottom:1px solid #eee;text-align:left"


# ---- data ----------------------------------------------------------------------------
def speed_table(wb: Workbench, limit: int = MAX_RUNS) -> pd.DataFrame:
    """`reports.runs` with ``faces_per_second`` added (NaN while a run has no duration)."""
    table = reports.runs(wb.catalog, limit)
    seconds = table["seconds"].where(table["seconds"] > 0)
    table["faces_per_second"] = table["faces"] / seconds
    return table


def speed_figure(table: pd.DataFrame) -> Any:
    """Photos/s and faces/s per run over time (x: when the run started), a plotly figure.

    Lines with markers rather than bars: runs are irregular in time, and
    two series on one time axis compare at a glance.
    """
    import plotly.graph_objects as go

    done = table.dropna(subset=["photos_per_second"])
    when = [_iso(t) for t in done["started_at"]]
    text = [f"run {r} ({k})" for r, k in zip(done["run"], done["kind"], strict=True)]
    fig = go.Figure()
    for column, name in (("photos_per_second", "photos / s"), ("faces_per_second", "faces / s")):
        fig.add_trace(
            go.Scatter(
                x=when,
                y=done[column].tolist(),
                mode="lines+markers",
                name=name,
                text=text,
                hovertemplate="%{text}<br>%{x}<br>%{y:.2f} " + name + "<extra></extra>",
            )
        )
    if len(set(when)) == 1:
        # One run (or runs started together): plotly would zoom the time axis to
        # microseconds; show the hour around it instead.
        at = pd.Timestamp(when[0])
        fig.update_xaxes(range=[at - pd.Timedelta(minutes=30), at + pd.Timedelta(minutes=30)])
    fig.update_layout(
        title="Processing speed per run",
        height=320,
        margin={"l": 40, "r": 10, "t": 40, "b": 40},
        yaxis_title="per second",
        legend={"orientation": "h", "y": -0.2},
    )
    return fig


@dataclass(frozen=True)
class MetricSample:
    """One series of a Prometheus metric.

    Counters and gauges: ``value`` is the sample's value. Histograms: one
    sample per label set, ``value`` the observation count and ``mean``,
    ``p50``, ``p95`` in the metric's unit (NaN before the first observation);
    quantiles are interpolated within buckets as PromQL's
    ``histogram_quantile`` does.
    """

    name: str
    kind: str
    labels: str
    value: float
    help: str
    mean: float = math.nan
    p50: float = math.nan
    p95: float = math.nan


def prometheus_samples(registry: Any = None) -> tuple[list[MetricSample], bool]:
    """Series of ``registry`` (default ``prometheus_client.REGISTRY``) and whether any of
    them is the package's own (name starting with `PACKAGE_METRIC_PREFIX`).

    When the package has metrics only those are returned; otherwise every
    series (the process's default collectors), so the page shows what a
    scrape of this process would see rather than nothing. ``*_created``
    timestamps are left out; histograms are summarised (see `MetricSample`).
    """
    try:
        import prometheus_client
    except ImportError as e:
        raise WorkbenchError(
            "prometheus-client is not installed: pip install 'face-workbench[server]'"
        ) from e
    registry = registry if registry is not None else prometheus_client.REGISTRY
    samples: list[MetricSample] = []
    for family in registry.collect():
        if family.type == "histogram":
            samples.extend(_histogram_samples(family))
            continue
        samples.extend(
            MetricSample(
                s.name, family.type, _labels(s.labels), float(s.value), family.documentation
            )
            for s in family.samples
            if not s.name.endswith("_created")
        )
    own = [s for s in samples if s.name.startswith(PACKAGE_METRIC_PREFIX)]
    return (own, True) if own else (samples, False)


def _labels(labels: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _histogram_samples(family: Any) -> list[MetricSample]:
    series: dict[str, dict[str, Any]] = {}
    for s in family.samples:
        labels = {k: v for k, v in s.labels.items() if k != "le"}
        one = series.setdefault(_labels(labels), {"buckets": [], "count": 0.0, "sum": 0.0})
        if s.name.endswith("_bucket"):
            one["buckets"].append((float(s.labels["le"]), float(s.value)))
        elif s.name.endswith("_count"):
            one["count"] = float(s.value)
        elif s.name.endswith("_sum"):
            one["sum"] = float(s.value)
    out = []
    for labels, one in series.items():
        count, buckets = one["count"], sorted(one["buckets"])
        out.append(
            MetricSample(
                family.name,
                "histogram",
                labels,
                count,
                family.documentation,
                one["sum"] / count if count else math.nan,
                histogram_quantile(0.5, buckets),
                histogram_quantile(0.95, buckets),
            )
        )
    return out


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """The ``q`` quantile of cumulative ``(upper bound, count)`` buckets, as PromQL computes it.

    Linear within the bucket that holds it; the lowest bucket starts at 0; a
    quantile in the ``+Inf`` bucket is the highest finite bound. NaN when empty.
    """
    if not buckets or buckets[-1][1] <= 0:
        return math.nan
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (
                count - lower_count
            )
        lower_bound, lower_count = bound, count
    return lower_bound


# ---- renderers (pure: tests read them without a browser) -------------------------------
def runs_html(table: pd.DataFrame) -> str:
    """The runs table, newest first."""
    if table.empty:
        return '<p data-testid="runs" data-count="0">No processing runs yet.</p>'
    head = (
        "Run", "Kind", "Pack", "Status", "Started", "Seconds",
        "Photos", "Faces", "Errors", "Photos/s", "Faces/s",
    )  # fmt: skip
    rows = []
    for r in table.iloc[::-1].itertuples(index=False):
        rows.append(
            f'<tr data-testid="run-row" data-run="{r.run}" data-kind="{_e(r.kind)}" '
            f'data-photos="{r.photos}" data-faces="{r.faces}" '
            f'data-photos-per-second="{_num(r.photos_per_second, 4)}">'
            + _cells(
                r.run,
                r.kind,
                r.pack,
                r.status,
                _iso(r.started_at, minutes=True),
                _num(r.seconds, 1),
                r.photos,
                r.faces,
                r.errors,
                _num(r.photos_per_second, 2),
                _num(r.faces_per_second, 2),
            )
            + "</tr>"
        )
    return _table("runs", head, rows, f'data-count="{len(table)}"')


def status_counts_html(counts: pd.DataFrame) -> str:
    """Photos per source (rows) and status (columns), with totals."""
    if counts.empty:
        return '<p data-testid="status-counts" data-total="0">No photos yet.</p>'
    pivot = counts.pivot_table(
        index="source", columns="status", values="photos", aggfunc="sum", fill_value=0
    )
    statuses = list(pivot.columns)
    rows = []
    for source, row in pivot.iterrows():
        cells = "".join(
            f'<td style="{_CELL}" data-status="{_e(st)}">{int(row[st])}</td>' for st in statuses
        )
        rows.append(
            f'<tr data-testid="source-row" data-source="{_e(source)}">'
            f'<td style="{_CELL}">{_e(source)}</td>{cells}'
            f'<td style="{_CELL}" data-status="total"><b>{int(row.sum())}</b></td></tr>'
        )
    totals = "".join(
        f'<td style="{_CELL}" data-status="{_e(st)}"><b>{int(pivot[st].sum())}</b></td>'
        for st in statuses
    )
    total = int(pivot.to_numpy().sum())
    rows.append(
        f'<tr data-testid="total-row"><td style="{_CELL}"><b>all sources</b></td>{totals}'
        f'<td style="{_CELL}" data-status="total"><b>{total}</b></td></tr>'
    )
    return _table("status-counts", ("Source", *statuses, "Total"), rows, f'data-total="{total}"')


def errors_html(errors: pd.DataFrame) -> str:
    """The newest photos in error: where, why, when."""
    if errors.empty:
        return '<p data-testid="errors" data-count="0">No photos in error.</p>'
    rows = [
        '<tr data-testid="error-row">'
        + _cells(r.photo, r.source, r.error or "(no reason recorded)", _iso(r.updated_at, True))
        + "</tr>"
        for r in errors.itertuples(index=False)
    ]
    return _table(
        "errors", ("Photo", "Source", "Reason", "When"), rows, f'data-count="{len(errors)}"'
    )


def agreement_html(packs: Iterable[Any]) -> str:
    """Per pack, catalog faces vs index vectors, in words (agree / differ) and numbers."""
    packs = list(packs)
    if not packs:
        return '<p data-testid="agreement" data-agree="true">No model pack has faces yet.</p>'
    rows = []
    for p in packs:
        word = "agree" if p.agree else "differ"
        colour = "#2e7d32" if p.agree else "#c62828"
        rows.append(
            f'<tr data-testid="agreement-row" data-pack="{_e(p.pack)}" '
            f'data-agree="{str(p.agree).lower()}" data-catalog-faces="{p.catalog_faces}" '
            f'data-index-vectors="{p.index_vectors}">'
            + _cells(p.pack, p.collection, p.catalog_faces, p.index_vectors)
            + f'<td style="{_CELL};color:{colour}"><b>{word}</b></td></tr>'
        )
    agree = all(p.agree for p in packs)
    return _table(
        "agreement",
        ("Pack", "Collection", "Catalog faces", "Index vectors", "Catalog and index"),
        rows,
        f'data-agree="{str(agree).lower()}"',
    )


def metrics_html(samples: list[MetricSample], own: bool) -> str:
    """Prometheus series as a table; histograms with count, mean, p50 and p95."""
    note = (
        "This process's workbench metrics (an ingest run here counts; one run by the CLI "
        "or a worker shows on that process's endpoint and in `workbench serve-metrics`)."
        if own
        else "No workbench metrics in this registry; shown are its default collectors "
        "(what a scrape of it would see)."
    )
    rows = []
    for s in samples:
        if s.kind == "histogram":
            attrs = f' data-p50="{_num(s.p50, 6)}" data-p95="{_num(s.p95, 6)}"'
            summary = (
                f"mean {_duration(s.mean)}, p50 {_duration(s.p50)}, p95 {_duration(s.p95)}"
                if s.value
                else "no observations yet"
            )
            value = str(int(s.value))
        else:
            attrs, summary, value = "", "", _num(s.value, 4)
        rows.append(
            f'<tr data-testid="metric-row" data-metric="{_e(s.name)}"{attrs}>'
            + _cells(s.name, s.kind, s.labels, value, summary)
            + "</tr>"
        )
    table = _table(
        "metrics-table",
        ("Metric", "Type", "Labels", "Value (histograms: count)", "Latency"),
        rows,
        f'data-count="{len(rows)}"',
    )
    return (
        f'<div data-testid="metrics" data-package-metrics="{str(own).lower()}" '
        f'data-count="{len(rows)}"><p data-testid="metrics-note">{_e(note)}</p>{table}</div>'
    )


def _duration(seconds: float) -> str:
    if math.isnan(seconds):
        return "—"
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


# ---- the app -----------------------------------------------------------------------------
class Monitor(widgets.VBox):  # type: ignore[misc]
    """The monitor app: runs and speed, counts, errors, agreement, metrics; a Refresh button.

    ``ready_name`` is what the page's ``data-wb-ready`` marker says once the
    first refresh is drawn. Every section is filled by `refresh`, each on its
    own: one failing shows its error in words there and in the banner.
    """

    def __init__(self, wb: Workbench, ready_name: str = "monitor", **kwargs: Any) -> None:
        self.wb = wb
        self.banner = Banner()
        self.refresh_button = widgets.Button(description="Refresh", icon="refresh")
        self.refresh_button.add_class("wb-refresh")
        self.updated = widgets.HTML()
        self.runs = widgets.HTML()
        self.chart_box = widgets.Box(layout={"width": "100%"})
        self.chart_box.add_class("wb-speed-chart")
        self.counts = widgets.HTML()
        self.errors = widgets.HTML()
        self.agreement = widgets.HTML()
        self.metrics = widgets.HTML()
        self.marker = ReadyMarker()
        self._figure: Any = None
        self.refresh_button.on_click(lambda _b: self.refresh())

        def section(title: str, *body: widgets.Widget) -> widgets.VBox:
            return widgets.VBox(
                [widgets.HTML(f"<h3 style='margin:10px 0 2px'>{title}</h3>"), *body]
            )

        super().__init__(
            [
                self.banner,
                widgets.HBox([self.refresh_button, self.updated], layout={"align_items": "center"}),
                section("Processing runs", self.chart_box, self.runs),
                widgets.HBox(
                    [
                        section("Photos per source and status", self.counts),
                        section("Catalog and index", self.agreement),
                    ],
                    layout={"justify_content": "space-between", "flex_flow": "row wrap"},
                ),
                section(f"Latest errors (newest {MAX_ERRORS})", self.errors),
                section("Prometheus metrics", self.metrics),
                self.marker,
            ],
            **kwargs,
        )
        self.add_class("wb-monitor")
        self.refresh()
        self.marker.app = ready_name

    def refresh(self) -> None:
        """Read everything again (the catalog, the index counts, the registry)."""
        self.banner.clear()
        failed: list[str] = []
        self._fill("processing runs", self.runs, self._runs, failed)
        self._fill(
            "photo counts",
            self.counts,
            lambda: status_counts_html(reports.counts_by_source_status(self.wb.catalog)),
            failed,
        )
        self._fill(
            "errors",
            self.errors,
            lambda: errors_html(reports.recent_errors(self.wb.catalog, MAX_ERRORS)),
            failed,
        )  # fmt: skip
        self._fill(
            "catalog and index agreement",
            self.agreement,
            lambda: agreement_html(self.wb.stats().packs),
            failed,
        )
        self._fill("metrics", self.metrics, lambda: metrics_html(*prometheus_samples()), failed)
        if failed:
            self.banner.show(f"Could not read: {', '.join(failed)} (details in each section).",
                             "error")  # fmt: skip
        now = dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S")
        self.updated.value = f'<span data-testid="updated">Updated {now}</span>'

    def _runs(self) -> str:
        table = speed_table(self.wb)
        self._draw_chart(table)
        return runs_html(table)

    def _draw_chart(self, table: pd.DataFrame) -> None:
        fig = speed_figure(table)
        try:
            import plotly.graph_objects as go

            if self._figure is None:
                self._figure = go.FigureWidget(fig)
                self.chart_box.children = [self._figure]
            else:
                with self._figure.batch_update():
                    for trace, new in zip(self._figure.data, fig.data, strict=True):
                        trace.x, trace.y, trace.text = new.x, new.y, new.text
        except Exception as e:  # noqa: BLE001 - the table below still has every number
            logger.opt(exception=e).warning("speed chart not drawn")
            self.chart_box.children = [
                widgets.HTML(f"<i>Speed chart not available here: {_e(str(e))}</i>")
            ]

    @staticmethod
    def _fill(
        what: str, target: widgets.HTML, render: Callable[[], str], failed: list[str]
    ) -> None:
        try:
            target.value = render()
        except Exception as e:  # noqa: BLE001 - in words in its section, the others go on
            logger.opt(exception=e).warning("monitor: {} failed", what)
            text = str(e) if isinstance(e, WorkbenchError) else f"{type(e).__name__}: {e}"
            target.value = (
                f'<p data-testid="section-error" style="color:#c62828">'
                f"Could not read the {_e(what)}: {_e(text)}</p>"
            )
            failed.append(what)


# ---- helpers --------------------------------------------------------------------------
def _e(value: Any) -> str:
    return html.escape(str(value))


def _num(value: Any, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{float(value):.{digits}f}" if isinstance(value, float) else str(value)


def _iso(value: Any, minutes: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT:
        return "—"
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M") if minutes else value.isoformat()
    return str(value)


def _cells(*values: Any) -> str:
    return "".join(f'<td style="{_CELL}">{_e(v)}</td>' for v in values)


def _table(testid: str, head: Iterable[str], rows: list[str], attrs: str = "") -> str:
    th = "".join(f'<th style="{_CELL}">{_e(h)}</th>' for h in head)
    return (
        f'<table data-testid="{testid}" {attrs} style="{_TABLE_STYLE}">'
        f"<thead><tr>{th}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


app_module(__name__, Monitor)  # `workbench.widgets.monitor(wb)` is `Monitor(wb)`

__all__ = [
    "MetricSample",
    "Monitor",
    "agreement_html",
    "errors_html",
    "histogram_quantile",
    "metrics_html",
    "prometheus_samples",
    "runs_html",
    "speed_figure",
    "speed_table",
]
