"""A long-running process (`lianban serve`, `relay`, `correlate`, `router`, `adapter`, all
waiting in `AdapterProcess.wait`) freezes what start-up left, so its collections under
load never traverse the imported modules again, and collects its youngest generation
less often than CPython's default."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from lianban.adapter_process import YOUNG_COLLECTION_THRESHOLD

# The garbage collector is process-wide: the process under test is a child of its own.
WAITING_PROCESS = """
import gc, json, sys, threading
from lianban.adapter_process import AdapterProcess
from lianban.settings import Settings

process = AdapterProcess(Settings(broker_url="memory://", materials_dir=sys.argv[1]), [], [])
process.start()
started = gc.get_freeze_count(), gc.get_threshold()[0]
threading.Timer(0.2, process.stop).start()
process.wait()
print(json.dumps({"started": started, "waited": (gc.get_freeze_count(), gc.get_threshold()[0])}))
"""


def test_a_process_waiting_to_stop_has_frozen_its_start_up_objects(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-c", WAITING_PROCESS, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    states = json.loads(run.stdout.splitlines()[-1])

    frozen_at_start, threshold_at_start = states["started"]
    frozen, threshold = states["waited"]
    assert frozen_at_start == 0
    assert frozen > 10_000  # the interpreter, the messaging runtime and the contracts
    assert threshold_at_start != YOUNG_COLLECTION_THRESHOLD
    assert threshold == YOUNG_COLLECTION_THRESHOLD
