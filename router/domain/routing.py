"""Which adapter's queue an item goes to: the department's, at the level and area that
decide it (seed 001 附件3 "跨层级"; seed 003: "根据事项权限通过平台自动流转至市级部门或有权限
的镇（街道）便民服务中心进行办理").

The deciding office is the item's lowest catalog level (nearest the applicant) in the
applicant's area: a [city, county] item filed from 卫滨区 (410703) is decided by the
district (410703), a [province] one by the province (41). Where that office's department
runs adapters per area (LIANBAN_ADAPTER_AREAS, the same declaration the adapter processes
are started with), the item goes to the most specific area covering the office — its
district's, else its city's, else the province's — and an office none covers is refused
at intake, before anything is stored. A department not listed has one adapter for the
whole province.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from contracts import topology
from contracts.catalog import Item, Level
from contracts.errors import ConfigurationError

AREA = re.compile(r"^\d{2}(\d{2}){0,2}$")
# Nearest the applicant last: an item listed at several levels is decided at the last.
LEVEL_ORDER = (Level.PROVINCE, Level.CITY, Level.COUNTY, Level.TOWNSHIP)
LEVEL_ZH = {
    Level.PROVINCE: "省级",
    Level.CITY: "市级",
    Level.COUNTY: "县级",
    Level.TOWNSHIP: "乡级",
}


def deciding_office(item: Item, area_code: str) -> tuple[str, Level]:
    """The office (its GB/T 2260 prefix) and level deciding `item` for `area_code`."""
    level = max(item.levels, key=LEVEL_ORDER.index)
    return topology.handling_office(area_code, level.value), level


class AdapterAreas:
    def __init__(self, areas: Mapping[str, Sequence[str]] | None = None) -> None:
        self._areas = {department: tuple(codes) for department, codes in (areas or {}).items()}
        for department, codes in self._areas.items():
            bad = [code for code in codes if not AREA.match(code)]
            if bad or not codes or len(set(codes)) != len(codes):
                raise ConfigurationError(
                    f"LIANBAN_ADAPTER_AREAS[{department!r}]: expected distinct GB/T 2260 "
                    f"prefixes of 2, 4 or 6 digits, got {list(codes)}"
                )

    @property
    def declared(self) -> dict[str, tuple[str, ...]]:
        return dict(self._areas)

    def route(self, item: Item, area_code: str) -> str | None:
        """`<area>.<level>` for the item's routing key, or None when no adapter of its
        department serves the office that decides it."""
        office, level = deciding_office(item, area_code)
        declared = self._areas.get(item.department)
        if declared is None:
            return f"{office}.{level.value}"
        covering = [area for area in declared if office.startswith(area)]
        if not covering:
            return None
        return f"{max(covering, key=len)}.{level.value}"
