"""`headwater actions trace`: the audit view of one action, from the source record to the decision."""

from __future__ import annotations

import argparse
from pathlib import Path

from headwater.config import load_platform
from headwater.local.action_trace import trace_action
from headwater.local.kafka import KafkaPorts, LocalKafka, default_state_dir
from headwater.local.runtime import read_runtime


def _trace(args: argparse.Namespace) -> int:
    platform = load_platform(args.stack)
    state_dir = (
        Path(args.state_dir).resolve() if args.state_dir else default_state_dir(platform.stack).resolve()
    )
    runtime = read_runtime(state_dir)
    if runtime is None or not isinstance(runtime.get("kafka"), dict):
        print(
            f"no local platform has run in {state_dir} (no runtime file): start one with "
            f"`headwater local up --stack {args.stack}` or name its --state-dir",
        )
        return 2
    kafka = LocalKafka(platform, state_dir, KafkaPorts(**runtime["kafka"]["ports"]))
    try:
        chain = trace_action(platform, kafka, state_dir, args.action_id)
    except LookupError as err:
        print(str(err).strip("'\""))
        return 1
    print("\n".join(chain.lines()))
    return 0 if not chain.broken_links() and not chain.problems else 1


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], stacks: list[str]) -> None:
    actions = sub.add_parser("actions", help="the action path: proposed actions, the gate's decisions")
    asub = actions.add_subparsers(dest="actions_command", required=True)
    p = asub.add_parser(
        "trace",
        help="the chain that led to one action: raw event, signal, proposal, the gate's steps, the approved action",
    )
    p.add_argument("action_id")
    p.add_argument("--stack", default="local", choices=stacks)
    p.add_argument("--state-dir", help="state dir of the local platform (default: .local/<stack>/)")
    p.set_defaults(func=_trace)
