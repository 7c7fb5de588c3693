"""Vim motions for every table and list of the console (k9s/lazygit style): j/k move, g/G first/last.

One binding set, declared here: ``NavTable`` (every table of the console, ``LiveTable`` included) and
``NavSelectionList`` (pick lists) carry it. The motions are the widgets' own actions, so they behave
exactly like the arrow keys and home/end, and never reach the screen (no screen binds them).
"""

from __future__ import annotations

from typing import Any, ClassVar, TypeVar

from textual.binding import Binding, BindingType
from textual.widgets import DataTable, SelectionList

T = TypeVar("T")

TABLE_MOTIONS: list[BindingType] = [
    Binding("j", "cursor_down", "Down", show=False),
    Binding("k", "cursor_up", "Up", show=False),
    Binding("g", "scroll_top", "First row", show=False),
    Binding("G", "scroll_bottom", "Last row", show=False),
]
LIST_MOTIONS: list[BindingType] = [
    Binding("j", "cursor_down", "Down", show=False),
    Binding("k", "cursor_up", "Up", show=False),
    Binding("g", "first", "First", show=False),
    Binding("G", "last", "Last", show=False),
]


class NavTable(DataTable[Any]):
    """A DataTable with the console's vim motions."""

    BINDINGS: ClassVar[list[BindingType]] = TABLE_MOTIONS


class NavSelectionList(SelectionList[T]):
    """A SelectionList with the console's vim motions; the first option is highlighted as soon as
    there is one, so space toggles what the operator sees highlighted (never nothing)."""

    BINDINGS: ClassVar[list[BindingType]] = LIST_MOTIONS

    def highlight_first(self) -> None:
        if self.highlighted is None and self.option_count:
            self.highlighted = 0
