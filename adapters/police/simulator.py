"""The police department's simulator: its SOAP service over real HTTP, for tests and demos.

with SimulatorServer(create_app(state), state) as server:
    PoliceAdapter(endpoint=server.url)
"""

from __future__ import annotations

from starlette.applications import Starlette

from adapters.police.adapter import NAMESPACE, OPERATIONS, WSDL
from adapters.simulators.base import DepartmentState
from adapters.simulators.soap import FilingService, filing_app

SERVICE = FilingService(
    wsdl=WSDL,
    namespace=NAMESPACE,
    operations=OPERATIONS,
    certificate_names={
        "HJ-CSDJ": "居民户口簿（出生登记）",
        "HJ-SYRH": "居民户口簿（收养入户）",
        "HJ-SWZX": "户口注销证明",
        "HJ-MZBG": "居民户口簿（民族成份变更）",
        "HJ-BYQR": "居民户口簿（迁入登记）",
        "HJ-HYBG": "居民户口簿（婚姻状况变更）",
        "HJ-QYSP": "准予迁入证明",
        "HJ-XXCX": "户籍证明",
        "HJ-TYHF": "居民户口簿（恢复户口）",
        "SFZ-HF": "居民身份证",
        "SFZ-HL": "居民身份证",
        "JZZ-XXCX": "居住证信息证明",
        "SW-FZCSW": "死亡证明（非正常死亡）",
        "JJ-JSZZX": "机动车驾驶证注销证明",
        "ZA-GZBA": "印章刻制备案回执",
        "ZA-LGXK": "特种行业许可证",
        "WA-SWCSSP": "网络安全审核意见书",
        "HJ-HJZM": "户籍证明",
        "HJ-FHLH": "居民户口簿（分户、立户）",
        "ZA-GZZX": "公章备案注销回执",
        "ZA-BAKS": "保安服务跨省备案回执",
        "JJ-JDCCX": "机动车信息查询结果",
        "JJ-LSTX": "机动车临时通行牌证",
    },
    default_certificate="办理结果通知书",
    certificate_prefix="GAZZ-",
)


def create_app(state: DepartmentState) -> Starlette:
    """The police SOAP endpoint, misbehaving as `state` says."""
    return filing_app(state, SERVICE)
