"""The processes start from the environment the Kubernetes manifests give them.

Each Deployment's environment is assembled as the kubelet would: its ConfigMap, its
literal variables, its Secrets, and its mounted files. Only what names the outside world
is substituted — Secret values (the test's database and vhost, fresh keys), mount paths
(files in a temporary directory), listening ports (free ones), the S3 bucket (a local
directory) and the OTLP collector (a closed loopback port). Each process must become
ready on its readiness probe, and stop with status 0 on SIGTERM, as the kubelet stops it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from harness import TEST_API_TOKEN, eventually, free_port
from test_deploy import manifests

from runtime.messaging.signing import new_key

LIANBAN = Path(sys.executable).with_name("lianban")
# Which variable sets the port a probe names, by the container port in the manifest.
PORT_VARIABLES = {8400: "LIANBAN_PORT", 8401: "LIANBAN_HEALTH_PORT", 9400: "LIANBAN_METRICS_PORT"}


@dataclass
class Pod:
    name: str
    args: list[str]
    env: dict[str, str]
    ready_url: str


def _deployments() -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in manifests() if d["kind"] == "Deployment"}


def _config_map() -> dict[str, str]:
    (config,) = [d for d in manifests() if d["kind"] == "ConfigMap"]
    data: dict[str, str] = config["data"]
    return data


def pod(
    deployment: dict[str, Any], secrets: dict[str, dict[str, str]], files: dict[str, Path]
) -> Pod:
    """The process a replica of `deployment` runs, as described above."""
    spec = deployment["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    env = dict(_config_map())
    for source in container["envFrom"]:
        if "secretRef" in source:
            env |= secrets[source["secretRef"]["name"]]
    for variable in container["env"]:
        if "value" in variable:
            env[variable["name"]] = variable["value"]
        else:
            ref = variable["valueFrom"]["secretKeyRef"]
            env[variable["name"]] = secrets[ref["name"]][ref["key"]]
    # A mounted volume's files live in a directory of the test's.
    volumes = {volume["name"]: volume for volume in spec["volumes"]}
    for mount in container["volumeMounts"]:
        volume = volumes[mount["name"]]
        source = volume.get("secret", {}).get("secretName") or volume.get("configMap", {}).get(
            "name"
        )
        for name, value in env.items():
            if source and value.startswith(mount["mountPath"]):
                env[name] = str(files[source]) + value.removeprefix(mount["mountPath"])
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    for variable in PORT_VARIABLES.values():
        if variable in env:
            env[variable] = str(free_port())
    for host in ("LIANBAN_HOST", "LIANBAN_HEALTH_HOST", "LIANBAN_METRICS_HOST"):
        if host in env:
            env[host] = "127.0.0.1"
    if "LIANBAN_OUTBOUND_HOSTS" in env:
        # The department systems stand in on loopback: allowed as their real hosts are.
        env["LIANBAN_OUTBOUND_HOSTS"] += ",127.0.0.1"
    env["LIANBAN_MATERIALS_URL"] = files["materials"].as_uri()
    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{free_port()}"
    probe = container["readinessProbe"]["httpGet"]
    port = env[PORT_VARIABLES[ports[probe["port"]]]]
    return Pod(
        deployment["metadata"]["name"],
        container["args"],
        env,
        f"http://127.0.0.1:{port}{probe['path']}",
    )


@contextmanager
def started(pod: Pod, logs: Path) -> Iterator[subprocess.Popen[bytes]]:
    environment = {"PATH": os.environ["PATH"], **pod.env}
    with (logs / f"{pod.name}.log").open("wb") as log:
        process = subprocess.Popen([str(LIANBAN), *pod.args], env=environment, stderr=log)
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


def wait_ready(pod: Pod, process: subprocess.Popen[bytes], logs: Path) -> None:
    def ready() -> bool:
        if process.poll() is not None:
            log = (logs / f"{pod.name}.log").read_text()[-3000:]
            raise AssertionError(f"{pod.name} exited with {process.returncode}:\n{log}")
        try:
            return httpx.get(pod.ready_url, timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    eventually(
        ready,
        timeout=180,  # imports and migrations on a loaded machine
        every=0.5,
        message=f"{pod.name} never became ready at {pod.ready_url}",
    )


@pytest.mark.connected
def test_every_role_starts_from_the_manifests_environment_and_stops_on_sigterm(
    postgres_url: str, amqp_url: str, tmp_path: Path
) -> None:
    files = {name: tmp_path / name for name in ("materials", "trusted-keys", "logs")}
    trusted = []
    for signer in ("router", "police"):
        files[f"lianban-key-{signer}"] = tmp_path / f"key-{signer}"
        files[f"lianban-key-{signer}"].mkdir()
        pem, entry = new_key(signer)
        (files[f"lianban-key-{signer}"] / f"{signer}.pem").write_bytes(pem)
        trusted.append(entry.as_json())
    for directory in ("materials", "trusted-keys", "logs"):
        files[directory].mkdir()
    (files["trusted-keys"] / "trusted-keys.json").write_text(json.dumps(trusted))
    files["lianban-trusted-keys"] = files["trusted-keys"]
    files["lianban-tokens"] = tmp_path / "tokens"
    files["lianban-tokens"].mkdir()
    (files["lianban-tokens"] / "tokens.json").write_text(json.dumps([TEST_API_TOKEN.as_json()]))
    secrets = {
        "lianban-database": {"url": postgres_url},
        "lianban-broker-router": {"url": amqp_url},
        "lianban-broker-police": {"url": amqp_url},
        "lianban-s3": {"AWS_ACCESS_KEY_ID": "unused", "AWS_SECRET_ACCESS_KEY": "unused"},
        "lianban-department-endpoints": {"police": f"http://127.0.0.1:{free_port()}"},
    }
    deployments = _deployments()
    pods = [pod(deployments[name], secrets, files) for name in ("serve", "relay", "correlate")]
    logs = files["logs"]
    with ExitStack() as running:
        # The router's processes migrate and declare the topology; started together, they
        # share one migration (an advisory lock).
        processes = [running.enter_context(started(p, logs)) for p in pods]
        for router_pod, process in zip(pods, processes, strict=True):
            wait_ready(router_pod, process, logs)
        # An adapter declares nothing: it consumes the queue the router declared.
        adapter = pod(deployments["adapter-police"], secrets, files)
        assert "LIANBAN_DATABASE_URL" not in adapter.env
        pods.append(adapter)
        processes.append(running.enter_context(started(adapter, logs)))
        wait_ready(adapter, processes[-1], logs)
        for process in processes:
            process.send_signal(signal.SIGTERM)
        codes = {
            p.name: process.wait(timeout=60) for p, process in zip(pods, processes, strict=True)
        }
    assert codes == {"serve": 0, "relay": 0, "correlate": 0, "adapter-police": 0}
