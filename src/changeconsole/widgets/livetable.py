"""Tables refreshed in place: rows added/removed by key, only changed cells updated, one repaint."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Self

from rich.text import Text
from textual.coordinate import Coordinate
from textual.geometry import Region
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist, ColumnKey, RowDoesNotExist

from .navtable import NavTable


@dataclass
class SyncStats:
    """What the last table sync touched (tests and the bench read it)."""

    added: int = 0
    removed: int = 0
    cells: int = 0
    sorted: bool = False
    visited: int = 0  # rows compared (every row unless ``only`` was given)


class LiveTable(NavTable):
    """A table (with the console's vim motions) refreshed in place.

    - ``update_cell`` asks for a full repaint each time; inside ``coalesced()`` those plain repaint
      requests are coalesced into one at the end (layout refreshes still go through at once).
    - ``fill_column``: that column's width takes whatever the other (fixed-width) columns leave, so
      the table never scrolls sideways when the terminal is wide enough (re-fit on every resize).
    - ``squeeze``: column key => narrowest width. When the fill column would get less than
      ``fill_min``, these columns give up width first, in the order given, down to that minimum (their
      cells are cut); they grow back to the width they were added with when there is room again.
    """

    _batching = False
    _pending_repaint = False

    def __init__(
        self,
        *,
        fill_column: str | None = None,
        fill_min: int = 16,
        squeeze: dict[str, int] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.fill_column = fill_column
        self.fill_min = fill_min
        self.squeeze = dict(squeeze or {})
        self._natural: dict[ColumnKey, int] = {}  # squeezable columns' widths as added

    def fit_fill_column(self) -> None:
        if self.fill_column is None:
            return
        key = ColumnKey(self.fill_column)
        column = self.columns.get(key)
        if column is None or not self.size.width:
            return
        squeezed = self._squeeze_widths(key)
        others = sum(c.get_render_width(self) for k, c in self.columns.items() if k != key)
        # Always leave room for the vertical scrollbar, so rows arriving later never cause a
        # horizontal one.
        avail = self.size.width - self.styles.scrollbar_size_vertical - others - 2 * self.cell_padding
        width = max(self.fill_min, avail)
        if width == column.width and not squeezed:
            return
        column.width = width
        if self.row_count:
            # The public way to have the table re-measure itself (virtual size, render caches).
            row_key = self.ordered_rows[0].key
            self.update_cell(row_key, key, self.get_cell(row_key, key), update_width=True)
        else:
            self.refresh(layout=True)

    def _squeeze_widths(self, fill: ColumnKey) -> bool:
        """Give the squeezable columns the widths the table's width allows; True when one changed."""
        if not self.squeeze:
            return False
        columns = [(ColumnKey(k), low) for k, low in self.squeeze.items() if ColumnKey(k) in self.columns]
        for key, _low in columns:
            self._natural.setdefault(key, self.columns[key].width)
        fixed = sum(
            c.width + 2 * self.cell_padding
            for k, c in self.columns.items()
            if k != fill and k not in self._natural
        )
        room = self.size.width - self.styles.scrollbar_size_vertical - fixed
        room -= self.fill_min + 2 * self.cell_padding
        short = sum(self._natural[k] + 2 * self.cell_padding for k, _ in columns) - room
        changed = False
        for key, low in columns:
            natural = self._natural[key]
            give = min(max(0, short), natural - min(low, natural))
            short -= give
            if self.columns[key].width != natural - give:
                self.columns[key].width = natural - give
                changed = True
        return changed

    def on_resize(self) -> None:
        self.fit_fill_column()

    def refresh(
        self, *regions: Region, repaint: bool = True, layout: bool = False, recompose: bool = False
    ) -> Self:
        if self._batching and not regions and not layout and not recompose:
            self._pending_repaint = True
            return self
        return super().refresh(*regions, repaint=repaint, layout=layout, recompose=recompose)

    @contextlib.contextmanager
    def coalesced(self) -> Iterator[None]:
        if self._batching:
            yield
            return
        self._batching = True
        try:
            yield
        finally:
            self._batching = False
            if self._pending_repaint:
                self._pending_repaint = False
                self.refresh()


def cursor_key(table: DataTable[Any]) -> str | None:
    """Key of the row under the cursor (None when the table is empty)."""
    if not table.row_count:
        return None
    try:
        row_key = table.coordinate_to_cell_key(Coordinate(table.cursor_row, 0)).row_key
    except CellDoesNotExist:
        return None
    return str(row_key.value) if row_key.value is not None else None


def sync_rows(
    table: DataTable[Any],
    shown: dict[str, tuple[str, ...]],
    rows: Sequence[tuple[str, tuple[str, ...]]],
    column_keys: Sequence[str],
    style: Callable[[str, str], Text],
    *,
    sort_column: str | None = None,
    only: Collection[str] | None = None,
) -> SyncStats:
    """Make ``table`` show exactly ``rows`` (key, plain cells), in key order, touching only what changed.

    ``shown`` maps each row key in the table to the plain cells it displays and is kept up to date.
    Rows are added/removed by key, changed cells updated with ``update_cell`` (column widths are fixed,
    so no re-measure), and the cursor stays on the same row key when rows move. The first column (or
    ``sort_column``) must hold the row key as a plain string: rows appended out of order are re-sorted
    by it.

    ``only``: the keys that may have changed; ``rows`` then holds the wanted rows among them and every
    other shown row is left as it is, unvisited (a refresh where a few rows changed costs that few).
    """
    if isinstance(table, LiveTable):
        with table.coalesced():
            return _sync_rows(table, shown, rows, column_keys, style, sort_column, only)
    return _sync_rows(table, shown, rows, column_keys, style, sort_column, only)


def _sync_rows(
    table: DataTable[Any],
    shown: dict[str, tuple[str, ...]],
    rows: Sequence[tuple[str, tuple[str, ...]]],
    column_keys: Sequence[str],
    style: Callable[[str, str], Text],
    sort_column: str | None,
    only: Collection[str] | None = None,
) -> SyncStats:
    stats = SyncStats()
    before_key = cursor_key(table)
    before_index = table.cursor_row
    wanted = {key for key, _ in rows}
    candidates = shown if only is None else [k for k in only if k in shown]
    for key in [k for k in candidates if k not in wanted]:
        with contextlib.suppress(RowDoesNotExist):
            table.remove_row(key)
        del shown[key]
        stats.removed += 1
    out_of_order = False
    last: str | None = None  # the greatest key shown, computed when a row is added
    for key, cells in rows:
        stats.visited += 1
        old = shown.get(key)
        if old is None:
            if last is None:
                last = max(shown) if shown else ""
            table.add_row(*(style(c, v) for c, v in zip(column_keys, cells, strict=True)), key=key)
            stats.added += 1
            if key < last:
                out_of_order = True
            last = max(last, key)
        elif old != cells:
            for column, new, prev in zip(column_keys, cells, old, strict=True):
                if new != prev:
                    table.update_cell(key, column, style(column, new))
                    stats.cells += 1
        shown[key] = cells
    if out_of_order:
        table.sort(sort_column or column_keys[0], key=str)  # cells are Text: order by their plain text
        stats.sorted = True
    if (stats.added or stats.removed or stats.sorted) and table.row_count:
        if before_key is not None and before_key in shown:
            target = table.get_row_index(before_key)
        else:
            target = min(max(before_index, 0), table.row_count - 1)
        if target != table.cursor_row:
            table.move_cursor(row=target, animate=False)
    return stats
