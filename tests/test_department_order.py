"""The ops page's department rows: what needs an operator comes first."""

from __future__ import annotations

from router.operations.overview import DepartmentHealth, attention_order


def _department(code: str, **figures: object) -> DepartmentHealth:
    values: dict[str, object] = {
        "department": code,
        "name_zh": code,
        "ready": 0,
        "unacknowledged": 0,
        "consumers": 1,
        "oldest_age_seconds": None,
        "dead_letters": 0,
        "outcomes": 0,
        "failed": 0,
        "error_ratio": None,
        "circuit": "closed",
    }
    return DepartmentHealth.model_validate({**values, **figures})


def test_a_dead_letter_or_an_open_circuit_outranks_failures_activity_and_quiet() -> None:
    rows = [
        _department("busy", outcomes=200),
        _department("quiet"),
        _department("failing", outcomes=165, failed=1, error_ratio=0.006),
        _department("parked", outcomes=3, dead_letters=1),
        _department("down", circuit="open"),
        _department("waiting", oldest_age_seconds=40.0),
    ]
    ordered = [row.department for row in sorted(rows, key=attention_order)]
    assert ordered == ["parked", "down", "failing", "waiting", "busy", "quiet"]
