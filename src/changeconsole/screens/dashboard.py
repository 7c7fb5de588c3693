"""The dashboard: the history of changes and deliveries in plots (textual-plotext), from the report.

Four plots of ``services.reports`` over the chosen period (1-4: 4, 13, 26 or 52 weeks; 0: all):
changes per week by state, the weekly median lead times (submit → approve, approve → window start),
deliveries per customer by outcome (the customers with the most deliveries), and the customers with
the most failed deliveries (failed, partial or dead-lettered). The line above them gives the totals
and outcome rates. ``changeconsole report``
prints the same numbers.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any, ClassVar

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Vertical
from textual.widgets import Static
from textual_plotext import PlotextPlot

from ..errors import describe
from ..models import ChangeStatus, iso_utc
from ..services.reports import Report
from .base import ConsoleScreen

PERIODS: dict[str, int | None] = {"1": 4, "2": 13, "3": 26, "4": 52, "0": None}  # weeks; None: all
STATUS_COLOURS = {
    ChangeStatus.DRAFT: "white",
    ChangeStatus.SUBMITTED: "yellow",
    ChangeStatus.APPROVED: "green",
    ChangeStatus.COMPLETED: "blue",
    ChangeStatus.CANCELLED: "red",
}
OUTCOMES = (("sent", "green"), ("partial", "yellow"), ("failed", "red"), ("dead_lettered", "magenta"))
TOP_CUSTOMERS = 8


def _rate(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def _hours(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}h"


def headline(report: Report) -> str:
    totals = report.totals
    rates = totals.rates()
    return (
        f"[b]{report.changes}[/] changes · [b]{totals.total}[/] deliveries: "
        f"sent {_rate(rates['sent'])}, partial {_rate(rates['partial'])}, failed {_rate(rates['failed'])}, "
        f"dead-lettered {_rate(rates['dead_lettered'])} · submit→approve median "
        f"{_hours(report.submit_to_approve.median_hours)}, approve→window median "
        f"{_hours(report.approve_to_start.median_hours)} · bounces/complaints: not recorded yet"
    )


def stacked_bar(
    plt: Any,
    labels: list[str] | list[float],
    series: list[list[int]],
    names: list[str],
    colours: list[str],
    orientation: str = "vertical",
) -> None:
    """plotext's stacked bars, one series per name (its type stubs know neither ``labels`` nor a colour
    per series)."""
    plt.stacked_bar(labels, series, labels=names, color=colours, orientation=orientation)


class DashboardScreen(ConsoleScreen[None]):
    help_title = "Dashboard"
    CSS_PATH = "dashboard.tcss"
    MUTATING: ClassVar[frozenset[str]] = frozenset()
    BINDINGS = [
        Binding("1", "period('1')", "4 weeks"),
        Binding("2", "period('2')", "13 weeks"),
        Binding("3", "period('3')", "26 weeks"),
        Binding("4", "period('4')", "52 weeks"),
        Binding("0", "period('0')", "All"),
        Binding("r", "refresh", "Refresh"),
    ]

    def __init__(self) -> None:
        super().__init__(id="dashboard")
        self.period = "2"
        self.report: Report | None = None

    def compose_body(self) -> ComposeResult:
        with Vertical(id="dashboard-body"):
            yield Static("", id="dashboard-title")
            yield Static("Computing…", id="dashboard-headline")
            with Grid(id="dashboard-grid"):
                yield PlotextPlot(id="plot-weeks")
                yield PlotextPlot(id="plot-lead")
                yield PlotextPlot(id="plot-deliveries")
                yield PlotextPlot(id="plot-failing")

    def on_mount(self) -> None:
        self.load()

    def _since(self) -> str | None:
        weeks = PERIODS[self.period]
        if weeks is None:
            return None
        return iso_utc(self.now() - timedelta(weeks=weeks))

    def load(self) -> None:
        weeks = PERIODS[self.period]
        label = f"last {weeks} weeks" if weeks else "all history"
        self.query_one("#dashboard-title", Static).update(
            f"[b]Dashboard[/] · {label} · 1-4 period · 0 all · r refresh"
        )
        since, now = self._since(), self.now()
        known = list(self.console.known_changes) or None
        self.call_service(
            lambda: self.services.reports.build(since=since, now=now, changes=known),
            done=self._show,
            failed=self._failed,
            group="dashboard",
            exclusive=True,
            description="compute the report",
        )

    def action_refresh(self) -> None:
        self.load()

    def action_period(self, key: str) -> None:
        if key != self.period:
            self.period = key
            self.load()

    def _failed(self, exc: BaseException) -> None:
        self.query_one("#dashboard-headline", Static).update(
            f"[red]✖ Cannot compute: {escape(describe(exc))}[/]"
        )

    def _show(self, report: Report) -> None:
        self.query_one("#dashboard-headline", Static).update(headline(report))
        # Plotted once the new headline is laid out: the bar plots size themselves to their height.
        self.call_after_refresh(self._plot_all, report)

    def _plot_all(self, report: Report) -> None:
        self._weeks(report)
        self._lead(report)
        self._deliveries(report)
        self._failing(report)
        self.report = report

    # -- plots ----------------------------------------------------------------------------------------
    def _plot(self, widget_id: str, title: str) -> PlotextPlot:
        widget = self.query_one(f"#{widget_id}", PlotextPlot)
        plt = widget.plt
        plt.clear_figure()
        plt.title(title)
        return widget

    def _weeks(self, report: Report) -> None:
        widget = self._plot("plot-weeks", "Changes per week by state")
        plt = widget.plt
        if report.weeks:
            labels = [w[5:] for w in report.weeks]  # MM-DD of the Monday
            statuses = [
                s for s in ChangeStatus if any(report.changes_per_week[w].get(s.value) for w in report.weeks)
            ]
            series = [[report.changes_per_week[w].get(s.value, 0) for w in report.weeks] for s in statuses]
            xs = [float(x) for x in range(1, len(labels) + 1)]
            stacked_bar(plt, xs, series, [s.value for s in statuses], [STATUS_COLOURS[s] for s in statuses])
            self._week_ticks(plt, labels)
        else:
            plt.title("Changes per week: none in this period")
        widget.refresh()

    def _week_ticks(self, plt: Any, labels: list[str]) -> None:
        """Every k-th week labelled at numeric positions, k chosen so the labels fit half the screen
        (plotext's own thinning of text labels depends on the sizes it was drawn at before)."""
        room = max(10, self.app.size.width // 2 - 10)
        step = max(1, math.ceil(len(labels) * 7 / room))
        ticks = list(range(0, len(labels), step))
        plt.xticks([float(i + 1) for i in ticks], [labels[i] for i in ticks])

    @staticmethod
    def _bar_rows(widget: PlotextPlot) -> int:
        """How many customers a horizontal bar plot shows: one per row of its plot area (its height less
        title, frame and tick line), at most ``TOP_CUSTOMERS``, so every bar is named."""
        return max(3, min(TOP_CUSTOMERS, widget.size.height - 4))

    @staticmethod
    def _name_ticks(plt: Any, names: list[str]) -> None:
        plt.yticks([float(i) for i in range(1, len(names) + 1)], names)

    def _lead(self, report: Report) -> None:
        widget = self._plot("plot-lead", "Median lead time per week (h)")
        plt = widget.plt
        weeks = [w for w in report.weeks if w in report.lead_by_week]
        if weeks:
            xs = [float(x) for x in range(1, len(weeks) + 1)]
            for key, label, colour in (
                ("submit_to_approve_median_hours", "submit→approve", "yellow"),
                ("approve_to_start_median_hours", "approve→window", "cyan"),
            ):
                points = [(x, report.lead_by_week[w][key]) for x, w in zip(xs, weeks, strict=True)]
                shown = [(x, y) for x, y in points if y is not None]
                if shown:
                    plt.plot(
                        [x for x, _ in shown], [y for _, y in shown], label=label, color=colour, marker="dot"
                    )
            self._week_ticks(plt, [w[5:] for w in weeks])
        else:
            plt.title("Lead times: nothing approved in this period")
        widget.refresh()

    def _deliveries(self, report: Report) -> None:
        widget = self._plot("plot-deliveries", "Deliveries by outcome")
        plt = widget.plt
        busiest = sorted(
            (c for c in report.deliveries if c.attempted), key=lambda c: (-c.attempted, c.customer)
        )
        busiest = busiest[: self._bar_rows(widget)]
        if busiest:
            busiest.reverse()  # the busiest on top
            stacked_bar(
                plt,
                [float(i) for i in range(1, len(busiest) + 1)],
                [[c.counts[state] for c in busiest] for state, _ in OUTCOMES],
                [state for state, _ in OUTCOMES],
                [colour for _, colour in OUTCOMES],
                orientation="horizontal",
            )
            self._name_ticks(plt, [c.customer for c in busiest])
        else:
            plt.title("Deliveries: none in this period")
        widget.refresh()

    def _failing(self, report: Report) -> None:
        widget = self._plot("plot-failing", "Most failed deliveries")
        plt = widget.plt
        top = report.top_failing(self._bar_rows(widget))
        if top:
            plt.bar(
                [float(i) for i in range(1, len(top) + 1)],
                [c.failures for c in reversed(top)],
                orientation="horizontal",
                color="red",
            )
            self._name_ticks(plt, [c.customer for c in reversed(top)])
        else:
            plt.title("No failed deliveries in this period")
        widget.refresh()
