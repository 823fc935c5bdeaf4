"""`lianban`: run the roles, the embedded demo, and look at the catalog."""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import json
import signal
import sys
import threading
from datetime import timedelta
from pathlib import Path

from adapters.registry import adapter_for, simulate_every_department
from adapters.scaffold import scaffold
from adapters.simulated import Scenario
from contracts.catalog import BundleType, default_catalog, dependency_order
from contracts.errors import LianbanError
from lianban.schemas import export, stale_documents
from lianban.settings import Settings, open_database
from lianban.stack import Role, Stack
from router.domain.views import bundle_status, find_bundle
from router.http.auth import Scope, mint
from router.operations.broker_definitions import (
    DEFAULT_VHOST,
    DEFINITIONS_FILE,
    definitions,
    is_current,
    render,
)
from router.operations.dlq import DeadLetterQueues
from router.operations.queues import (
    ManagementApi,
    department_queues,
    format_table,
    oldest_unanswered_dispatches,
)
from router.store import audit, audit_chain
from runtime.logs import configure_logging
from runtime.messaging import Broker
from runtime.messaging.signing import new_key
from runtime.serving import ThreadedServer
from runtime.tracing import configure_tracing


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except LianbanError as error:
        print(f"lianban: {error}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lianban", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="command")

    for role, text in (
        (Role.SERVE, "the intake API"),
        (Role.RELAY, "the outbox relay"),
        (Role.CORRELATE, "the correlator"),
    ):
        command = commands.add_parser(role.value, help=f"run {text}")
        command.set_defaults(run=lambda args, role=role: _run_roles(args, {role}))

    run_all = commands.add_parser("run-all", help="run every role and simulated departments")
    run_all.set_defaults(run=lambda args: _run_roles(args, set(Role), simulate_all=True))

    adapter = commands.add_parser(
        "adapter",
        help="run one department's adapter, or `adapter new <department>` to scaffold one",
    )
    adapter.add_argument("department", help="the department to run, or `new`")
    adapter.add_argument("new_department", nargs="?", help="with `new`: the one to scaffold")
    adapter.add_argument(
        "--into", type=Path, default=Path("."), help="with `new`: where to write the package"
    )
    kind = adapter.add_mutually_exclusive_group()
    kind.add_argument("--simulated", action="store_true", help="run the simulator instead")
    kind.add_argument(
        "--manual", action="store_true", help="file into the manual work queue (no system yet)"
    )
    adapter.add_argument("--scenario", type=Path, help="YAML scenario for the simulator")
    adapter.set_defaults(run=_run_adapter)

    simulator = commands.add_parser(
        "simulator",
        help="serve a department system's simulator (lianban.simulators) on LIANBAN_HOST:PORT",
    )
    simulator.add_argument("department")
    simulator.set_defaults(run=_run_simulator)

    demo = commands.add_parser("demo", help="embedded end-to-end demo, no server needed")
    demo.set_defaults(run=_run_demo)

    catalog = commands.add_parser("catalog", help="list or show the bundle catalog")
    catalog_commands = catalog.add_subparsers(required=True, metavar="action")
    catalog_commands.add_parser("list", help="every bundle type").set_defaults(run=_catalog_list)
    show = catalog_commands.add_parser("show", help="one bundle type as an ordered tree")
    show.add_argument("bundle_type")
    show.set_defaults(run=_catalog_show)

    queues = commands.add_parser(
        "queues",
        help="per department: ready and unacknowledged messages, consumers, oldest message "
        "age, dead letters (RabbitMQ management API)",
    )
    queues.add_argument("--json", action="store_true", help="one JSON object per department")
    queues.set_defaults(run=_queues)

    dlq = commands.add_parser("dlq", help="dead letters: list, show, replay")
    dlq_commands = dlq.add_subparsers(required=True, metavar="action")
    dlq_list = dlq_commands.add_parser("list", help="what rests in the parking lots, and why")
    dlq_list.add_argument("--queue", help="one parking lot (default: all)")
    dlq_list.add_argument("--limit", type=int, default=50)
    dlq_list.add_argument("--json", action="store_true", help="one JSON object per message")
    dlq_list.set_defaults(run=_dlq_list)
    dlq_show = dlq_commands.add_parser("show", help="one dead letter, with its body")
    dlq_show.add_argument("message_id")
    dlq_show.set_defaults(run=_dlq_show)
    dlq_replay = dlq_commands.add_parser(
        "replay", help="send dead letters back to the queue they came from"
    )
    dlq_replay.add_argument("queue", help="the parking lot, e.g. lianban.dept.police.parking")
    dlq_replay.add_argument(
        "--message-id", action="append", dest="message_ids", help="only these (repeatable)"
    )
    dlq_replay.set_defaults(run=_dlq_replay)

    bundle = commands.add_parser("bundle", help="look at one bundle")
    bundle_commands = bundle.add_subparsers(required=True, metavar="action")
    show_bundle = bundle_commands.add_parser("show", help="its items and full timeline")
    show_bundle.add_argument("bundle", help="bundle id or case number (办件编号)")
    show_bundle.set_defaults(run=_bundle_show)

    token = commands.add_parser("token", help="API tokens")
    token_commands = token.add_subparsers(required=True, metavar="action")
    new_token = token_commands.add_parser(
        "new", help="mint a token: print it once, and the entry for LIANBAN_TOKENS_FILE"
    )
    new_token.add_argument("name", help="who holds it, e.g. the platform or a staff member")
    new_token.add_argument(
        "--scope",
        action="append",
        required=True,
        help=f"repeatable: {', '.join(Scope)}, or manual:<department>",
    )
    new_token.add_argument("--days", type=int, help="valid for this many days (default: forever)")
    new_token.set_defaults(run=_token_new)

    keys = commands.add_parser("keys", help="message signing keys (Ed25519)")
    keys_commands = keys.add_subparsers(required=True, metavar="action")
    new_key_command = keys_commands.add_parser(
        "new", help="write a signing key to <signer>.pem; print the entry verifiers trust"
    )
    new_key_command.add_argument("signer", help="`router` or a department code")
    new_key_command.add_argument(
        "--into", type=Path, default=Path("."), help="directory (LIANBAN_SIGNING_KEYS_DIR)"
    )
    new_key_command.set_defaults(run=_keys_new)

    broker = commands.add_parser("broker", help="RabbitMQ definitions: vhost, topology, users")
    broker_commands = broker.add_subparsers(required=True, metavar="action")
    write_definitions = broker_commands.add_parser(
        "definitions", help="regenerate deploy/rabbitmq/definitions.json (or --out)"
    )
    write_definitions.add_argument("--vhost", default=DEFAULT_VHOST)
    write_definitions.add_argument(
        "--passwords", type=Path, help="JSON {user: password}: store their salted hashes"
    )
    write_definitions.add_argument("--out", type=Path, default=DEFINITIONS_FILE)
    write_definitions.set_defaults(run=_broker_definitions)
    broker_commands.add_parser(
        "check", help="fail if deploy/rabbitmq/definitions.json is stale"
    ).set_defaults(run=_broker_check)

    audit = commands.add_parser("audit", help="the tamper-evident audit log")
    audit_commands = audit.add_subparsers(required=True, metavar="action")
    audit_commands.add_parser(
        "verify", help="check the hash chain; exit 1 naming the first bad record"
    ).set_defaults(run=_audit_verify)
    audit_commands.add_parser(
        "head", help="print the chain's head as JSON, to anchor it outside the database"
    ).set_defaults(run=_audit_head)
    audit_commands.add_parser(
        "prune", help="delete records past LIANBAN_AUDIT_RETENTION_DAYS, keeping an anchor"
    ).set_defaults(run=_audit_prune)

    schemas = commands.add_parser("schemas", help="JSON Schema, OpenAPI and AsyncAPI documents")
    schemas_commands = schemas.add_subparsers(required=True, metavar="action")
    schemas_commands.add_parser("export", help="regenerate contracts/schemas/").set_defaults(
        run=_schemas_export
    )
    schemas_commands.add_parser("check", help="fail if they are stale").set_defaults(
        run=_schemas_check
    )
    return parser


