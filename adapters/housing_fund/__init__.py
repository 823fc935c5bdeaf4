"""The housing provident fund (住房公积金) department adapter, its WSDL and its simulator."""

from adapters.housing_fund.adapter import OPERATIONS, HousingFundAdapter

__all__ = ["OPERATIONS", "HousingFundAdapter"]
