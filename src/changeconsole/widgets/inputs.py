"""Form inputs of the console: no cursor blink in snapshots, Tab takes a completion, suggesters."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from functools import lru_cache
from pathlib import Path
from zoneinfo import available_timezones

from textual.suggester import Suggester
from textual.widgets import Input, TextArea

from .console import console_of


class FormInput(Input):
    """An Input whose cursor blinks only when the app allows it (never in snapshot tests)."""

    def on_mount(self) -> None:
        self.cursor_blink = console_of(self).cursor_blink


def accept_suggestion(field: Input) -> bool:
    """Take the completion ``field`` shows (any Input with a suggester): True when there was one.
    The app's Tab binding asks this first, so Tab completes everywhere and otherwise moves on."""
    suggestion = field._suggestion
    if not suggestion or suggestion == field.value or not field.cursor_at_end:
        return False
    field.value = suggestion
    field.cursor_position = len(suggestion)
    return True


class FormTextArea(TextArea):
    def on_mount(self) -> None:
        self.cursor_blink = console_of(self).cursor_blink


class PathSuggester(Suggester):
    """Completes a filesystem path: the first entry of the typed directory that starts with the rest."""

    def __init__(self, *, suffixes: Iterable[str] = (".json",)) -> None:
        super().__init__(use_cache=False, case_sensitive=True)
        self.suffixes = tuple(suffixes)

    async def get_suggestion(self, value: str) -> str | None:
        if not value:
            return None
        expanded = os.path.expanduser(value)
        head, tail = os.path.split(expanded)
        directory = Path(head or ".")
        try:
            names = sorted(p.name for p in directory.iterdir())
        except OSError:
            return None
        for name in names:
            if not name.startswith(tail) or name == tail or (name.startswith(".") and not tail):
                continue
            full = directory / name
            if full.is_dir():
                name += "/"
            elif self.suffixes and not name.endswith(self.suffixes):
                continue
            completed = os.path.join(head, name) if head else name
            if value.startswith("~"):
                home = os.path.expanduser("~")
                if completed.startswith(home):
                    completed = "~" + completed[len(home) :]
            return completed
        return None


@lru_cache(maxsize=1)
def timezone_names() -> tuple[str, ...]:
    return tuple(sorted(available_timezones() | {"UTC"}))


class TimezoneSuggester(Suggester):
    """Completes IANA timezone names case-insensitively (``europe/l`` → ``Europe/London``)."""

    def __init__(self) -> None:
        super().__init__(use_cache=True, case_sensitive=False)

    async def get_suggestion(self, value: str) -> str | None:
        for name in timezone_names():
            if name.casefold().startswith(value) and len(name) > len(value):
                return name
        return None


class WordListSuggester(Suggester):
    """Completes from a list that can change (e.g. ``:`` commands with known change ids)."""

    def __init__(self, words: Callable[[], Iterable[str]]) -> None:
        super().__init__(use_cache=False, case_sensitive=False)
        self.words = words

    async def get_suggestion(self, value: str) -> str | None:
        if not value:
            return None
        for word in self.words():
            if word.casefold().startswith(value) and len(word) > len(value):
                return word
        return None
