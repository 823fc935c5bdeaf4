"""Who may apply for a bundle type: the catalog's rules by category (applicant_rules.yaml),
checked on the posted document so their problems join the one-time notice.

The rule's type checks are here (a natural person may not open a restaurant: 准营 needs
an enterprise or an individual business); that the applicant really holds the licence the
rule requires is asked of the certificate library (`router.domain.evidence`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from contracts.api import Problem
from contracts.catalog import BundleType, Catalog
from contracts.catalog.model import ApplicantRule


def holder_of(applicant: Any) -> str | None:
    """The applicant's identifier as licences name their holder: the ID number of a
    person, the credit code of an organisation (upper case)."""
    if not isinstance(applicant, dict):
        return None
    number = applicant.get("uscc", applicant.get("id_number"))
    return number.strip().upper() if isinstance(number, str) else None


def rule_for(catalog: Catalog, bundle_type: BundleType | None) -> ApplicantRule | None:
    return None if bundle_type is None else catalog.applicant_rules.get(bundle_type.category)


def rule_waived(bundle_type: BundleType, rule: ApplicantRule, items: Any) -> bool:
    """A selected item registers the business the rule asks for (企业开办 in the same
    application)."""
    if not isinstance(items, list):
        return False
    known = bundle_type.item_codes
    return any(
        bundle_type.item(code).service in rule.waived_by_services
        for code in items
        if isinstance(code, str) and code in known
    )


def applicant_problems(
    catalog: Catalog, bundle_type: BundleType, raw: dict[str, Any]
) -> Iterable[Problem]:
    rule = rule_for(catalog, bundle_type)
    applicant = raw.get("applicant")
    if rule is None or not isinstance(applicant, dict):
        return
    if rule_waived(bundle_type, rule, raw.get("items")):
        return
    kind = applicant.get("applicant_type")
    if kind not in rule.applicant_types:
        yield Problem(
            pointer="/applicant/applicant_type",
            code="applicant_type_not_allowed",
            message_zh=f"“{bundle_type.name_zh}”须由持有营业执照的企业或个体工商户申请，"
            f"个人不能申请：{rule.basis}",
            message_en=f"{bundle_type.code} must be applied for by a licensed enterprise or "
            f"individual business, not applicant type {kind}: {rule.basis_en}",
        )
        return
    uscc = applicant.get("uscc")
    if (
        rule.registration_authorities
        and isinstance(uscc, str)
        and uscc[:1] not in (rule.registration_authorities)
    ):
        yield Problem(
            pointer="/applicant/uscc",
            code="applicant_not_registered_business",
            message_zh=f"申请人不是市场监管部门登记的企业或个体工商户：{rule.basis}",
            message_en="the applicant is not an enterprise or individual business registered "
            f"by market regulation: {rule.basis_en}",
        )
