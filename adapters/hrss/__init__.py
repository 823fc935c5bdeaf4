"""The 人力资源社会保障 (hrss) department adapter, registered as entry point `hrss`."""

from adapters.hrss.adapter import OPERATIONS, HrssAdapter

__all__ = ["OPERATIONS", "HrssAdapter"]
