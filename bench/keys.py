"""Signing keys for a set of processes, as an operator provisions them: importable
without the benchmark's own dependencies (the tests start processes with them too)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from runtime.messaging.signing import ROUTER_SIGNER, new_key


def signing_keys(workdir: Path, departments: Iterable[str]) -> dict[str, str]:
    """A signing key for the router and each department, all trusted, as an operator
    provisions them (one directory serves every process here)."""
    keys = workdir / "keys"
    keys.mkdir(exist_ok=True)
    trusted = []
    for signer in (ROUTER_SIGNER, *departments):
        pem, entry = new_key(signer)
        (keys / f"{signer}.pem").write_bytes(pem)
        trusted.append(entry.as_json())
    (workdir / "trusted.json").write_text(json.dumps(trusted))
    return {
        "LIANBAN_SIGNING_KEYS_DIR": str(keys),
        "LIANBAN_TRUSTED_KEYS": str(workdir / "trusted.json"),
    }
