"""`lianban`: run the roles, the embedded demo, and look at the catalog."""

# Each command imports what it runs when it runs: `lianban adapter` never loads the
# router's web framework or database layer, so an adapter process stays small.

from __future__ import annotations

import argparse
import dataclasses
import difflib
import getpass
import importlib.metadata
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import amqp.exceptions
import kombu.exceptions

from contracts.api import AlertLevel, ClockStatus, DeadlineAlert, DeliveryTrouble, HandoverStatus
from contracts.application import HandoverMethod
from contracts.catalog import (
    BundleType,
    Catalog,
    HandlingClass,
    default_catalog,
    dependency_order,
    load_catalog,
    promised_working_days,
)
from contracts.catalog.checklist import checklist, form_fields
from contracts.errors import ConfigurationError, LianbanError
from contracts.personal_data import mask_fields, mask_text
from lianban.settings import Settings, markdown_table, open_database, variables
from router.http.tokens import Scope, manual_scope, mint
from router.operations.broker_definitions import (
    DEFAULT_VHOST,
    DEFINITIONS_FILE,
    definitions,
    is_current,
    render,
)
from runtime.logs import configure_logging
from runtime.messaging import Broker
from runtime.messaging.signing import new_key
from runtime.tracing import configure_tracing
from runtime.webhooks import new_secret

if TYPE_CHECKING:
    from adapters.base import Adapter
    from router.operations.dlq import DeadLetterQueues

USAGE_ERROR = 2
# The router's roles (lianban.stack.Role), each a command of its own.
ROUTER_ROLES = {
    "serve": "the intake API",
    "relay": "the outbox relay",
    "correlate": "the correlator",
}


def main(argv: list[str] | None = None) -> int:
    """Run a command. A user's mistake (a bad setting or argument, a database or broker
    that cannot be reached) ends in one line on standard error and exit code 2, never a
    traceback; so does a closed pipe (`lianban catalog list | head`), quietly."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
        status = int(args.run(args) or 0)
        sys.stdout.flush()  # a closed pipe is found here, not at exit
        return status
    except BrokenPipeError:
        # The reader went away: nothing more to say, and nothing to flush at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        return 130
    except Exception as error:
        message = _user_mistake(error)
        if message is None:
            raise
        print(f"lianban: {message}", file=sys.stderr)
        return USAGE_ERROR


def _user_mistake(error: Exception) -> str | None:
    """What to tell the user about an error their input or setup caused; None for a bug."""
    if isinstance(error, LianbanError):
        return str(error)
    # Only a command that opened a database has SQLAlchemy loaded, and so its errors.
    database_errors = sys.modules.get("sqlalchemy.exc")
    if database_errors is not None and isinstance(
        error, database_errors.DBAPIError | database_errors.ArgumentError
    ):
        cause = str(getattr(error, "orig", None) or error).splitlines()[0]
        url = mask_text(Settings.from_env().database_url)
        return f"cannot use the database {url} ({cause}); set LIANBAN_DATABASE_URL"
    if isinstance(error, amqp.exceptions.NotFound):
        return f"the broker has no such queue ({error.reply_text}); check LIANBAN_BROKER_URL"
    if isinstance(
        error,
        ConnectionError | socket.gaierror | kombu.exceptions.OperationalError | amqp.AMQPError,
    ):
        url = mask_text(Settings.from_env().broker_url)
        return f"cannot reach the broker {url} ({error}); check LIANBAN_BROKER_URL"
    if isinstance(error, OSError) and error.filename:
        return f"{error.filename}: {error.strerror}"
    return None


class _Parser(argparse.ArgumentParser):
    """Argument mistakes in one line, naming the command's --help."""

    def error(self, message: str) -> NoReturn:
        print(f"lianban: {message} (see `{self.prog} --help`)", file=sys.stderr)
        raise SystemExit(USAGE_ERROR)


