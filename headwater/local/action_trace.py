"""The audit view of one decision: the chain of records and spans that led to an action and its outcome.

`trace_action` reads, each as the principal the catalog allows to:
- the action's audit records (the auditor, committed records only): every step, each with the trace and span
  id the gate wrote;
- the proposal's signal (the agents' reader of signals) at the position the proposal's context names, and its
  `traceparent` header; or, when the proposal acted on a feature record (`context.features` names its topic,
  partition and offset), that record (the agents' reader of features) and its `traceparent` header, and the
  signal whose position derives the feature's span id: feature-aggregator continues the trace of a window's
  newest signal, so that signal is searched for among the window's provenance (its partitions' offset ranges);
- the approved action, if any (the proposing agent, its own approved topic), and its `traceparent` header;
and the spans of that trace exported under `<state>/traces/` (`headwater.tracing`). The raw event is the
producer's span whose record position gives the signal's hop span id (`hop_span_id`): agent-events exports no
spans, its span id is derived from the raw record's topic, partition and offset.

`TraceChain.lines()` is what `headwater actions trace` prints; the hops are data for other views.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition

from headwater import tracing
from headwater.action_gate import action_gate
from headwater.contracts import load_contracts
from headwater.contracts.serde import WireFormatError, decode_avro
from headwater.local.console import Topology
from headwater.local.kafka import LocalKafka
from headwater.local.provision import client_config
from headwater.spec import Platform
from headwater.tracing import TRACELINKS, SpanRecord, TraceParent, hop_span_id


@dataclass(frozen=True)
class Hop:
    """One link of the chain: what it is, where its record is, its span and the span it continues."""

    kind: str  # raw event, signal, proposal, gate <step>, approved action
    where: str  # topic/partition@offset, or "-"
    span_id: str | None
    parent_span_id: str | None
    service: str  # who made the span (exported), or how it is known
    detail: str = ""


@dataclass
class TraceChain:
    action_id: str
    trace_id: str | None
    hops: list[Hop] = field(default_factory=list)
    audit: list[dict[str, Any]] = field(default_factory=list)
    spans: list[SpanRecord] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    # The traces a feature record on the chain links (its window's other signals), newest first.
    feature_links: list[TraceParent] = field(default_factory=list)

    def broken_links(self) -> list[str]:
        """Hops whose parent is not the span of the hop before them (empty: a connected chain)."""
        out = []
        before: Hop | None = None
        for hop in self.hops:
            if hop.kind == "gate ignored":  # a replayed proposal or a late decision: hangs off its own record
                continue
            if before is not None and hop.parent_span_id != before.span_id:
                out.append(
                    f"{hop.kind}: parent {hop.parent_span_id} is not {before.kind}'s span {before.span_id}"
                )
            before = hop
        return out

    def lines(self) -> list[str]:
        out = [f"action {self.action_id}  trace {self.trace_id or '-'}"]
        width = max((len(h.kind) for h in self.hops), default=10) + 2
        for hop in self.hops:
            span = f"span {hop.span_id or '-'} <- {hop.parent_span_id or 'root'}"
            detail = f"  {hop.detail}" if hop.detail else ""
            out.append(f"  {hop.kind:<{width}}{hop.where:<46} {span}  ({hop.service}){detail}")
        broken = self.broken_links()
        out.append("  chain connected" if not broken else "  chain broken: " + "; ".join(broken))
        if self.feature_links:
            out.append(f"  the feature links {len(self.feature_links)} trace(s), newest first:")
            out += [f"    {tp.trace_id} span {tp.span_id}" for tp in self.feature_links]
        out += [f"  ! {p}" for p in self.problems]
        return out


def _where(topic: str, partition: int, offset: int) -> str:
    return f"{topic}/{partition}@{offset}"


def _records(conf: dict[str, Any], topic: str, start: dict[int, int] | None = None) -> Iterator[Message]:
    """Every record of `topic` (or of the given partitions, from the given offsets) up to its current end."""
    consumer = Consumer({**conf, "enable.partition.eof": True, "enable.auto.commit": False})
    try:
        if start is None:
            partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
            start = {p: OFFSET_BEGINNING for p in partitions}
        consumer.assign([TopicPartition(topic, p, o) for p, o in sorted(start.items())])
        remaining = set(start)
        idle = 0
        while remaining and idle < 100:  # 100 polls without records: the rest is not readable
            msgs = consumer.consume(500, 0.2)
            idle = 0 if msgs else idle + 1
            for msg in msgs:
                error = msg.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        remaining.discard(msg.partition() or 0)
                        continue
                    raise RuntimeError(f"reading {topic}: {error}")
                yield msg
    finally:
        consumer.close()


def _reader(kafka: LocalKafka, principal: str, group: str | None = None) -> dict[str, Any]:
    return {
        **client_config(kafka, principal),
        "group.id": group or principal,
        "isolation.level": "read_committed",
    }


def _read_one(
    kafka: LocalKafka, topology: Topology, topic: str, partition: int, offset: int
) -> Message | None:
    """The record at (topic, partition, offset), read as the agents' reader (as agents read signals and
    features), or None."""
    group = dict(topology.reader_groups).get(topic)
    for msg in _records(_reader(kafka, topology.reader, group), topic, {partition: offset}):
        if msg.offset() == offset:
            return msg
        if (msg.offset() or 0) > offset:
            break
    return None


def _producer_of(platform: Platform, topic: str) -> str:
    """The app that writes `topic`, as the catalog declares it."""
    apps = [a.name for a in platform.apps if topic in {f.topic for f in platform.principal(a.name).produces}]
    return apps[0] if apps else "its producer"


def _newest_signal(
    platform: Platform, topic: str, value: bytes, span_id: str, problems: list[str]
) -> tuple[str, int, int] | None:
    """The position of the signal whose hop span id is the feature record's: among the records its
    provenance names (the feature record decoded with the catalog's schema of its topic)."""
    schema = next((c.schema for c in load_contracts(platform) if c.topic == topic), None)
    if not isinstance(schema, dict):
        problems.append(f"the catalog has no Avro contract of {topic} to read the feature's provenance")
        return None
    try:
        provenance = decode_avro(schema, value)["provenance"]
    except (WireFormatError, KeyError) as exc:
        problems.append(f"the feature record's provenance is not readable: {exc}")
        return None
    source = str(provenance["source_topic"])
    for part in provenance["source_partitions"]:
        for offset in range(int(part["min_offset"]), int(part["max_offset"]) + 1):
            if hop_span_id(source, int(part["partition"]), offset) == span_id:
                return source, int(part["partition"]), offset
    problems.append(f"no signal in the feature's provenance gives its span id {span_id}")
    return None


def _signal_hops(
    chain: TraceChain, kafka: LocalKafka, topology: Topology, topic: str, partition: int, offset: int
) -> None:
    """The raw event (the producer's span whose record position derives the signal's span id) and the
    signal at (topic, partition, offset), as the agents read it."""
    found = _read_one(kafka, topology, topic, partition, offset)
    signal_tp = TraceParent.parse(tracing.header(found.headers())) if found is not None else None
    produce = next(
        (
            s
            for s in chain.spans
            if signal_tp is not None
            and "messaging.kafka.message.offset" in s.attributes
            and hop_span_id(
                str(s.attributes.get("messaging.destination.name")),
                int(s.attributes.get("messaging.kafka.destination.partition", 0)),
                int(s.attributes["messaging.kafka.message.offset"]),
            )
            == signal_tp.span_id
        ),
        None,
    )
    if produce is not None:
        a = produce.attributes
        raw_where = _where(
            str(a["messaging.destination.name"]),
            int(a["messaging.kafka.destination.partition"]),
            int(a["messaging.kafka.message.offset"]),
        )
        chain.hops.append(
            Hop("raw event", raw_where, produce.span_id, produce.parent_span_id, produce.service)
        )
    else:
        chain.problems.append("no exported producer span whose record gives the signal's span id")
    chain.hops.append(
        Hop(
            "signal",
            _where(topic, partition, offset),
            signal_tp.span_id if signal_tp else None,
            produce.span_id if produce is not None else None,
            f"{topology.signals_app}, span id derived from the raw record's position",
        )
    )


def trace_action(platform: Platform, kafka: LocalKafka, state_dir: Path, action_id: str) -> TraceChain:
    gate = action_gate(platform)
    topology = Topology.of(platform)
    if not gate.auditors:
        raise ValueError("catalog.actionGate declares no auditor to read the audit trail as")
    audit = [
        json.loads(m.value() or b"{}")
        for m in _records(_reader(kafka, gate.auditors[0]), gate.audit_topic)
        if (m.key() or b"").decode("utf-8", "replace") == action_id
    ]
    if not audit:
        raise LookupError(f"no audit record of action {action_id!r} on {gate.audit_topic}")
    trace_ids = sorted({r["trace_id"] for r in audit if r.get("trace_id")})
    chain = TraceChain(action_id, trace_ids[0] if trace_ids else None, audit=audit)
    if len(trace_ids) > 1:
        chain.problems.append(f"the audit records carry {len(trace_ids)} trace ids: {', '.join(trace_ids)}")
    if chain.trace_id is None:
        chain.problems.append("the audit records carry no trace id (written by a gate without tracing)")
        return chain
    chain.spans = tracing.read_spans(tracing.traces_dir(state_dir), chain.trace_id)
    by_id = {s.span_id: s for s in chain.spans}

    proposed = next((r for r in audit if r["step"] == "proposed"), None)
    proposal_span = by_id.get(str(next((r.get("span_id") for r in audit if r["step"] == "proposed"), "")))
    parent_of_proposal = by_id.get(proposal_span.parent_span_id or "") if proposal_span else None

    context = ((proposed or {}).get("proposal") or {}).get("context") or {}
    features = context.get("features")
    feature_ref: dict[str, Any] = features if isinstance(features, dict) else {}
    signals = context.get("signals") or []
    if {"topic", "partition", "offset"} <= set(feature_ref):
        # The feature record the proposal acted on; its span id derives from its window's newest signal.
        topic, partition, offset = (
            str(feature_ref["topic"]),
            int(feature_ref["partition"]),
            int(feature_ref["offset"]),
        )
        found = _read_one(kafka, topology, topic, partition, offset)
        feature_tp = TraceParent.parse(tracing.header(found.headers())) if found else None
        links = (tracing.header(found.headers(), TRACELINKS) or "") if found else ""
        signal_at: tuple[str, int, int] | None = None
        if found is None:
            chain.problems.append(f"no record at {_where(topic, partition, offset)} (the proposal's feature)")
        elif feature_tp is None:
            chain.problems.append(
                f"the feature record at {_where(topic, partition, offset)} has no traceparent"
            )
        else:
            signal_at = _newest_signal(
                platform, topic, found.value() or b"", feature_tp.span_id, chain.problems
            )
        if signal_at is not None:
            _signal_hops(chain, kafka, topology, *signal_at)
        linked = len([x for x in links.split(",") if x])
        chain.hops.append(
            Hop(
                "feature",
                _where(topic, partition, offset),
                feature_tp.span_id if feature_tp else None,
                chain.hops[-1].span_id if signal_at is not None and chain.hops else None,
                f"{_producer_of(platform, topic)}, span id derived from its window's newest signal's position",
                f"links {linked} trace{'s' if linked != 1 else ''}" if found else "",
            )
        )
        chain.feature_links = [tp for tp in (TraceParent.parse(x) for x in links.split(",")) if tp]
    elif signals and {"topic", "partition", "offset"} <= set(signals[0]):
        ref = signals[0]
        _signal_hops(chain, kafka, topology, str(ref["topic"]), int(ref["partition"]), int(ref["offset"]))
    if parent_of_proposal is not None:
        agent_topic = str(parent_of_proposal.attributes.get("messaging.destination.name", "-"))
        src = (proposed or {}).get("source") or {}
        where = _where(agent_topic, int(src.get("partition", -1)), int(src.get("offset", -1))) if src else "-"
        chain.hops.append(
            Hop(
                "proposal",
                where,
                parent_of_proposal.span_id,
                parent_of_proposal.parent_span_id,
                parent_of_proposal.service,
                parent_of_proposal.name,
            )
        )
    elif proposal_span is not None:
        chain.problems.append(f"the proposal's span {proposal_span.parent_span_id} was not exported")

    for record in audit:
        span = by_id.get(str(record.get("span_id")))
        src = record.get("source") or {}
        where = _where(src["topic"], src["partition"], src["offset"]) if src else "-"
        detail = " ".join(
            str(x) for x in (record.get("actor"), record.get("reason")) if x is not None and x != ""
        )
        chain.hops.append(
            Hop(
                f"gate {record['step']}",
                where,
                record.get("span_id"),
                span.parent_span_id if span else None,
                span.service if span else "span not exported",
                detail,
            )
        )

    approved = next((r for r in audit if r["step"] == "approved"), None)
    agent = next((a for a in gate.agents if approved and a.principal == approved.get("agent")), None)
    if agent is not None:
        for msg in _records(_reader(kafka, agent.principal, agent.group), agent.approved_topic):
            if (msg.key() or b"").decode("utf-8", "replace") == action_id:
                tp = TraceParent.parse(tracing.header(msg.headers()))
                assert msg.partition() is not None and msg.offset() is not None
                at = next(
                    (i for i, h in enumerate(chain.hops) if h.kind == "gate approved"), len(chain.hops) - 1
                )
                chain.hops.insert(
                    at + 1,
                    Hop(
                        "approved action",
                        _where(agent.approved_topic, msg.partition() or 0, msg.offset() or 0),
                        None,
                        tp.span_id if tp else None,
                        "its traceparent header: the approval's span",
                    ),
                )
                if tp is None or tp.trace_id != chain.trace_id:
                    chain.problems.append(
                        f"the approved action's traceparent {tp} is not of trace {chain.trace_id}"
                    )
                break
    return chain
