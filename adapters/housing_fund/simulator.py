"""The housing provident fund centre's simulator: its SOAP service over real HTTP, for
tests and demos.

    with SimulatorServer(create_app(state), state) as server:
        HousingFundAdapter(endpoint=server.url)
"""

from __future__ import annotations

from starlette.applications import Starlette

from adapters.housing_fund.adapter import NAMESPACE, OPERATIONS, WSDL
from adapters.simulators.base import DepartmentState
from adapters.simulators.soap import FilingService, filing_app

LOAN_APPROVAL = "住房公积金个人住房贷款审批通知书"
WITHDRAWAL_VOUCHER = "住房公积金提取凭证"

SERVICE = FilingService(
    wsdl=WSDL,
    namespace=NAMESPACE,
    operations=OPERATIONS,
    certificate_names={
        "JC-GRKH": "住房公积金个人账户设立通知书",
        "JC-DWDJ": "住房公积金单位缴存登记回执",
        "TQ-LTX": WITHDRAWAL_VOUCHER,
        "TQ-SW": WITHDRAWAL_VOUCHER,
        "DK-ESZF": LOAN_APPROVAL,
        "DK-JFDX": LOAN_APPROVAL,
    },
    default_certificate="办理结果通知书",
    certificate_prefix="GJJZ-",
)


def create_app(state: DepartmentState) -> Starlette:
    """The housing fund SOAP endpoint, misbehaving as `state` says."""
    return filing_app(state, SERVICE)