def _environment_help() -> str:
    lines = ["environment variables (`lianban config` prints their effective values):"]
    lines += [f"  {name:<36} {description}" for name, _default, description in variables()]
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="lianban",
        description=__doc__,
        epilog=_environment_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--version", action="version", version=f"lianban {importlib.metadata.version('lianban')}"
    )
    commands = parser.add_subparsers(required=True, metavar="command")

    config = commands.add_parser(
        "config", help="print the effective settings (LIANBAN_*), credentials masked"
    )
    config.add_argument(
        "--markdown", action="store_true", help="the table of every variable, for the docs"
    )
    config.set_defaults(run=_config)

    migrate = commands.add_parser(
        "migrate",
        help="bring the database schema to the newest revision (router roles do it on start)",
    )
    migrate.set_defaults(run=_migrate)

    for role, text in ROUTER_ROLES.items():
        command = commands.add_parser(role, help=f"run {text}")
        command.set_defaults(run=lambda args, role=role: _run_roles(args, {role}))

    router = commands.add_parser(
        "router",
        help="run intake, correlation and relay in one process (a small deployment); "
        "the separate roles scale out",
    )
    router.set_defaults(run=lambda args: _run_roles(args, set(ROUTER_ROLES)))

    run_all = commands.add_parser("run-all", help="run every role and simulated departments")
    run_all.set_defaults(run=lambda args: _run_roles(args, set(ROUTER_ROLES), simulate_all=True))

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
    adapter.add_argument(
        "--area",
        help="the GB/T 2260 prefix this adapter serves (as listed in LIANBAN_ADAPTER_AREAS); "
        "default: the whole province",
    )
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

    calendar = commands.add_parser("calendar", help="the working-day calendar")
    calendar_commands = calendar.add_subparsers(required=True, metavar="action")
    calendar_commands.add_parser(
        "status", help="years covered, official or provisional; warns from 1 November"
    ).set_defaults(run=_calendar_status)

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

    report = commands.add_parser(
        "report", help="the month's supervision report (通报), ranked, as CSV or XLSX"
    )
    report.add_argument("--month", required=True, help="YYYY-MM, China time (e.g. 2026-11)")
    report.add_argument(
        "--format",
        choices=("csv", "xlsx"),
        help="default: the --output file's suffix, else csv",
    )
    report.add_argument(
        "--output",
        type=Path,
        help="file to write; default: CSV on standard output, XLSX to lianban-report-<month>.xlsx",
    )
    report.set_defaults(run=_report)

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
        type=_scope,
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

    callback_secret = commands.add_parser(
        "callback-secret",
        help="write a new callback signing secret (whsec_…) to a file, for "
        "LIANBAN_CALLBACK_SECRET_FILE and the platform's verifier",
    )
    callback_secret.add_argument("file", type=Path, help="the file to create (mode 600)")
    callback_secret.set_defaults(run=_callback_secret_new)

    broker = commands.add_parser("broker", help="RabbitMQ definitions: vhost, topology, users")
    broker_commands = broker.add_subparsers(required=True, metavar="action")
    write_definitions = broker_commands.add_parser(
        "definitions", help="regenerate deploy/rabbitmq/definitions.json (or --out)"
    )
    write_definitions.add_argument("--vhost", default=DEFAULT_VHOST)
    write_definitions.add_argument(
        "--passwords", type=Path, help="JSON {user: password}: store their salted hashes"
    )
    write_definitions.add_argument(
        "--out", type=Path, help="default: the checkout's deploy/rabbitmq/definitions.json"
    )
    write_definitions.set_defaults(run=_broker_definitions)
    check_definitions = broker_commands.add_parser(
        "check", help="fail if deploy/rabbitmq/definitions.json (or --file) is stale"
    )
    check_definitions.add_argument("--file", type=Path, help="default: the checkout's file")
    check_definitions.set_defaults(run=_broker_check)

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


def _config(args: argparse.Namespace) -> int:
    if args.markdown:
        print(markdown_table(), end="")
        return 0
    for name, value in Settings.from_env().effective().items():
        print(f"{name}={value}")
    return 0


