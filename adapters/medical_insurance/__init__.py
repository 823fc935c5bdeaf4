"""The 医疗保障 (medical insurance) department adapter, registered as `medical_insurance`."""

from adapters.medical_insurance.adapter import OPERATIONS, MedicalInsuranceAdapter

__all__ = ["OPERATIONS", "MedicalInsuranceAdapter"]