def _queues(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    api = ManagementApi.for_broker(settings.broker_url, settings.rabbitmq_management_url)
    database = open_database(settings)
    try:
        with database.transaction() as session:
            oldest = oldest_unanswered_dispatches(session)
    finally:
        database.dispose()
    rows = department_queues(api, default_catalog().departments, oldest)
    if args.json:
        for row in rows:
            print(json.dumps(dataclasses.asdict(row)))
        return 0
    for line in format_table(rows):
        print(line)
    print("oldest: age of the oldest dispatch the department has not answered, while its queue")
    print("        holds messages (quorum queues keep no head-message timestamp)")
    return 0


def _dead_letters() -> DeadLetterQueues:
    return DeadLetterQueues(Broker(Settings.from_env().broker_url), default_catalog().departments)


def _dlq_list(args: argparse.Namespace) -> int:
    letters = _dead_letters().list(args.queue, args.limit)
    if args.json:
        summaries = [letter.summary().model_dump(mode="json") for letter in letters]
        print(json.dumps(summaries, ensure_ascii=False))
        return 0
    for letter in letters:
        print(
            f"{letter.queue}  {letter.message_id}  bundle {letter.bundle_id}  "
            f"×{letter.count}  {letter.reason}"
        )
    return 0


def _dlq_show(args: argparse.Namespace) -> int:
    letter = _dead_letters().find(args.message_id)
    if letter is None:
        print(f"lianban: no dead letter {args.message_id}", file=sys.stderr)
        return 1
    summary = letter.summary().model_dump(mode="json")
    summary["body"] = letter.body.decode("utf-8", "replace")
    print(json.dumps(summary, ensure_ascii=False, indent=2))
    return 0


def _dlq_replay(args: argparse.Namespace) -> int:
    ids = set(args.message_ids) if args.message_ids else None
    replayed = _dead_letters().replay(args.queue, ids)
    database = open_database(Settings.from_env())
    try:
        audit.record_alone(
            database,
            actor=f"{getpass.getuser()} (lianban dlq)",
            event=audit.AuditEvent.REPLAYED,
            outcome=f"{replayed} replayed",
            detail=f"{args.queue}: {', '.join(sorted(ids)) if ids else 'all'}",
        )
    finally:
        database.dispose()
    print(f"replayed {replayed} message(s) from {args.queue}")
    return 0


def _bundle_show(args: argparse.Namespace) -> int:
    database = open_database(Settings.from_env())
    try:
        with database.transaction() as session:
            bundle_id = find_bundle(session, args.bundle)
            status = bundle_status(session, bundle_id) if bundle_id else None
    finally:
        database.dispose()
    if status is None:
        print(f"lianban: no bundle {args.bundle!r}", file=sys.stderr)
        return 2
    print(f"{status.project_no}  {status.bundle_type}  {status.state}  ({status.bundle_id})")
    for item in status.items:
        reason = f" — {item.reason}" if item.reason else ""
        print(f"  {item.state.value:<21} {item.name_zh} [{item.department}]{reason}")
        for gap in item.tolerated_gaps:
            print(f"  {'':<21}   容缺：{gap.material}，{gap.due_date.isoformat()}前补交")
    print("timeline:")
    for entry in status.timeline:
        detail = f" — {entry.detail}" if entry.detail else ""
        where = entry.item or "(bundle)"
        print(f"  {entry.at.isoformat()}  {entry.state:<23} {where} by {entry.actor}{detail}")
    return 0


def _token_new(args: argparse.Namespace) -> int:
    lifetime = timedelta(days=args.days) if args.days else None
    token, entry = mint(args.name, args.scope, lifetime)
    print(f"token for {args.name} (shown once, stored nowhere): {token.get_secret_value()}")
    print("add this entry to the JSON list in LIANBAN_TOKENS_FILE:")
    print(json.dumps(entry.as_json(), ensure_ascii=False))
    return 0


def _keys_new(args: argparse.Namespace) -> int:
    path = args.into / f"{args.signer}.pem"
    if path.exists():
        print(f"lianban: {path} exists; move it aside to rotate", file=sys.stderr)
        return 2
    pem, trusted = new_key(args.signer)
    args.into.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_bytes(pem)
    print(f"wrote {path} (keep it secret); add this entry to LIANBAN_TRUSTED_KEYS:")
    print(json.dumps(trusted.as_json()))
    return 0


def _broker_definitions(args: argparse.Namespace) -> int:
    passwords = json.loads(args.passwords.read_text(encoding="utf-8")) if args.passwords else None
    document = definitions(default_catalog().departments, vhost=args.vhost, passwords=passwords)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(document), encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


def _broker_check(args: argparse.Namespace) -> int:
    if is_current(default_catalog().departments):
        return 0
    print(f"stale: {DEFINITIONS_FILE} (run `lianban broker definitions`)", file=sys.stderr)
    return 1


def _audit_verify(args: argparse.Namespace) -> int:
    database = open_database(Settings.from_env())
    try:
        result = audit_chain.verify(database)
    finally:
        database.dispose()
    if not result.ok:
        where = f"record id={result.bad_record}" if result.bad_record else "the chain's end"
        print(f"lianban: audit log does not verify at {where}: {result.problem}", file=sys.stderr)
        return 1
    print(
        f"audit log verified: {result.records} records up to seq {result.head_seq}, "
        f"head {result.head_hash}; {result.unsealed} not sealed yet"
    )
    return 0


def _audit_head(args: argparse.Namespace) -> int:
    database = open_database(Settings.from_env())
    try:
        audit_chain.seal_pending(database)
        head = audit_chain.head(database)
    finally:
        database.dispose()
    print(json.dumps(head))
    return 0


def _audit_prune(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    retention = audit_chain.retention_from_days(settings.audit_retention_days)
    database = open_database(settings)
    try:
        audit_chain.seal_pending(database)
        deleted = audit_chain.prune(database, retention)
    finally:
        database.dispose()
    print(f"pruned {deleted} audit records older than {retention.days} days")
    return 0


def _schemas_export(args: argparse.Namespace) -> int:
    for path in export(default_catalog()):
        print(f"wrote {path}")
    return 0


def _schemas_check(args: argparse.Namespace) -> int:
    stale = stale_documents(default_catalog())
    for name in stale:
        print(f"stale: contracts/schemas/{name} (run `make schemas`)", file=sys.stderr)
    return 1 if stale else 0


def _run_roles(args: argparse.Namespace, roles: set[Role], simulate_all: bool = False) -> int:
    settings = Settings.from_env()
    configure_logging(settings.log_level)
    configure_tracing("lianban-" + "-".join(sorted(roles)), settings.traces_exporter)
    catalog = default_catalog()
    adapters = simulate_every_department(catalog) if simulate_all else []
    stack = Stack(settings, catalog, roles, adapters)
    _stop_gracefully_on_sigterm()
    stack.start()
    stack.wait()
    return 0


def _stop_gracefully_on_sigterm() -> None:
    """Orchestrators (systemd, Docker, Kubernetes) stop a process with SIGTERM: stop as on
    Ctrl-C, letting in-flight work finish and be acknowledged."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)


def _run_simulator(args: argparse.Namespace) -> int:
    from adapters.simulators.base import DepartmentState
    from adapters.simulators.systems import installed_simulators

    settings = Settings.from_env()
    configure_logging(settings.log_level)
    simulators = installed_simulators()
    if args.department not in simulators:
        known = ", ".join(sorted(simulators)) or "none"
        print(f"lianban: no simulator for {args.department!r} (installed: {known})")
        return 2
    app = simulators[args.department](DepartmentState(code=args.department))
    server = ThreadedServer(app, settings.host, settings.port)
    _stop_gracefully_on_sigterm()
    server.start()
    print(f"{args.department} simulator at {server.url}", flush=True)
    stop = threading.Event()
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


def _run_adapter(args: argparse.Namespace) -> int:
    if args.department == "new":
        return _scaffold(args)
    settings = Settings.from_env()
    configure_logging(settings.log_level)
    configure_tracing(f"lianban-adapter-{args.department}", settings.traces_exporter)
    catalog = default_catalog()
    scenario = Scenario.from_file(args.scenario) if args.scenario else None
    adapter = adapter_for(
        args.department,
        catalog,
        simulated=args.simulated,
        manual=args.manual,
        scenario=scenario,
    )
    stack = Stack(settings, catalog, roles=(), adapters=[adapter])
    _stop_gracefully_on_sigterm()
    stack.start()
    stack.wait()
    return 0


def _scaffold(args: argparse.Namespace) -> int:
    if not args.new_department:
        print("lianban: usage: lianban adapter new <department> [--into DIR]", file=sys.stderr)
        return 2
    department = args.new_department
    package = scaffold(department, default_catalog(), args.into)
    class_name = "".join(part.title() for part in department.split("_")) + "Adapter"
    print(f"wrote {package}/ — run its tests with: python -m pytest {package}")
    print("register it in your pyproject.toml:")
    print(
        f'  [project.entry-points."lianban.adapters"]\n  {department} = "{department}:{class_name}"'
    )
    print('  [project.entry-points."lianban.simulators"]')
    print(f'  {department} = "{department}.simulator:create_app"')
    return 0


def _run_demo(args: argparse.Namespace) -> int:
    from lianban.demo import run_demo

    return run_demo()


def _catalog_list(args: argparse.Namespace) -> int:
    catalog = default_catalog()
    for bundle_type in catalog.bundle_types.values():
        lead = catalog.departments[bundle_type.lead_department].name_zh
        print(
            f"{bundle_type.code:<40} {bundle_type.category.value:<10} "
            f"{len(bundle_type.items):>2} items  {bundle_type.name_zh}（牵头：{lead}）"
        )
    return 0


def _catalog_show(args: argparse.Namespace) -> int:
    catalog = default_catalog()
    bundle_type = catalog.bundle_types.get(args.bundle_type)
    if bundle_type is None:
        print(f"lianban: no bundle type {args.bundle_type!r}; see `lianban catalog list`")
        return 2
    print(f"{bundle_type.name_zh} ({bundle_type.code}, {bundle_type.category.value})")
    for line in catalog_tree(bundle_type, {c: d.name_zh for c, d in catalog.departments.items()}):
        print(line)
    return 0


def catalog_tree(bundle_type: BundleType, department_names: dict[str, str]) -> list[str]:
    """Items by stage: stage 1 is dispatched at once, stage n waits for stages before it.

    Each dependent names what it waits for and why, so the DAG reads top to bottom.
    """
    stage: dict[str, int] = {}
    for code in dependency_order(bundle_type):
        parents = [c for p in bundle_type.item(code).prerequisites for c in p.any_of]
        stage[code] = 1 + max((stage[c] for c in parents), default=0)
    lines: list[str] = []
    for number in sorted(set(stage.values())):
        codes = [code for code in dependency_order(bundle_type) if stage[code] == number]
        lines.append(f"stage {number}" + (" (dispatched at once)" if number == 1 else ""))
        for position, code in enumerate(codes):
            item = bundle_type.item(code)
            last = position == len(codes) - 1
            marks = " ".join(
                mark
                for mark in (
                    f"[并行:{item.parallel_group}]" if item.parallel_group else "",
                    f"[择一:{item.exclusive_group}]" if item.exclusive_group else "",
                    "[可容缺预审]" if item.pre_review else "",
                )
                if mark
            )
            lines.append(
                f"  {'└─' if last else '├─'} {item.name_zh} — "
                f"{department_names[item.department]} ({code}) {marks}".rstrip()
            )
            for prerequisite in item.prerequisites:
                lines.append(
                    f"  {'  ' if last else '│ '}   after {' | '.join(prerequisite.any_of)}: "
                    f"{prerequisite.reason}"
                )
    return lines


if __name__ == "__main__":
    sys.exit(main())
