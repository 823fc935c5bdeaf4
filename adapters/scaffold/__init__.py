"""`lianban adapter new <department>`: writes a working adapter package to start from.

The package holds an adapter for a small REST API, a simulator of that API, and a test
that runs the conformance suite against it; it passes as generated. A department team
then replaces the wire format with its own system's and keeps the suite green.
"""

from __future__ import annotations

from pathlib import Path
from string import Template

from contracts.catalog import Catalog
from contracts.errors import ConfigurationError

TEMPLATES = Path(__file__).parent / "templates"
FILES = {
    "__init__.py.tmpl": "__init__.py",
    "adapter.py.tmpl": "adapter.py",
    "simulator.py.tmpl": "simulator.py",
    "tests_init.py.tmpl": "tests/__init__.py",
    "test_adapter.py.tmpl": "tests/test_${department}.py",
}


def adapter_class_name(department: str) -> str:
    return "".join(part.title() for part in department.split("_")) + "Adapter"


def scaffold(department: str, catalog: Catalog, into: Path) -> Path:
    """Write the package `into/<department>/`; refuses to overwrite an existing one."""
    if department not in catalog.departments:
        known = ", ".join(sorted(catalog.serving_departments()))
        raise ConfigurationError(f"unknown department {department!r}; known: {known}")
    services = sorted(catalog.services_of(department))
    if not services:
        raise ConfigurationError(f"department {department!r} handles no catalog item")
    package = into / department
    if package.exists():
        raise ConfigurationError(f"{package} exists already; choose another directory")
    values = {
        "department": department,
        "class_name": adapter_class_name(department),
        "name_zh": catalog.departments[department].name_zh,
        "operations": "\n".join(
            f'    "{service}": "{department[:2].upper()}{number:03d}",'
            for number, service in enumerate(services, start=1)
        ),
        "first_service": services[0],
    }
    for template, target in FILES.items():
        path = package / Template(target).substitute(values)
        path.parent.mkdir(parents=True, exist_ok=True)
        text = (TEMPLATES / template).read_text(encoding="utf-8")
        path.write_text(Template(text).substitute(values), encoding="utf-8")
    return package
