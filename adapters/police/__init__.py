"""The police (公安) department adapter, its WSDL and its simulator."""

from adapters.police.adapter import OPERATIONS, PoliceAdapter

__all__ = ["OPERATIONS", "PoliceAdapter"]
