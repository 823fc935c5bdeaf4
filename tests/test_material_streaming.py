"""A material as large as an upload may be (50 MiB) goes to the medical insurance
platform without swelling the adapter: the adapter runs in a process of its own against
the simulator over loopback HTTP, its peak resident memory (VmHWM) stays under the
150 MiB budget, and the platform receives exactly the stored bytes. Before streaming, the
material was read whole and sent base64 inside the JSON filing (124 → 438 MiB)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

from adapters.medical_insurance.received import ReceivedFiles
from adapters.medical_insurance.simulator import create_app
from adapters.simulators.base import DepartmentState, SimulatorServer
from adapters.testing.dispatches import dispatch_for
from contracts.application import MAX_MATERIAL_BYTES, MaterialRef
from contracts.samples import minimal_pdf
from runtime.storage.local import LocalMaterialStore

PEAK_BUDGET_BYTES = 150 * 1024 * 1024
DEPARTMENT = "medical_insurance"
SERVICE = "resident_medical_insurance_enrolment"

# The adapter's process: runs one dispatch as the worker does, then reports its outcome
# and its peak resident memory (the kernel's high-water mark, in kB).
ADAPTER_PROCESS = """
import asyncio, json, sys
from pathlib import Path
from adapters.medical_insurance import MedicalInsuranceAdapter
from adapters.runner import AdapterRunner
from contracts.messages import ItemDispatch
from runtime.storage.local import LocalMaterialStore

endpoint, store, dispatch_file = sys.argv[1:]

def peak_kib():
    status = Path("/proc/self/status").read_text()
    return int(next(l for l in status.splitlines() if l.startswith("VmHWM:")).split()[1])

async def run():
    dispatch = ItemDispatch.model_validate_json(Path(dispatch_file).read_text())
    runner = AdapterRunner(MedicalInsuranceAdapter(endpoint), LocalMaterialStore(Path(store)))
    before = peak_kib()

    async def report(result):
        pass

    try:
        outcome = await runner.run(dispatch, 1, report)
    finally:
        await runner.aclose()
    print(json.dumps({"outcome": type(outcome).__name__, "before_kib": before,
                      "peak_kib": peak_kib()}))

asyncio.run(run())
"""


def test_a_50_mib_material_streams_to_the_department_within_the_memory_budget(
    tmp_path: Path,
) -> None:
    store = LocalMaterialStore(tmp_path / "materials")
    pdf = minimal_pdf("一件事材料（大）", padding=b"\0" * (MAX_MATERIAL_BYTES - 1024))
    assert MAX_MATERIAL_BYTES - 1024 < len(pdf) <= MAX_MATERIAL_BYTES
    ref = MaterialRef(
        name="身份证明材料",
        sha256=hashlib.sha256(pdf).hexdigest(),
        size=len(pdf),
        media_type="application/pdf",
        file_name="big.pdf",
    )
    store.put(ref.sha256, pdf, ref.media_type)
    del pdf
    dispatch = dispatch_for(SERVICE, department=DEPARTMENT).model_copy(update={"materials": (ref,)})
    dispatch_file = tmp_path / "dispatch.json"
    dispatch_file.write_text(dispatch.model_dump_json())
    state = DepartmentState(code=DEPARTMENT, decision_delay=0.05)
    received = ReceivedFiles(tmp_path / "received")

    with SimulatorServer(create_app(state, received), state) as server:
        finished = subprocess.run(
            [
                sys.executable,
                "-c",
                ADAPTER_PROCESS,
                server.url,
                str(tmp_path / "materials"),
                str(dispatch_file),
            ],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    assert finished.returncode == 0, finished.stderr[-3000:]
    report = json.loads(finished.stdout.strip().splitlines()[-1])
    print(f"adapter VmHWM: {report['before_kib']} kB before the item, {report['peak_kib']} kB peak")
    assert report["outcome"] == "Decided"
    assert report["peak_kib"] * 1024 < PEAK_BUDGET_BYTES
    with received.path(ref.sha256).open("rb") as file:
        assert hashlib.file_digest(file, "sha256").hexdigest() == ref.sha256
    (filing,) = state.filings.values()
    assert filing.payload["materials"][0]["size"] == ref.size