def _scope(text: str) -> str:
    """A scope a token can use: a typo would mint a token that can do nothing."""
    known = [scope.value for scope in Scope]
    known += [manual_scope(code) for code in default_catalog().departments]
    if text in known:
        return text
    close = difflib.get_close_matches(text, known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise argparse.ArgumentTypeError(
        f"unknown scope {text!r}; {hint}scopes: {', '.join(Scope)}, manual:<department>"
    )


def _queues(args: argparse.Namespace) -> int:
    from router.operations.queues import (
        ManagementApi,
        department_queues,
        format_table,
        oldest_unanswered_dispatches,
    )

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
    from router.operations.dlq import DeadLetterQueues

    broker_url = Settings.from_env().broker_url
    if broker_url.startswith("memory://"):
        raise ConfigurationError(
            "memory:// is a process's own broker; dead letters rest in the system's: "
            "set LIANBAN_BROKER_URL=amqp://…"
        )
    return DeadLetterQueues(Broker(broker_url), default_catalog().departments)


def _parking_lot(queues: DeadLetterQueues, name: str) -> str:
    if name in queues.parking_queues:
        return name
    close = difflib.get_close_matches(name, queues.parking_queues, n=1)
    hint = f"did you mean {close[0]}?" if close else "`lianban dlq list` shows them"
    raise ConfigurationError(f"{name!r} is not a parking lot; {hint}")


def _dlq_list(args: argparse.Namespace) -> int:
    queues = _dead_letters()
    queue = _parking_lot(queues, args.queue) if args.queue else None
    letters = queues.list(queue, args.limit)
    if args.json:
        summaries = [letter.summary().model_dump(mode="json") for letter in letters]
        print(json.dumps(summaries, ensure_ascii=False))
        return 0
    if not letters:
        print(f"no dead letters in {queue or 'any parking lot'}")
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
    summary["body"] = shown_body(letter.body)
    print(json.dumps(summary, ensure_ascii=False, indent=2))
    return 0


def shown_body(body: bytes) -> Any:
    """A dead letter's body as `dlq show` prints it: the applicant's name, ID number and
    phone masked, as in every log."""
    text = body.decode("utf-8", "replace")
    try:
        return mask_fields(json.loads(text))
    except ValueError:
        return mask_text(text)


def _dlq_replay(args: argparse.Namespace) -> int:
    from router.operations.dlq import record_replay

    ids = set(args.message_ids) if args.message_ids else None
    queues = _dead_letters()
    queue = _parking_lot(queues, args.queue)
    replayed = queues.replay(queue, ids)
    database = open_database(Settings.from_env())
    try:
        record_replay(database, queue, ids, replayed, actor=f"{getpass.getuser()} (lianban dlq)")
    finally:
        database.dispose()
    print(f"replayed {len(replayed)} message(s) from {args.queue}")
    return 0


def _bundle_show(args: argparse.Namespace) -> int:
    from router.domain.catalogs import CatalogShelf
    from router.domain.views import bundle_status, find_bundle

    settings = Settings.from_env()
    database = open_database(settings)
    try:
        with database.transaction() as session:
            bundle_id = find_bundle(session, args.bundle)
            catalogs = CatalogShelf(default_catalog(), settings.catalog_dir)
            status = bundle_status(session, bundle_id, catalogs) if bundle_id else None
    finally:
        database.dispose()
    if status is None:
        print(f"lianban: no bundle {args.bundle!r}", file=sys.stderr)
        return 2
    print(
        f"{status.project_no}  {status.bundle_type}  {status.state}  ({status.bundle_id})  "
        f"承诺 {status.promised_working_days} 个工作日"
    )
    if status.clock is not None:
        print(f"  {'':<21} {_clock_line(status.clock, status.alerts)}")
    for item in status.items:
        reason = f" — {item.reason}" if item.reason else ""
        print(
            f"  {item.state.value:<21} {item.name_zh} [{item.department}] "
            f"{_class_label(item.handling_class, item.promise_days)}{reason}"
        )
        for clock in item.clocks:
            print(f"  {'':<21}   {_clock_line(clock, item.alerts)}")
        for gap in item.tolerated_gaps:
            print(f"  {'':<21}   容缺：{gap.material}，{gap.due_date.isoformat()}前补交")
        if (poll := item.decision_poll) is not None:
            last = poll.last_poll_at.isoformat() if poll.last_poll_at else "not yet"
            upcoming = poll.next_poll_at.isoformat() if poll.next_poll_at else "calls back"
            print(
                f"  {'':<21}   department says “{poll.department_answer}” "
                f"({poll.answered_at.isoformat()}); last poll {last} (#{poll.polls}), "
                f"next poll {upcoming}"
            )
        if (trouble := item.trouble) is not None:
            print(f"  {'':<21}   {_trouble_line(trouble)}")
    if status.handovers:
        print("handovers (送达):")
        for handover in status.handovers:
            print(f"  {_handover_line(handover)}")
    print("timeline:")
    for entry in status.timeline:
        detail = f" — {entry.detail}" if entry.detail else ""
        where = entry.item or "(bundle)"
        print(f"  {entry.at.isoformat()}  {entry.state:<23} {where} by {entry.actor}{detail}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from router.domain.workdays import working_calendar
    from router.operations.report import Month, monthly_report

    try:
        month = Month.parse(args.month)
    except ValueError as error:
        print(f"lianban: {error}", file=sys.stderr)
        return USAGE_ERROR
    output: Path | None = args.output
    suffix = output.suffix.lstrip(".").lower() if output is not None else ""
    kind = args.format or (suffix if suffix in ("csv", "xlsx") else "csv")
    database = open_database(Settings.from_env())
    try:
        made = monthly_report(
            database, default_catalog(), month, working_calendar(), datetime.now(UTC)
        )
    finally:
        database.dispose()
    if kind == "csv" and output is None:
        sys.stdout.write(made.csv())
        return 0
    target = output or Path(f"lianban-report-{month}.{kind}")
    target.write_bytes(made.xlsx() if kind == "xlsx" else made.csv().encode("utf-8-sig"))
    print(f"{target}: {len(made.rows)} rows, {month} ({made.working_days} working days)")
    return 0


_METHOD_WORDS = {
    HandoverMethod.WINDOW: "窗口领取",
    HandoverMethod.ELECTRONIC: "电子送达",
    HandoverMethod.POST: "邮寄送达",
}


def _handover_line(handover: HandoverStatus) -> str:
    """delivered             (bundle) 邮寄送达 waybill SIM0000000001 — courier POD-8812 …"""
    waybill = f" waybill {handover.waybill_no}" if handover.waybill_no else ""
    error = f" (courier: {handover.last_error})" if handover.last_error else ""
    proof = handover.proof
    proved = (
        f" — {proof.source.value} {proof.signature_ref}, {proof.received_at.isoformat()}"
        if proof
        else ""
    )
    where = handover.item or "(bundle)"
    method = _METHOD_WORDS[handover.method]
    return f"{handover.state.value:<21} {where} {method}{waybill}{error}{proved}"


_ALERT_WORDS = {AlertLevel.WARNING: "预警", AlertLevel.MISSED: "超期"}


def _trouble_line(trouble: DeliveryTrouble) -> str:
    """retrying: attempt 2, next retry 2026-…, circuit open — ConnectError: …"""
    if trouble.next_retry_at is not None:
        when = f"next retry {trouble.next_retry_at.isoformat()}"
    else:
        when = "parked: `lianban dlq list` shows it, `lianban dlq replay` sends it again"
    return (
        f"{trouble.state}: attempt {trouble.attempts}, {when}, circuit {trouble.circuit} "
        f"— {trouble.last_error}"
    )


def _clock_line(clock: ClockStatus, alerts: tuple[DeadlineAlert, ...]) -> str:
    """acceptance 1/1 working days used, finished · decision 3/20, paused (等待…) · 预警"""
    if clock.finished_at is not None:
        where = "finished"
    elif clock.running:
        where = f"due {clock.due_at.isoformat() if clock.due_at else 'unknown'}"
        where += " (provisional)" if clock.provisional else ""
    else:
        where = f"paused ({clock.paused_cause})" if clock.paused_cause else "not started"
    raised = [_ALERT_WORDS[alert.level] for alert in alerts if alert.kind == clock.kind]
    flags = f" · {'/'.join(raised)}" if raised else ""
    return f"{clock.kind}: {clock.days_used}/{clock.limit_days} working days used, {where}{flags}"


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


def _callback_secret_new(args: argparse.Namespace) -> int:
    if args.file.exists():
        print(f"lianban: {args.file} exists; move it aside to rotate", file=sys.stderr)
        return 2
    args.file.touch(mode=0o600)
    args.file.write_text(new_secret().get_secret_value() + "\n", encoding="utf-8")
    print(f"wrote {args.file}: give it to the router (LIANBAN_CALLBACK_SECRET_FILE) and, over")
    print("a secure channel, to the platform, which verifies callbacks with it")
    return 0


def _checkout_definitions(option: str) -> Path:
    """deploy/rabbitmq/definitions.json of the checkout lianban runs from; an installed
    package has none (and its site-packages is no place to write)."""
    if not DEFINITIONS_FILE.parent.parent.is_dir():
        raise ConfigurationError(
            f"not running from a checkout (no {DEFINITIONS_FILE.parent}): give {option} PATH"
        )
    return DEFINITIONS_FILE


def _broker_definitions(args: argparse.Namespace) -> int:
    out = args.out or _checkout_definitions("--out")
    passwords = json.loads(args.passwords.read_text(encoding="utf-8")) if args.passwords else None
    document = definitions(
        default_catalog().departments,
        vhost=args.vhost,
        passwords=passwords,
        areas=Settings.from_env().adapter_areas,  # a queue per area an adapter serves
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(document), encoding="utf-8")
    print(f"wrote {out}")
    return 0


def _broker_check(args: argparse.Namespace) -> int:
    path = args.file or _checkout_definitions("--file")
    if is_current(default_catalog().departments, path):
        return 0
    print(f"stale: {path} (run `lianban broker definitions`)", file=sys.stderr)
    return 1


def _audit_verify(args: argparse.Namespace) -> int:
    from router.store import audit_chain

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
    from router.store import audit_chain

    database = open_database(Settings.from_env())
    try:
        audit_chain.seal_pending(database)
        head = audit_chain.head(database)
    finally:
        database.dispose()
    print(json.dumps(head))
    return 0


def _audit_prune(args: argparse.Namespace) -> int:
    from router.store import audit_chain

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
    from lianban.schemas import export

    for path in export(default_catalog()):
        print(f"wrote {path}")
    return 0


def _schemas_check(args: argparse.Namespace) -> int:
    from lianban.schemas import stale_documents

    stale = stale_documents(default_catalog())
    for name in stale:
        print(f"stale: contracts/schemas/{name} (run `make schemas`)", file=sys.stderr)
    return 1 if stale else 0


def _run_roles(args: argparse.Namespace, roles: set[str], simulate_all: bool = False) -> int:
    from adapters.registry import simulate_every_department
    from lianban.stack import Role, Stack

    settings = Settings.from_env()
    configure_logging(settings.log_level, settings.log_format)
    configure_tracing("lianban-" + "-".join(sorted(roles)), settings.traces_exporter)
    if returncode := _migrate_apart(settings):
        return returncode
    catalog = default_catalog()
    adapters = simulate_every_department(catalog) if simulate_all else []
    stack = Stack(settings, catalog, {Role(role) for role in roles}, adapters)
    _stop_gracefully_on_sigterm()
    stack.start()
    stack.wait()
    return 0


def _migrate(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    configure_logging(settings.log_level, settings.log_format)
    database = open_database(settings)
    try:
        database.migrate()
        print(f"schema at revision {database.revision()}")
    finally:
        database.dispose()
    return 0


def _migrate_apart(settings: Settings) -> int:
    """A schema behind is migrated by a short-lived `lianban migrate` (its exit status is
    returned): Alembic, loaded once, would stay in a role's process for its life
    (Stack.start then finds the schema current). Its errors reach standard error as the
    command's own."""
    database = open_database(settings)
    try:
        if database.schema_is_current():
            return 0
    finally:
        database.dispose()
    return subprocess.run(
        [sys.executable, "-m", "lianban.cli", "migrate"], stdout=subprocess.DEVNULL
    ).returncode


def _stop_gracefully_on_sigterm() -> None:
    """Orchestrators (systemd, Docker, Kubernetes) stop a process with SIGTERM: stop as on
    Ctrl-C, letting in-flight work finish and be acknowledged."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)


def _run_simulator(args: argparse.Namespace) -> int:
    from adapters.simulators.base import DepartmentState
    from adapters.simulators.filings_view import FILINGS_PATH, with_filings_listed
    from adapters.simulators.systems import installed_simulators
    from runtime.serving import ThreadedServer

    settings = Settings.from_env()
    configure_logging(settings.log_level, settings.log_format)
    simulators = installed_simulators()
    if args.department not in simulators:
        known = ", ".join(sorted(simulators)) or "none"
        print(f"lianban: no simulator for {args.department!r} (installed: {known})")
        return 2
    state = DepartmentState(code=args.department)
    app = with_filings_listed(simulators[args.department](state), state)
    server = ThreadedServer(app, settings.host, settings.port)
    _stop_gracefully_on_sigterm()
    server.start()
    print(f"{args.department} simulator at {server.url}", flush=True)
    print(f"its filings: {server.url}{FILINGS_PATH}", flush=True)
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
    configure_logging(settings.log_level, settings.log_format)
    configure_tracing(f"lianban-adapter-{args.department}", settings.traces_exporter)
    adapter, departments = _adapter(args)
    from lianban.adapter_process import AdapterProcess

    process = AdapterProcess(settings, departments, [adapter])
    _stop_gracefully_on_sigterm()
    process.start()
    process.wait()
    return 0


def _adapter(args: argparse.Namespace) -> tuple[Adapter, list[str]]:
    """The adapter `args` ask for, and the catalog's departments. The catalog is read for
    this alone, not kept (default_catalog's is): a running adapter needs none of it. It is
    read before the adapters' modules are imported, and the adapter process's after it:
    their allocations then reuse the memory its parse freed, which would otherwise stay
    resident (about 3.5 MiB)."""
    catalog = load_catalog()
    from adapters.registry import adapter_for
    from adapters.simulated import Scenario

    scenario = Scenario.from_file(args.scenario) if args.scenario else None
    adapter = adapter_for(
        args.department,
        catalog,
        simulated=args.simulated,
        manual=args.manual,
        scenario=scenario,
    )
    adapter.area = args.area
    return adapter, list(catalog.departments)


def _scaffold(args: argparse.Namespace) -> int:
    from adapters.scaffold import scaffold

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


def _calendar_status(args: argparse.Namespace) -> int:
    from router.domain.workdays import working_calendar
    from router.operations.calendar_status import calendar_status

    # A warning is not a failure: next year's notice is simply not out or not added yet.
    for line in calendar_status(working_calendar()).lines():
        print(line)
    return 0


def _catalog_list(args: argparse.Namespace) -> int:
    catalog = default_catalog()
    for bundle_type in catalog.bundle_types.values():
        lead = catalog.departments[bundle_type.lead_department].name_zh
        print(
            f"{bundle_type.code:<40} {bundle_type.category.value:<10} "
            f"{len(bundle_type.items):>2} items  ≤{_longest_promise(catalog, bundle_type):>3} "
            f"working days  {bundle_type.name_zh}（牵头：{lead}）"
        )
    return 0


def _longest_promise(catalog: Catalog, bundle_type: BundleType) -> int:
    """The bundle's promised working days with every item selected: no selection promises more."""
    return promised_working_days(catalog, bundle_type, bundle_type.item_codes)


def _class_label(handling_class: HandlingClass, promise_days: int, extension_days: int = 0) -> str:
    if handling_class is HandlingClass.ON_THE_SPOT:
        return "[即办件]"
    extension = f"，可延长 {extension_days}" if extension_days else ""
    return f"[承诺件 {promise_days} 个工作日{extension}]"


def _catalog_show(args: argparse.Namespace) -> int:
    catalog = default_catalog()
    bundle_type = catalog.bundle_types.get(args.bundle_type)
    if bundle_type is None:
        print(f"lianban: no bundle type {args.bundle_type!r}; see `lianban catalog list`")
        return 2
    print(
        f"{bundle_type.name_zh} ({bundle_type.code}, {bundle_type.category.value}): "
        f"承诺至多 {_longest_promise(catalog, bundle_type)} 个工作日 (every item selected)"
    )
    for line in catalog_tree(bundle_type, catalog):
        print(line)
    sources = {catalog.service_of(item).promise_source for item in bundle_type.items}
    print("time limits from:")
    for source in sorted(sources):
        print(f"  {source}")
    for line in checklist_lines(bundle_type, catalog):
        print(line)
    return 0


def checklist_lines(bundle_type: BundleType, catalog: Catalog) -> list[str]:
    """一套材料 and 一表申请 with every item selected: each material once, with the items
    asking for it and what may stand in for it; each form field once."""
    lines = ["materials (一套材料, each asked once):"]
    for entry in checklist(catalog, bundle_type):
        if not entry.items:
            issued = "、".join(bundle_type.item(code).name_zh for code in entry.produced_by)
            lines.append(f"  · {entry.name_zh} ({entry.material}) — 由“{issued}”出具，无需提交")
            continue
        mark = "必要" if entry.required else "可选"
        lines.append(
            f"  {'■' if entry.required else '□'} {entry.name_zh} ({entry.material}) [{mark}]"
        )
        lines.append(f"      for: {', '.join(entry.items)}")
        if entry.licence_types:
            names = "、".join(catalog.licence_types[code].name_zh for code in entry.licence_types)
            lines.append(f"      免提交: 可用电子证照 {names}")
        lines.extend(f"      依据: {basis}" for basis in entry.bases)
    sources = sorted(
        {source for entry in checklist(catalog, bundle_type) for source in entry.sources}
    )
    lines.append("materials from: " + "; ".join(sources))
    fields = form_fields(catalog, bundle_type)
    lines.append(f"form (一表申请, {len(fields)} fields):")
    for name, (field, items) in fields.items():
        need = "required" if field.required else "optional"
        lines.append(
            f"  {name:<28} {field.type.value:<8} {need:<8} {field.name_zh} ({len(items)} items)"
        )
    return lines


def catalog_tree(bundle_type: BundleType, catalog: Catalog) -> list[str]:
    """Items by stage: stage 1 is dispatched at once, stage n waits for stages before it.

    Each item shows its class and promised days; each dependent names what it waits for
    and why, so the DAG reads top to bottom.
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
            service = catalog.service_of(item)
            limit = _class_label(
                service.handling_class, service.promise_days, service.extension_days
            )
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
                f"{catalog.departments[item.department].name_zh} ({code}) "
                f"{limit} {marks}".rstrip()
            )
            for prerequisite in item.prerequisites:
                lines.append(
                    f"  {'  ' if last else '│ '}   after {' | '.join(prerequisite.any_of)}: "
                    f"{prerequisite.reason}"
                )
    return lines


if __name__ == "__main__":
    sys.exit(main())
