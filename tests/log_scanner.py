"""A pytest plugin: the whole run's log output must hold no unmasked ID number.

The run logs as production does (`runtime.logs.configure_logging`). Everything a test
prints or logs — its captured stdout, stderr and log records, setup and teardown
included — and every record logged between tests (background threads) is scanned for
resident ID numbers and credit codes with a valid check character
(`contracts.personal_data.unmasked_identifiers`). Any one found fails the session, even
when every test passed, so CI cannot pass with a leak.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pytest

from contracts.identity import mask_resident_id
from contracts.personal_data import unmasked_identifiers
from runtime.logs import configure_logging, json_formatter


@dataclass
class Leaks:
    found: list[tuple[str, str, str]] = field(default_factory=list)
    """(where, which output, the identifier masked for display)."""

    def scan(self, where: str, source: str, text: str) -> None:
        for identifier in unmasked_identifiers(text):
            self.found.append((where, source, mask_resident_id(identifier)))


class _ScanningHandler(logging.Handler):
    """Formats every record as production does and scans the line."""

    def __init__(self, leaks: Leaks) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(json_formatter())
        self.leaks = leaks
        self.where = "(between tests)"

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.leaks.scan(self.where, "log record", self.format(record))
        except Exception:
            self.handleError(record)


class LogScanner:
    """The plugin's hooks, around one `Leaks` for the session."""

    def __init__(self) -> None:
        self.leaks = Leaks()
        self.handler = _ScanningHandler(self.leaks)
        logging.getLogger().addHandler(self.handler)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> object:
        root = logging.getLogger()
        # A test that reconfigures logging (the CLI, the demo) drops every root handler
        # and may leave one on its own `capsys` stream, closed once it ends: a record
        # logged there later fails, and logging's error report prints the record raw,
        # unmasked. Configure the run's logging again, on the stream of now.
        if self.handler not in root.handlers:
            configure_logging("debug")
            root.addHandler(self.handler)
        self.handler.where = item.nodeid
        try:
            return (yield)
        finally:
            self.handler.where = "(between tests)"

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        # Each phase's report repeats the sections of the phases before it.
        for source, text in report.sections:
            if source.endswith(report.when):
                self.leaks.scan(report.nodeid, source, text)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.leaks.found and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.leaks.found:
            return
        terminalreporter.section("unmasked ID numbers in the log output", red=True)
        for where, source, masked in self.leaks.found:
            terminalreporter.line(f"{where} ({source}): {masked}")
        terminalreporter.line(
            f"{len(self.leaks.found)} unmasked ID number(s) in the output: mask them "
            "(contracts.personal_data); the session fails"
        )


def pytest_configure(config: pytest.Config) -> None:
    configure_logging("debug")
    config.pluginmanager.register(LogScanner(), "log-scanner")
