"""The console's header line."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static


class EnvHeader(Static):
    """One line: app name, environment (local/endpoint/aws), profile, region, operator, read-only."""

    def on_mount(self) -> None:
        self.watch(self.app, "header_text", self._show, init=True)

    def _show(self, text: str) -> None:
        self.update(Text.from_markup(text))
