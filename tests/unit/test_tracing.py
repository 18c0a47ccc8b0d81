"""Trace context in Kafka headers and the spans each part exports: the header getter and setter, the hop span
id the Flink apps derive, the span files, and the gate's step spans (continued across a restart)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from jsonschema import Draft7Validator
from opentelemetry.trace import format_span_id, format_trace_id, get_current_span, set_span_in_context
from test_approval_gate_logic import DESCRIPTION, SUPPORT, T0, proposal

from approval_gate.logic import Gate, Out, Source
from approval_gate.main import validators
from approval_gate.tracing import GateTracer
from headwater import tracing
from headwater.action_gate import action_gate
from headwater.config import load_platform
from headwater.local.action_flow import SignalRef, sample_proposal, traced_proposal
from headwater.tracing import TraceParent, hop_span_id, hop_traceparent

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
# The same vectors as tests/flink/test_trace_headers.py checks the Flink SQL against.
VECTORS = {
    (PARENT, "raw", 0, 5): "00-0af7651916cd43dd8448eb211c80319c-dba9426a534a4a9b-01",
    (None, "raw", 1, 7): "00-f898bf06db451d73c38440e1e80bc918-a408699215008471-01",
    ("garbage", "raw", 2, 9): "00-0dd2e293d489ff63a0a6f7a9d4b95725-2ae423010d00f9de-01",
    ("00-" + "0" * 32 + "-b7ad6b7169203331-01", "raw", 2, 9): (
        "00-0dd2e293d489ff63a0a6f7a9d4b95725-2ae423010d00f9de-01"
    ),
    (PARENT[:-2] + "00", "raw", 0, 5): "00-0af7651916cd43dd8448eb211c80319c-dba9426a534a4a9b-00",
}


# ---- headers ------------------------------------------------------------------------------------------------


def test_the_setter_writes_one_traceparent_and_the_getter_reads_it_back() -> None:
    provider = tracing.tracer_provider("t", None)
    span = provider.get_tracer("t").start_span("produce")
    headers = tracing.inject(set_span_in_context(span))
    ctx = span.get_span_context()
    flags = f"{int(ctx.trace_flags):02x}"
    assert headers == [
        ("traceparent", f"00-{format_trace_id(ctx.trace_id)}-{format_span_id(ctx.span_id)}-{flags}".encode())
    ]
    # Injecting into headers that already hold one replaces it: a record never carries two.
    other = provider.get_tracer("t").start_span("other")
    headers = [("app", b"x"), *headers]
    tracing.SETTER.set(headers, "traceparent", tracing.traceparent_of(other))
    assert [k for k, _ in headers] == ["app", "traceparent"]
    assert tracing.header(headers) == tracing.traceparent_of(other)
    # What confluent-kafka hands a consumer (bytes, list or dict) reads back as the same context.
    as_text = [(k, v.decode() if isinstance(v, bytes) else v) for k, v in headers]
    carriers: list[tracing.Headers] = [headers, dict(headers), as_text]
    for carrier in carriers:
        read = get_current_span(tracing.extract(carrier)).get_span_context()
        assert read.trace_id == other.get_span_context().trace_id
        assert read.span_id == other.get_span_context().span_id and read.is_remote


@pytest.mark.parametrize("headers", [None, [], [("traceparent", b"not-a-traceparent")], [("other", b"1")]])
def test_records_without_a_valid_traceparent_give_no_context(headers: tracing.Headers) -> None:
    assert not get_current_span(tracing.extract(headers)).get_span_context().is_valid


def test_traceparent_parsing_takes_only_version_00_and_nonzero_ids() -> None:
    assert TraceParent.parse(PARENT) == TraceParent(
        "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331", "01"
    )
    assert TraceParent.parse(PARENT.encode()) is not None
    for bad in (
        None,
        "",
        "01" + PARENT[2:],
        PARENT.upper(),
        "00-" + "0" * 32 + PARENT[35:],
        PARENT[:36] + "0" * 16 + "-01",
    ):
        assert TraceParent.parse(bad) is None, bad


# ---- the hop span id (what agent-events writes without the SDK) ---------------------------------------------


def test_the_hop_span_id_is_derived_from_the_record_position_only() -> None:
    assert {k: hop_traceparent(*k) for k in VECTORS} == VECTORS
    assert hop_span_id("raw", 0, 5) == hop_span_id("raw", 0, 5)  # a replay writes the same header
    assert len({hop_span_id("raw", p, o) for p in range(4) for o in range(500)}) == 2000
    assert hop_span_id("raw", 0, 5) != hop_span_id("raw2", 0, 5)


# ---- span files ---------------------------------------------------------------------------------------------


def test_spans_exported_as_json_lines_read_back_by_trace(tmp_path: Path) -> None:
    provider = tracing.tracer_provider("sample-producer", tmp_path)
    tracer = provider.get_tracer("t")
    root = tracer.start_span("produce", attributes={"messaging.kafka.message.offset": 4})
    child = tracer.start_span("propose", context=set_span_in_context(root))
    child.end()
    root.end()
    tracer.start_span("unrelated").end()
    provider.shutdown()
    lines = tracing.span_file(tmp_path, "sample-producer").read_text().splitlines()
    assert len(lines) == 3 and all(json.loads(line)["service"] == "sample-producer" for line in lines)
    trace_id = format_trace_id(root.get_span_context().trace_id)
    spans = tracing.read_spans(tracing.traces_dir(tmp_path), trace_id)
    assert [s.name for s in spans] == ["produce", "propose"]
    assert spans[1].parent_span_id == spans[0].span_id and spans[0].parent_span_id is None
    assert spans[0].attributes == {"messaging.kafka.message.offset": 4}
    # A line cut short (a crash mid-write) is skipped, not fatal.
    with tracing.span_file(tmp_path, "sample-producer").open("a") as f:
        f.write('{"trace_id": "ab')
    assert len(tracing.read_spans(tracing.traces_dir(tmp_path))) == 3


# ---- the gate's step spans ----------------------------------------------------------------------------------


def _traced_gate(tmp_path: Path) -> tuple[Gate, GateTracer]:
    tracer = GateTracer("approval-gate", tracing.span_file(tmp_path, "approval-gate"))
    return Gate(DESCRIPTION, validators(DESCRIPTION), tracer=tracer.step), tracer


def _propose(gate: Gate, body: dict[str, object], offset: int, traceparent: str | None) -> list[Out]:
    raw = json.dumps(body).encode()
    return gate.on_proposal(
        Source(SUPPORT.proposed, 0, offset), str(body["action_id"]).encode(), raw, T0, traceparent
    )


def test_each_audited_step_is_a_span_of_the_proposal_s_trace_exported_once_committed(tmp_path: Path) -> None:
    gate, tracer = _traced_gate(tmp_path)
    out = _propose(gate, proposal("t1"), 1, PARENT)
    audits = [o for o in out if o.topic == DESCRIPTION.audit_topic]
    assert [a.value["step"] for a in audits if a.value] == ["proposed", "evaluated", "approved"]
    assert {a.value["trace_id"] for a in audits if a.value} == {PARENT[3:35]}
    (action,) = [o for o in out if o.topic == SUPPORT.approved]
    assert action.headers == (("traceparent", str(audits[-1].trace).encode()),)
    # Nothing is exported before the transaction commits.
    assert not tracing.span_file(tmp_path, "approval-gate").exists()
    assert tracer.commit() == 3
    spans = tracing.read_spans(tracing.traces_dir(tmp_path), PARENT[3:35])
    assert [s.name for s in spans] == ["gate proposed", "gate evaluated", "gate approved"]
    parents = [s.parent_span_id for s in spans]
    assert parents == ["b7ad6b7169203331", spans[0].span_id, spans[1].span_id]
    assert [s.span_id for s in spans] == [a.value["span_id"] for a in audits if a.value]
    assert spans[0].attributes["messaging.kafka.message.offset"] == 1


def test_a_waiting_action_s_trace_survives_a_restart_and_the_decision_continues_it(tmp_path: Path) -> None:
    gate, tracer = _traced_gate(tmp_path)
    out = _propose(gate, proposal("t2", amount=5000), 2, PARENT)
    waiting = next(o for o in out if o.value and o.value.get("step") == "waiting")
    state = [o for o in out if o.topic == DESCRIPTION.state_topic]
    assert state[-1].value and state[-1].value["traceparent"] == waiting.trace
    tracer.commit()

    restarted, tracer2 = _traced_gate(tmp_path)
    for o in state:
        restarted.restore(o.key, o.value)
    approver_span = "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01"
    decision = {
        "action_id": "t2",
        "decision": "approve",
        "approver": "ana",
        "reason": "ok",
        "decided_at": "2026-11-29T04:01:00Z",
    }
    out = restarted.on_decision(
        Source(DESCRIPTION.decisions_topic, 0, 9),
        b"t2",
        json.dumps(decision).encode(),
        T0 + 1000,
        approver_span,
    )
    tracer2.commit()
    spans = {s.name: s for s in tracing.read_spans(tracing.traces_dir(tmp_path), PARENT[3:35])}
    assert spans["gate decided"].parent_span_id == str(waiting.trace)[36:52]
    assert spans["gate decided"].links == [{"trace_id": PARENT[3:35], "span_id": "00f067aa0ba902b7"}]
    assert spans["gate approved"].parent_span_id == spans["gate decided"].span_id
    (action,) = [o for o in out if o.topic == SUPPORT.approved]
    assert action.headers == (
        ("traceparent", f"00-{PARENT[3:35]}-{spans['gate approved'].span_id}-01".encode()),
    )


def test_a_proposal_without_a_header_starts_a_trace_of_its_own(tmp_path: Path) -> None:
    gate, _ = _traced_gate(tmp_path)
    out = _propose(gate, proposal("t3"), 3, None)
    ids = {o.value["trace_id"] for o in out if o.topic == DESCRIPTION.audit_topic and o.value}
    assert len(ids) == 1 and ids != {PARENT[3:35]}


def test_the_gate_without_a_tracer_writes_no_trace_fields_but_passes_the_context_on() -> None:
    gate = Gate(DESCRIPTION, validators(DESCRIPTION))
    out = gate.on_proposal(
        Source(SUPPORT.proposed, 0, 4), b"t4", json.dumps(proposal("t4")).encode(), T0, PARENT
    )
    assert all("trace_id" not in (o.value or {}) for o in out)
    (action,) = [o for o in out if o.topic == SUPPORT.approved]
    assert action.headers == (("traceparent", PARENT.encode()),)


def test_the_audit_and_state_contracts_accept_the_trace_fields(tmp_path: Path) -> None:
    gate, _ = _traced_gate(tmp_path)
    schemas = Path(__file__).resolve().parents[2] / "catalog" / "schemas"
    contracts = {
        topic: Draft7Validator(json.loads((schemas / f"{topic}.json").read_text()))
        for topic in (DESCRIPTION.audit_topic, DESCRIPTION.state_topic)
    }
    written = [o for o in _propose(gate, proposal("t5", amount=5000), 5, PARENT) if o.topic in contracts]
    assert {o.topic for o in written} == set(contracts)
    for o in written:
        assert o.value is not None and ("trace_id" in o.value or "traceparent" in o.value)
        assert list(contracts[o.topic].iter_errors(o.value)) == [], o.value
    # A malformed trace id is refused: the contract checks the field, not only its name.
    bad = {
        **next(o.value for o in written if o.topic == DESCRIPTION.audit_topic and o.value),
        "trace_id": "xyz",
    }
    assert list(contracts[DESCRIPTION.audit_topic].iter_errors(bad))


# ---- the sample agents' proposals ---------------------------------------------------------------------------


def test_a_proposal_acting_on_a_signal_continues_its_trace(tmp_path: Path) -> None:
    platform = load_platform("local")
    gate = action_gate(platform)
    agent = gate.agents[0]
    signal_tp = VECTORS[(PARENT, "raw", 0, 5)]
    signal = SignalRef("agents.signals.v1", 2, 40, "planner-01", (("traceparent", signal_tp.encode()),))
    provider = tracing.tracer_provider("sample-agents", tmp_path)
    body = sample_proposal(agent, gate, random.Random(1), high_risk=False)
    traced, headers, span = traced_proposal(provider.get_tracer("t"), agent, body, signal)
    span.end()
    provider.shutdown()
    assert traced["context"]["trace_id"] == PARENT[3:35]
    assert traced["context"]["signals"] == [
        {"topic": "agents.signals.v1", "partition": 2, "offset": 40, "agent_id": "planner-01"}
    ]
    assert Draft7Validator(gate_contract(agent.proposed_topic)).is_valid(traced)
    (propose,) = tracing.read_spans(tracing.traces_dir(tmp_path), PARENT[3:35])
    assert propose.parent_span_id == signal_tp[36:52]
    assert tracing.header(headers) == f"00-{PARENT[3:35]}-{propose.span_id}-01"


def test_a_proposal_acting_on_a_feature_record_continues_the_feature_s_trace(tmp_path: Path) -> None:
    platform = load_platform("local")
    gate = action_gate(platform)
    agent = gate.agents[0]
    # A feature record's header: its window's newest signal's trace, the span derived from that signal.
    feature_tp = hop_traceparent(VECTORS[(PARENT, "raw", 0, 5)], "agents.signals.v1", 0, 7)
    links = VECTORS[(PARENT, "raw", 0, 5)].encode()
    feature = SignalRef(
        "features.agent_activity.v1",
        1,
        3,
        "acct-9",
        (("traceparent", feature_tp.encode()), ("tracelinks", links)),
    )
    provider = tracing.tracer_provider("sample-agents", tmp_path)
    body = sample_proposal(agent, gate, random.Random(1), high_risk=False)
    traced, _, span = traced_proposal(provider.get_tracer("t"), agent, body, None, feature)
    span.end()
    provider.shutdown()
    assert traced["context"]["trace_id"] == PARENT[3:35]
    assert traced["context"]["features"] == {
        "topic": "features.agent_activity.v1",
        "partition": 1,
        "offset": 3,
        "entity_id": "acct-9",
    }
    assert Draft7Validator(gate_contract(agent.proposed_topic)).is_valid(traced)
    (propose,) = tracing.read_spans(tracing.traces_dir(tmp_path), PARENT[3:35])
    assert propose.parent_span_id == feature_tp[36:52] == hop_span_id("agents.signals.v1", 0, 7)
    assert propose.attributes["feature.offset"] == 3 and "signal.offset" not in propose.attributes


def gate_contract(topic: str) -> dict[str, object]:
    schemas = Path(__file__).resolve().parents[2] / "catalog" / "schemas"
    loaded: dict[str, object] = json.loads((schemas / f"{topic}.json").read_text())
    return loaded


class _OtlpReceiver:
    """An OTLP/HTTP trace endpoint on a free local port: decodes each POST to /v1/traces as the protocol's
    ExportTraceServiceRequest (protobuf) and keeps (service, span name, trace id, parent span id)."""

    def __init__(self) -> None:
        import http.server
        import threading

        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
            ExportTraceServiceResponse,
        )

        received: list[tuple[str, str, str, str]] = []
        paths: list[str] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                paths.append(self.path)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                for resource_spans in request.resource_spans:
                    service = next(
                        a.value.string_value
                        for a in resource_spans.resource.attributes
                        if a.key == "service.name"
                    )
                    for scope in resource_spans.scope_spans:
                        for span in scope.spans:
                            received.append(
                                (service, span.name, span.trace_id.hex(), span.parent_span_id.hex())
                            )
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.received, self.paths = received, paths

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> _OtlpReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_the_gate_sends_its_committed_spans_over_otlp_http_where_the_stack_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _OtlpReceiver() as collector:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint)
        gate, tracer = _traced_gate(tmp_path)
        _propose(gate, proposal("otlp-1"), 1, PARENT)
        _propose(gate, proposal("otlp-2"), 2, PARENT)
        tracer.spans.discard()  # a transaction that never committed: its spans never leave
        _propose(gate, proposal("otlp-3"), 3, PARENT)
        assert tracer.commit() == 3
        tracer.shutdown()  # flushes the background queue
    assert set(collector.paths) == {"/v1/traces"}
    assert [(s, n, t) for s, n, t, _ in collector.received] == [
        ("approval-gate", name, PARENT[3:35]) for name in ("gate proposed", "gate evaluated", "gate approved")
    ]
    # The same spans as the file has, the first a child of the proposal's header.
    assert collector.received[0][3] == PARENT[36:52]
    on_file = tracing.read_spans(tracing.traces_dir(tmp_path), PARENT[3:35])
    assert [s.name for s in on_file] == [n for _, n, _, _ in collector.received]


def test_without_an_endpoint_the_gate_exports_nothing_over_otlp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    _, tracer = _traced_gate(tmp_path)
    assert tracer.spans.processors == []


def test_the_page_s_decision_span_continues_the_action_s_trace_and_leaves_over_otlp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from approval_gate.approvers.board import Board
    from approval_gate.tracing import PageTracer

    board = Board()
    waiting_span = "1f2e3d4c5b6a7988"
    board.apply({"action_id": "a-1", "step": "waiting", "trace_id": PARENT[3:35], "span_id": waiting_span})
    parent = board.pending["a-1"].traceparent
    assert parent == f"00-{PARENT[3:35]}-{waiting_span}-01"
    with _OtlpReceiver() as collector:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint)
        page = PageTracer("action-approvers-page", tmp_path / "traces" / "page.jsonl")
        headers, span = page.decision(parent, {"action.id": "a-1", "action.decision": "approve"})
        span.end()
        page.shutdown()
    sent = TraceParent.parse(tracing.header(headers))
    assert sent is not None and sent.trace_id == PARENT[3:35]
    assert collector.received == [("action-approvers-page", "approvers decide", PARENT[3:35], waiting_span)]
    (on_file,) = tracing.read_spans(tmp_path / "traces")
    assert on_file.span_id == sent.span_id and on_file.parent_span_id == waiting_span


def test_the_trace_view_finds_a_feature_s_newest_signal_among_its_provenance() -> None:
    import io

    import avro.io

    from flink_apps.feature_aggregator import logic
    from headwater.contracts import load_contracts
    from headwater.contracts.serde import _parse_avro, frame
    from headwater.local.action_trace import _newest_signal

    platform = load_platform("local")
    topic = "features.agent_activity.v1"
    schema = next(c.schema for c in load_contracts(platform) if c.topic == topic)
    signals = [
        logic.Signal(
            "acct-1", "a", "tool.called", "tool", False, 1_000 + i, "agents.signals.v1", i % 3, 40 + i
        )
        for i in range(9)
    ]
    (record,) = logic.compute_features(signals, 60_000)
    buf = io.BytesIO()
    avro.io.DatumWriter(_parse_avro(schema)).write(record, avro.io.BinaryEncoder(buf))
    value = frame(7, buf.getvalue())
    newest = max(signals, key=lambda s: s.order)
    span_id = hop_span_id("agents.signals.v1", newest.source_partition, newest.source_offset)
    problems: list[str] = []
    assert _newest_signal(platform, topic, value, span_id, problems) == (
        "agents.signals.v1",
        newest.source_partition,
        newest.source_offset,
    )
    assert problems == []
    # A span id no signal of the window gives, and a value that is not the contract's: one line each.
    assert _newest_signal(platform, topic, value, "0123456789abcdef", problems) is None
    assert _newest_signal(platform, topic, frame(7, b"\x02"), span_id, problems) is None
    assert problems[0] == "no signal in the feature's provenance gives its span id 0123456789abcdef"
    assert problems[1].startswith("the feature record's provenance is not readable")
