"""Who applied, as the timeline and the audit log record it: the applicant in person, or
an agent (帮办代办: seed 004 "免费帮代办服务", seed 003 "帮办代办") on their behalf.

Names and identity numbers are masked here, before they are written: the timeline is
read by the platform, and the audit log keeps no whole ID number either.
"""

from __future__ import annotations

from contracts.application import AgentRelation, Application
from contracts.identity import mask_resident_id
from contracts.personal_data import mask_name
from router.domain.evidence import Evidence
from router.store.timeline import Actor

_RELATIONS = {
    AgentRelation.FAMILY: "近亲属",
    AgentRelation.EMPLOYEE: "单位经办人",
    AgentRelation.ASSISTANT: "帮办代办员",
    AgentRelation.LAWYER: "受托律师",
    AgentRelation.OTHER: "受托人",
}


def who_applied(application: Application) -> tuple[Actor, str]:
    """The `applied` step's actor and detail."""
    applicant = mask_name(application.applicant.name)
    agent = application.agent
    if agent is None:
        return Actor.APPLICANT, f"申请人{applicant}本人申请"
    return Actor.AGENT, (
        f"{_RELATIONS[agent.relation]}{mask_name(agent.name)}"
        f"（证件号{mask_resident_id(agent.id_number)}）受{applicant}委托代为申请，已附授权委托书"
    )


def audit_applicant(application: Application) -> str:
    """Who applied, for the audit record (masked again by the audit writer)."""
    agent = application.agent
    if agent is None:
        return "applied_by=applicant"
    return (
        f"applied_by=agent relation={agent.relation.value} "
        f"agent_id={mask_resident_id(agent.id_number)} "
        f"authorisation={agent.authorisation.sha256[:12]}"
    )


def validated_detail(application: Application, evidence: Evidence) -> str:
    detail = f"{len(application.items)} 个事项，{len(application.materials)} 份材料核验通过"
    if evidence.licences:
        detail += f"，{len(evidence.licences)} 份电子证照经电子证照库核验，免于提交"
    if evidence.prior_results:
        detail += f"，{len(evidence.prior_results)} 项前置事项引用已办结结果"
    return detail
