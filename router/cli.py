"""`lianban`: run the roles, the embedded demo, and look at the catalog."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from adapters.registry import adapter_for, simulate_every_department
from adapters.scaffold import scaffold
from adapters.simulated import Scenario
from contracts.catalog import BundleType, default_catalog, dependency_order
from contracts.errors import LianbanError
from router.db import Database
from router.logs import configure_logging
from router.schemas import export, stale_documents
from router.settings import Settings
from router.stack import Role, Stack
from router.status import bundle_status, find_bundle


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

    demo = commands.add_parser("demo", help="embedded end-to-end demo, no server needed")
    demo.set_defaults(run=_run_demo)

    catalog = commands.add_parser("catalog", help="list or show the bundle catalog")
    catalog_commands = catalog.add_subparsers(required=True, metavar="action")
    catalog_commands.add_parser("list", help="every bundle type").set_defaults(run=_catalog_list)
    show = catalog_commands.add_parser("show", help="one bundle type as an ordered tree")
    show.add_argument("bundle_type")
    show.set_defaults(run=_catalog_show)

    bundle = commands.add_parser("bundle", help="look at one bundle")
    bundle_commands = bundle.add_subparsers(required=True, metavar="action")
    show_bundle = bundle_commands.add_parser("show", help="its items and full timeline")
    show_bundle.add_argument("bundle", help="bundle id or case number (办件编号)")
    show_bundle.set_defaults(run=_bundle_show)

    schemas = commands.add_parser("schemas", help="JSON Schema, OpenAPI and AsyncAPI documents")
    schemas_commands = schemas.add_subparsers(required=True, metavar="action")
    schemas_commands.add_parser("export", help="regenerate contracts/schemas/").set_defaults(
        run=_schemas_export
    )
    schemas_commands.add_parser("check", help="fail if they are stale").set_defaults(
        run=_schemas_check
    )
    return parser


def _bundle_show(args: argparse.Namespace) -> int:
    database = Database(Settings.from_env().database_url)
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
    catalog = default_catalog()
    adapters = simulate_every_department(catalog) if simulate_all else []
    stack = Stack(settings, catalog, roles, adapters)
    stack.start()
    stack.wait()
    return 0


def _run_adapter(args: argparse.Namespace) -> int:
    if args.department == "new":
        return _scaffold(args)
    settings = Settings.from_env()
    configure_logging(settings.log_level)
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
    from router.demo import run_demo

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
