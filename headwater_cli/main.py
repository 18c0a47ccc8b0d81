"""`headwater`: render, check and run the platform from the command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from headwater.config import ConfigError, format_problems, load_platform, stack_names


def _render(args: argparse.Namespace) -> int:
    from headwater_cli.render import render_stack, write_rendered

    platform = load_platform(args.stack)
    write_rendered(render_stack(platform), Path(args.out))
    return 0


def _lineage(args: argparse.Namespace) -> int:
    import json

    from components.observability import lineage_graph, lineage_mermaid

    platform = load_platform(args.stack)
    if args.format == "mermaid":
        print(lineage_mermaid(platform), end="")
    elif args.format == "json":
        print(json.dumps(lineage_graph(platform), indent=2, sort_keys=True))
    else:
        for src, dst, label in platform.lineage():
            print(f"{src} -> {dst} [{label}]")
    return 0


def _check(args: argparse.Namespace) -> int:
    from headwater_cli.check import check_stack

    report = check_stack(args.stack, Path(args.policy_config) if args.policy_config else None)
    print(report.format())
    return report.exit_code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="headwater", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    stacks = stack_names()

    render = sub.add_parser("render", help="write every Kubernetes object of a stack as YAML, offline")
    render.add_argument("--stack", required=True, choices=stacks)
    render.add_argument("--out", required=True, help="output folder (one YAML file per object)")
    render.set_defaults(func=_render)

    check = sub.add_parser(
        "check",
        help="run the policy pack over every rendered object of a stack, offline (exit 1 on mandatory violations)",
    )
    check.add_argument("--stack", required=True, choices=stacks)
    check.add_argument("--policy-config", help="policy config JSON, as for pulumi --policy-pack-config")
    check.set_defaults(func=_check)

    lineage = sub.add_parser("lineage", help="print the flows: producer -> topic -> consumer")
    lineage.add_argument("--stack", required=True, choices=stacks)
    lineage.add_argument("--format", choices=("text", "mermaid", "json"), default="text")
    lineage.set_defaults(func=_lineage)

    from headwater_cli.contracts import add_parser as add_contracts_parser

    add_contracts_parser(sub, stacks)

    from headwater_cli.actions import add_parser as add_actions_parser

    add_actions_parser(sub, stacks)

    from headwater.local.runtime import add_parser as add_local_parser

    add_local_parser(sub, stacks)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as err:
        print(format_problems(err), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
