"""The ``/`` filter line over a table."""

from __future__ import annotations

from textual import on
from textual.message import Message
from textual.widgets import Input


class FilterBar(Input):
    """Hidden until ``open``; a ``live`` filter applies as it is typed, any other one on enter.

    Enter (or ``close``) gives the focus back to the table (``table``: its selector) and hides an empty
    filter; escape (``cancel``) clears a live filter, puts back the applied one otherwise, and closes.
    Each filter to apply is posted as ``FilterBar.Applied``.
    """

    class Applied(Message):
        def __init__(self, bar: FilterBar, text: str) -> None:
            super().__init__()
            self.bar = bar
            self.text = text

        @property
        def control(self) -> FilterBar:
            return self.bar

    def __init__(self, placeholder: str, *, table: str, live: bool = True, id: str | None = None) -> None:
        super().__init__(placeholder=placeholder, id=id, classes="hidden")
        self.table = table
        self.live = live
        self.applied = ""  # the filter in effect

    def open(self) -> None:
        if not self.live:
            self.value = self.applied
        self.remove_class("hidden")
        self.focus()

    def close(self) -> None:
        if not (self.value if self.live else self.applied).strip():
            self.add_class("hidden")
        self.screen.query_one(self.table).focus()

    def cancel(self) -> bool:
        """Escape: True when the filter had the focus (then it is cleared or restored, and closed)."""
        if not self.has_focus:
            return False
        self.value = "" if self.live else self.applied
        self.close()
        return True

    @on(Input.Changed)
    def _changed(self, event: Input.Changed) -> None:
        if self.live:
            self.applied = event.value
            self.post_message(self.Applied(self, event.value))

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        if not self.live:
            self.applied = event.value.strip()
            self.post_message(self.Applied(self, self.applied))
        self.close()
