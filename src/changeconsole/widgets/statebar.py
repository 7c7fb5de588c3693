"""Delivery states at a glance: a one-line stacked bar and the counts line under it."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widget import Widget

from ..colours import DELIVERY_STATE
from ..models import DeliveryState

# Order of segments in the stacked bar and of the counts line: settled-good first, trouble last.
BAR_ORDER: tuple[str, ...] = (
    DeliveryState.SENT.value,
    DeliveryState.PARTIAL.value,
    DeliveryState.SKIPPED.value,
    DeliveryState.SUPERSEDED.value,
    DeliveryState.PROCESSING.value,
    DeliveryState.QUEUED.value,
    DeliveryState.FAILED.value,
    DeliveryState.DEAD_LETTERED.value,
)
TROUBLE = frozenset(
    {DeliveryState.FAILED.value, DeliveryState.DEAD_LETTERED.value, DeliveryState.PARTIAL.value}
)


def counts_text(counts: dict[str, int]) -> Text:
    """``■ sent 3  ■ failed 0 …``: every state present (sent and failed always), coloured like the bar."""
    text = Text()
    for state in BAR_ORDER:
        n = counts.get(state, 0)
        if not n and state not in (DeliveryState.SENT.value, DeliveryState.FAILED.value):
            continue
        if text:
            text.append("  ")
        text.append("■ ", style=DELIVERY_STATE[state])
        text.append(f"{state} ", style="bold" if state in TROUBLE and n else "")
        text.append(str(n), style=DELIVERY_STATE[state] if n else "dim")
    return text


def settled_count(counts: dict[str, int]) -> int:
    in_flight = counts.get(DeliveryState.QUEUED.value, 0) + counts.get(DeliveryState.PROCESSING.value, 0)
    return sum(counts.values()) - in_flight


def allocate(counts: Sequence[int], width: int) -> list[int]:
    """Split ``width`` cells proportionally (largest remainder); any non-zero count gets ≥ 1 cell
    when there is room."""
    total = sum(counts)
    if total <= 0 or width <= 0:
        return [0] * len(counts)
    exact = [c * width / total for c in counts]
    cells = [int(x) for x in exact]
    for i, c in enumerate(counts):
        if c and not cells[i]:
            cells[i] = 1
    while sum(cells) > width:
        i = max(range(len(cells)), key=lambda j: (cells[j] - exact[j], cells[j]))
        if cells[i] <= 1:
            break
        cells[i] -= 1
    order = sorted(range(len(counts)), key=lambda j: exact[j] - cells[j], reverse=True)
    k = 0
    while sum(cells) < width and counts:
        j = order[k % len(order)]
        if counts[j]:
            cells[j] += 1
        k += 1
        if k > 4 * len(order) + width:
            break
    return cells


class StateBar(Widget):
    """A one-line stacked bar of delivery states."""

    DEFAULT_CSS = """
    StateBar { height: 1; width: 1fr; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.counts: dict[str, int] = {}

    def set_counts(self, counts: dict[str, int]) -> None:
        if counts != self.counts:
            self.counts = dict(counts)
            self.refresh()

    def render(self) -> Text:
        width = self.size.width
        values = [self.counts.get(s, 0) for s in BAR_ORDER]
        if not sum(values):
            return Text("─" * width, style="grey37")
        text = Text()
        for state, cells in zip(BAR_ORDER, allocate(values, width), strict=True):
            if cells:
                text.append("█" * cells, style=DELIVERY_STATE[state].replace("bold ", ""))
        return text
