"""What every request of the console reaches: its settings, its database and its clock (``current``).

One ``Console`` per application, kept in ``app.extensions``; nothing here belongs to one request.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Final

from flask import current_app

from centralita.web.settings import WebSettings
from centralita.web.store import WebStore

__all__ = ["EXTENSION", "Console", "current"]

EXTENSION: Final = "centralita"


@dataclass(frozen=True, slots=True)
class Console:
    settings: WebSettings
    store: WebStore
    clock: Callable[[], datetime]

    @property
    def zone(self) -> tzinfo:
        """The time zone of the history's days: the configured one, or the box's own."""
        if self.settings.zone is not None:
            return self.settings.zone
        local = datetime.now().astimezone().tzinfo
        assert local is not None
        return local


def current() -> Console:
    console: Console = current_app.extensions[EXTENSION]
    return console
