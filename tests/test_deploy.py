"""deploy/ checked offline: Kubernetes manifests against the API's JSON schemas, the compose
file and the systemd units against the CLI and the settings the code reads, rabbitmq.conf
against the installed broker's configuration schema, the alert rules' PromQL against the
metrics the router exports and the runbook they point to."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import jsonschema
import kubernetes_validate
import promql_parser
import pytest
import yaml

from contracts.catalog import Catalog
from lianban.cli import _parser
from lianban.settings import variables
from router.operations.metrics import METRICS

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
KUBERNETES_VERSION = "1.30.0"  # the oldest release still maintained when this was written
KEDA_SCHEMA = json.loads((Path(__file__).parent / "schemas" / "keda.json").read_text())
REAL_ADAPTERS = ("housing_fund", "hrss", "medical_insurance", "police")
RABBITMQ_PLUGINS = Path("/usr/lib/rabbitmq/lib")


def _documents(path: Path) -> Iterator[dict[str, Any]]:
    yield from (document for document in yaml.safe_load_all(path.read_text()) if document)


def manifests() -> list[dict[str, Any]]:
    return [
        document
        for path in sorted((DEPLOY / "k8s").glob("*.yaml"))
        for document in _documents(path)
        if document["kind"] != "Kustomization"
    ]


def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    return document


def _lianban_services() -> dict[str, dict[str, Any]]:
    return {
        name: s for name, s in compose()["services"].items() if s.get("image") == "lianban:latest"
    }


def _containers(kind: str = "Deployment") -> Iterator[tuple[str, dict[str, Any]]]:
    for document in manifests():
        if document["kind"] == kind:
            for container in document["spec"]["template"]["spec"]["containers"]:
                yield document["metadata"]["name"], container


def test_every_kubernetes_manifest_passes_its_schema() -> None:
    kinds: list[str] = []
    for document in manifests():
        kinds.append(document["kind"])
        if document["apiVersion"].startswith("keda.sh/"):
            jsonschema.validate(document, KEDA_SCHEMA)
        else:
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    assert {"Deployment", "Service", "ConfigMap", "ScaledObject"} <= set(kinds)
    assert "StatefulSet" not in kinds  # the broker and the database are external


def test_the_schema_check_catches_a_broken_manifest() -> None:
    deployment = next(d for d in manifests() if d["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["prt"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)
    scaled = next(d for d in manifests() if d["kind"] == "ScaledObject")
    del scaled["spec"]["triggers"][0]["metadata"]["queueName"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(scaled, KEDA_SCHEMA)


def test_kustomization_lists_every_manifest() -> None:
    (kustomization,) = _documents(DEPLOY / "k8s" / "kustomization.yaml")
    files = {path.name for path in (DEPLOY / "k8s").glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(kustomization["resources"]) == sorted(files)


def test_every_deployment_has_probes_limits_and_a_real_command(catalog: Catalog) -> None:
    parser = _parser()
    for name, container in _containers():
        parser.parse_args(container["args"])
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            port = container[probe]["httpGet"]["port"]
            assert port in {p["name"] for p in container["ports"]}, (name, probe)
        assert {"cpu", "memory"} <= set(container["resources"]["limits"]), name
    scaled = {
        d["spec"]["scaleTargetRef"]["name"]: d for d in manifests() if d["kind"] == "ScaledObject"
    }
    for department in REAL_ADAPTERS:
        queue = scaled[f"adapter-{department.replace('_', '-')}"]["spec"]["triggers"][0]
        assert queue["metadata"]["queueName"] == f"lianban.dept.{department}"


def test_compose_runs_every_role_and_every_department_with_real_subcommands(
    catalog: Catalog,
) -> None:
    parser = _parser()
    services = _lianban_services()
    commands = [service["command"] for service in services.values()]
    for command in commands:
        parser.parse_args(command)
    assert {"serve", "relay", "correlate"} <= {command[0] for command in commands}
    adapters = {command[1] for command in commands if command[0] == "adapter"}
    assert adapters == set(catalog.serving_departments())  # no department's queue unread
    simulators = {command[1] for command in commands if command[0] == "simulator"}
    assert simulators == set(REAL_ADAPTERS)
    for name, service in compose()["services"].items():
        assert set(service.get("depends_on", {})) <= set(compose()["services"]), name


def test_compose_variables_are_the_ones_make_secrets_writes(catalog: Catalog) -> None:
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", (DEPLOY / "docker-compose.yml").read_text()))
    signers = ["router", *catalog.serving_departments()]
    written = {"LIANBAN_UID", "RABBITMQ_ERLANG_COOKIE", "POSTGRES_PASSWORD"}
    written |= {f"BROKER_PASSWORD_{signer.upper()}" for signer in signers}
    assert used == written
    script = (DEPLOY / "make-secrets.sh").read_text()
    assert all(f'echo "{name}=' in script for name in written if "BROKER" not in name)


def _set_variables() -> dict[str, str]:
    """Every LIANBAN_* variable the deployment files set, with where."""
    found: dict[str, str] = {}
    for service in compose()["services"].values():
        for name in service.get("environment", {}):
            found[name] = "docker-compose.yml"
    for document in manifests():
        if document["kind"] == "ConfigMap":
            found |= {name: "k8s ConfigMap" for name in document["data"]}
    for name, container in _containers():
        found |= {variable["name"]: f"k8s {name}" for variable in container.get("env", [])}
    for path in (DEPLOY / "systemd").glob("*.env"):
        for line in path.read_text().splitlines():
            if line and not line.startswith("#"):
                found[line.split("=", 1)[0]] = path.name
    return {name: where for name, where in found.items() if name.startswith("LIANBAN_")}


def test_every_setting_the_deployment_sets_is_declared() -> None:
    declared = {name for name, _default, _description in variables()}
    for name, where in _set_variables().items():
        # Department endpoints are read by pattern (adapters.registry.endpoint_of).
        read = name in declared or re.fullmatch(r"LIANBAN_ADAPTER_[A-Z_]+_URL", name)
        assert read, f"{where} sets {name}, which lianban/settings.py does not declare"


def test_systemd_units_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        _missing("systemd-analyze")
    lianban = Path(sys.executable).with_name("lianban")
    parser = _parser()
    for unit in sorted((DEPLOY / "systemd").glob("*.service")):
        text = unit.read_text()
        (command,) = re.findall(r"^ExecStart=/opt/lianban/venv/bin/lianban (.+)$", text, re.M)
        parser.parse_args(command.replace("%i", "police").split())
        # Verified as installed, with the binary where this checkout has it.
        copy = tmp_path / unit.name
        copy.write_text(text.replace("/opt/lianban/venv/bin/lianban", str(lianban)))
        result = subprocess.run(
            [analyze, "verify", "--man=no", str(copy)], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0 and not result.stderr.strip(), (unit.name, result.stderr)


def test_alert_rules_parse_and_use_exported_metrics() -> None:
    exported = {metric.name for metric in METRICS}
    exported |= {f"{m.name}_{suffix}" for m in METRICS for suffix in ("bucket", "sum", "count")}
    runbook = (ROOT / "docs" / "operations.md").read_text()
    anchors = {_anchor(title) for title in re.findall(r"^#+ (.+)$", runbook, re.M)}
    (rules_file,) = _documents(DEPLOY / "prometheus" / "alerts.yml")
    rules = [rule for group in rules_file["groups"] for rule in group["rules"]]
    assert len({rule["alert"] for rule in rules}) == len(rules)
    for rule in rules:
        names: list[str] = []

        def collect(node: object, names: list[str] = names) -> None:
            if isinstance(node, promql_parser.VectorSelector):
                names.append(node.name)

        promql_parser.walk(promql_parser.parse(rule["expr"]), collect)
        if "for" in rule:
            promql_parser.parse_duration(rule["for"])
        unknown = {n for n in names if n.startswith("lianban_")} - exported
        assert not unknown, f"{rule['alert']} uses metrics nobody exports: {unknown}"
        assert rule["labels"]["severity"] in ("critical", "warning")
        assert rule["annotations"]["summary"]
        page, anchor = rule["annotations"]["runbook_url"].split("#")
        assert page == "docs/operations.md" and anchor in anchors, rule["alert"]


def test_a_broken_alert_expression_is_caught() -> None:
    with pytest.raises(ValueError):
        promql_parser.parse("sum by (queue) (lianban_dead_letters > 0")


def _missing(tool: str) -> NoReturn:
    """Skip on a developer's machine; on CI a missing tool fails, so green means checked."""
    if os.environ.get("CI"):
        pytest.fail(f"{tool} is missing on CI")
    pytest.skip(f"{tool} is not installed")


def _anchor(title: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def test_rabbitmq_conf_uses_only_settings_the_broker_knows() -> None:
    """Every key of deploy/rabbitmq/rabbitmq.conf is one of the installed RabbitMQ's
    configuration schema (cuttlefish mappings; `$name` stands for one key segment)."""
    schemas = list(RABBITMQ_PLUGINS.glob("rabbitmq_server-*/plugins/*/priv/schema/*.schema"))
    if not schemas:
        _missing("RabbitMQ's configuration schemas")
    mappings = {
        re.sub(r"\\\$[^.]+", r"[^.]+", re.escape(key))
        for schema in schemas
        for key in re.findall(r'\{mapping,\s*"([^"]+)"', schema.read_text(errors="replace"))
    }
    conf = (DEPLOY / "rabbitmq" / "rabbitmq.conf").read_text()
    keys = [
        line.split("=")[0].strip() for line in conf.splitlines() if "=" in line and line[0] != "#"
    ]
    assert "cluster_formation.classic_config.nodes.3" in keys

    def known(key: str) -> bool:
        return any(re.fullmatch(mapping, key) for mapping in mappings)

    assert not known("cluster_formation.classic_config.nodez.1")  # a typo is caught
    assert [key for key in keys if not known(key)] == []
