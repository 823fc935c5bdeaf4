"""Keeps the live working calendar current without a restart.

Each round re-reads the operator's year-file directory and the installed chinesecalendar
(an upgrade in place is seen); when a year's working days or officialness change, the
new calendar becomes the live one and the `on_change` callbacks run with the changed
years, so stored deadlines can be recomputed. A malformed year file keeps the calendar
in force and is logged each round until it is fixed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import structlog

from contracts.errors import ConfigurationError
from router.domain.workdays import (
    WorkingCalendar,
    calendar_dir,
    replace_working_calendar,
    working_calendar,
)

log = structlog.get_logger(__name__)


class CalendarWatcher:
    def __init__(
        self,
        extra_dir: Path | None = None,
        *,
        every_seconds: float = 60.0,
        load: Callable[[Path | None], WorkingCalendar] = WorkingCalendar.load,
    ) -> None:
        self._dir = extra_dir if extra_dir is not None else calendar_dir()
        self._every = every_seconds
        self._load = load

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(self._every):
            try:
                self.check_once()
            except (ConfigurationError, OSError) as error:
                log.error("calendar.unreadable", error=str(error))

    def check_once(self) -> set[int]:
        """Read the sources again; swap the live calendar if a year changed, and return
        the changed years (empty when nothing did, or another watcher swapped first)."""
        current, fresh = working_calendar(), self._load(self._dir)
        changed = current.changed_years(fresh)
        if changed and replace_working_calendar(fresh, changed, replacing=current):
            log.info(
                "calendar.changed",
                years=sorted(changed),
                official=[year for year in sorted(changed) if fresh.is_official(year)],
            )
            return changed
        return set()
