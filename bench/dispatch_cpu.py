"""One department process's CPU per dispatch, A/B between source trees:

    python -m bench.dispatch_cpu --tree /path/to/base --tree . --rounds 3 [--profile DIR]

For each round and each tree in turn: `python -m bench.department police` (the process
`bench.cpu` runs, its modules taken from that tree) on a vhost of its own, fed N signed
birth-registration dispatches at a fixed rate while a `ConsumerLoop` here takes its
outcomes. Prints the department process's CPU (user + system, /proc) per dispatch, from
the first to the last measured outcome, beside the load average. With `--profile`, the
first round of each tree also runs `py-spy record --gil --format raw` on the process.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.environment import AMQP_HOST, CLOCK_TICKS, VENV_BIN, wait_until
from bench.keys import signing_keys
from bench.messaging import (
    DEPARTMENT,
    WARM_UP,
    Outcomes,
    dispatches,
    fresh_vhost,
    running,
    signed,
)
from bench.phases import load_average
from contracts import topology
from contracts.catalog import default_catalog
from runtime.messaging import Broker, Publisher
from runtime.messaging.declaration import declare_topology
from runtime.messaging.signing import Keyring


def measure(
    tree: Path, messages: int, rate: float, profile: Path | None, callgrind: Path | None = None
) -> tuple[float, float]:
    """The department process's user and system CPU seconds per dispatch, running `tree`'s
    code; with `callgrind`, under callgrind, counting only while the dispatches are fed."""
    catalog = default_catalog()
    outcomes = Outcomes(messages)
    patience = 20 if callgrind else 1  # callgrind runs some fifty times slower
    with fresh_vhost() as vhost, tempfile.TemporaryDirectory() as workdir:
        url = f"amqp://guest:guest@{AMQP_HOST}/{vhost}"
        keys = signing_keys(Path(workdir), catalog.departments)
        keyring = Keyring.load(
            Path(keys["LIANBAN_SIGNING_KEYS_DIR"]), Path(keys["LIANBAN_TRUSTED_KEYS"])
        )
        outgoing = [signed(keyring, dispatch) for dispatch in dispatches(WARM_UP + messages)]
        broker = Broker(url)
        with broker.connect() as connection:
            declare_topology(connection, catalog.departments)
        env = {
            **os.environ,
            **keys,
            "PYTHONPATH": str(tree),
            "PYTHONDONTWRITEBYTECODE": "1",
            "LIANBAN_BROKER_URL": url,
            "LIANBAN_LOG_LEVEL": "warning",
        }
        with open(Path(workdir) / "department.log", "wb") as log:
            department = subprocess.Popen(
                [
                    *_callgrind_command(callgrind),
                    sys.executable,
                    "-m",
                    "bench.department",
                    DEPARTMENT,
                ],
                env=env,
                cwd=tree,  # `-m` puts the working directory first on sys.path
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        collector = outcomes.collector(broker)
        try:
            with Publisher(broker) as producer, running("collector", collector.run):
                assert collector.ready.wait(30)
                wait_until(lambda: _consumed(broker, department), 60 * patience, "the department")
                producer.publish_many(outgoing[:WARM_UP])
                if not outcomes.warmed_up.wait(30 * patience):
                    raise SystemExit("the warm-up's outcomes did not come back")
                spy = _py_spy(department.pid, profile, messages / rate + 5) if profile else None
                if callgrind:
                    _callgrind_control("--instr=on", department.pid)
                before, start = _user_and_system(department.pid), time.monotonic()
                for sent in range(messages):
                    time.sleep(max(0.0, start + sent / rate - time.monotonic()))
                    producer.publish(outgoing[WARM_UP + sent])
                if not outcomes.done.wait(60 * patience):
                    raise SystemExit(f"only {outcomes.count} of {messages} outcomes came back")
                after = _user_and_system(department.pid)
                if callgrind:
                    _callgrind_control("--instr=off", department.pid)
                    _callgrind_control("--dump", department.pid)
                if spy is not None:
                    spy.wait()
        finally:
            department.terminate()
            department.wait(15 * patience)
    return (after[0] - before[0]) / messages, (after[1] - before[1]) / messages


def _user_and_system(pid: int) -> tuple[float, float]:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLOCK_TICKS, int(fields[12]) / CLOCK_TICKS


def _consumed(broker: Broker, department: subprocess.Popen[bytes]) -> bool:
    if department.poll() is not None:
        raise SystemExit(f"the department process exited with {department.returncode}")
    with broker.connect() as connection:
        queue = topology.department_queue(DEPARTMENT)
        return bool(connection.default_channel.queue_declare(queue, passive=True).consumer_count)


def _callgrind_command(output: Path | None) -> list[str]:
    if output is None:
        return []
    output.parent.mkdir(parents=True, exist_ok=True)
    return ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={output}"]


def _callgrind_control(option: str, pid: int) -> None:
    subprocess.run(["callgrind_control", option, str(pid)], check=True, capture_output=True)


def _py_spy(pid: int, profile: Path, seconds: float) -> subprocess.Popen[bytes]:
    profile.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [
            str(VENV_BIN / "py-spy"),
            "record",
            "--gil",
            "--format",
            "raw",
            "--rate",
            "1000",
            "--nonblocking",
            "--pid",
            str(pid),
            "--duration",
            str(int(seconds)),
            "--output",
            str(profile),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tree", type=Path, action="append", required=True)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=25.0, help="dispatches offered per second")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", type=Path, help="directory for py-spy's raw profiles")
    parser.add_argument(
        "--callgrind",
        type=Path,
        help="directory for callgrind's counts: one run per tree under callgrind instead",
    )
    args = parser.parse_args()
    if args.callgrind:
        for index, tree in enumerate(args.tree):
            output = args.callgrind / f"tree{index}.out"
            measure(tree.resolve(), args.messages, args.rate, None, output)
            print(f"callgrind {tree}: {output}", flush=True)
        return
    # Profiled runs first, each tree's once: py-spy's sampling costs the process CPU too.
    profiled = (
        [
            (f"profiled {tree}", tree, args.profile / f"tree{index}.txt")
            for index, tree in enumerate(args.tree)
        ]
        if args.profile
        else []
    )
    rounds = [
        (f"round {number + 1} {tree}", tree, None)
        for number in range(args.rounds)
        for tree in args.tree
    ]
    for label, tree, profile in [*profiled, *rounds]:
        user, system = measure(tree.resolve(), args.messages, args.rate, profile)
        print(
            f"{label}: {1000 * (user + system):.3f} ms CPU per dispatch "
            f"(user {1000 * user:.3f}, system {1000 * system:.3f}) "
            f"({args.messages} at {args.rate}/s), load average {load_average()}",
            flush=True,
        )


if __name__ == "__main__":
    main()
