"""The gate's spans: one per audited step, continuing the trace a proposal's `traceparent` header carries.

The gate's logic stays a pure state machine: it asks a `StepTracer` for the traceparent of each step it audits
(the parent: the proposal's header for the first step, the action's previous step after it, kept in the
gate's state across restarts), writes the trace and span id into the audit record and the approved action's
`traceparent` header. The spans are held back until the transaction that holds their records commits, and
only then exported: a batch the gate never committed (killed mid-transaction) leaves no spans, and its replay
makes the ones that count.

Spans go to a JSON-lines file (one span per line, the same shape as `headwater.tracing` writes and reads;
this image imports nothing of the platform's code) and, when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (on
Kubernetes: the stack's `actionGate.tracing`), to that collector over OTLP/HTTP, in the background: a slow or
absent collector never holds up a transaction (spans it cannot take in time are dropped and logged by the SDK).

The approvers' page (`PageTracer`) makes one span per decision sent, a child of the action's latest audited
step, and sends the decision with that span's `traceparent`: the gate's `decided` step links it.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import Link, Span, SpanKind, format_span_id, format_trace_id, get_current_span
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

LOG = logging.getLogger("approval_gate.tracing")
TRACEPARENT = "traceparent"
OTLP_ENDPOINT_ENV = "OTEL_EXPORTER_OTLP_ENDPOINT"
_PROPAGATOR = TraceContextTextMapPropagator()

# Kafka record headers as confluent-kafka hands them over (None when a record has none).
Headers = Mapping[str, bytes | str | None] | Sequence[tuple[str, bytes | str | None]] | None


class _DictGetter(Getter[Mapping[str, str]]):
    def get(self, carrier: Mapping[str, str], key: str) -> list[str] | None:
        value = carrier.get(key)
        return [value] if value is not None else None

    def keys(self, carrier: Mapping[str, str]) -> list[str]:
        return list(carrier)


def header(headers: Headers, name: str = TRACEPARENT) -> str | None:
    """The first value of a record's header `name` (decoded as UTF-8), or None."""
    pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers or ())
    for key, value in pairs:
        if key.lower() == name and value is not None:
            return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    return None


def context_of(traceparent: str | None) -> Context:
    """The context a traceparent names (an empty one, so a root span, for None or a malformed value)."""
    if not traceparent:
        return Context()
    return _PROPAGATOR.extract({TRACEPARENT: traceparent}, getter=_DictGetter())


def span_record(span: ReadableSpan) -> dict[str, Any]:
    ctx = span.get_span_context()
    assert ctx is not None
    return {
        "trace_id": format_trace_id(ctx.trace_id),
        "span_id": format_span_id(ctx.span_id),
        "parent_span_id": format_span_id(span.parent.span_id) if span.parent else None,
        "name": span.name,
        "service": str(span.resource.attributes.get("service.name", "")),
        "kind": span.kind.name,
        "start_ns": span.start_time,
        "end_ns": span.end_time,
        "attributes": dict(span.attributes or {}),
        "links": [
            {
                "trace_id": format_trace_id(link.context.trace_id),
                "span_id": format_span_id(link.context.span_id),
            }
            for link in span.links
        ],
        "status": span.status.status_code.name,
    }


class JsonLinesSpanExporter(SpanExporter):
    """Appends each span as one JSON line to a file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        text = "".join(json.dumps(span_record(s), sort_keys=True, default=str) + "\n" for s in spans)
        with self._lock, self.path.open("a", encoding="utf-8") as out:
            out.write(text)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def otlp_processor() -> SpanProcessor | None:
    """A background exporter to the OTLP/HTTP endpoint of `OTEL_EXPORTER_OTLP_ENDPOINT` (the SDK reads it and
    `OTEL_EXPORTER_OTLP_CERTIFICATE`), or None when that is not set."""
    endpoint = os.environ.get(OTLP_ENDPOINT_ENV)
    if not endpoint:
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    LOG.info("exporting spans over OTLP/HTTP to %s", endpoint)
    return BatchSpanProcessor(OTLPSpanExporter())


def traceparent_of(span: Span) -> str:
    ctx = span.get_span_context()
    return f"00-{format_trace_id(ctx.trace_id)}-{format_span_id(ctx.span_id)}-{int(ctx.trace_flags):02x}"


class CommittedSpans(SpanProcessor):
    """Holds ended spans until `commit()` exports them (after the Kafka transaction commits): to each exporter
    at once, and to each processor's own queue (`processors`, e.g. OTLP in the background)."""

    def __init__(self, exporters: Sequence[SpanExporter], processors: Sequence[SpanProcessor] = ()) -> None:
        self.exporters = list(exporters)
        self.processors = list(processors)
        self._held: list[ReadableSpan] = []
        self._lock = threading.Lock()

    def on_end(self, span: ReadableSpan) -> None:
        with self._lock:
            self._held.append(span)

    def commit(self) -> int:
        with self._lock:
            spans, self._held = self._held, []
        for exporter in self.exporters:
            try:
                exporter.export(spans)
            except Exception:  # an exporter's failure must not stop the gate
                LOG.exception("exporting %d spans failed", len(spans))
        for processor in self.processors:
            for span in spans:
                processor.on_end(span)  # queued, never blocking
        return len(spans)

    def discard(self) -> None:
        with self._lock:
            self._held = []

    def shutdown(self) -> None:
        for exporter in self.exporters:
            exporter.shutdown()
        for processor in self.processors:
            processor.shutdown()  # sends what is queued (bounded by the exporter's timeout)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return all(p.force_flush(timeout_millis) for p in self.processors)


class GateTracer:
    """The gate's `StepTracer`: `step(...)` makes the span of one audited step and returns its traceparent."""

    def __init__(self, service: str, traces_file: Path | None) -> None:
        exporters: list[SpanExporter] = []
        if traces_file is not None:
            exporters.append(JsonLinesSpanExporter(traces_file))
        otlp = otlp_processor()
        self.spans = CommittedSpans(exporters, [otlp] if otlp is not None else [])
        self.provider = TracerProvider(resource=Resource.create({"service.name": service}))
        self.provider.add_span_processor(self.spans)
        self.tracer = self.provider.get_tracer("approval_gate")

    def step(
        self,
        name: str,
        parent: str | None,
        attributes: Mapping[str, str | int | bool],
        links: Sequence[str],
        at_ms: int,
    ) -> str:
        linked = [Link(get_current_span(context_of(tp)).get_span_context()) for tp in links]
        span = self.tracer.start_span(
            f"gate {name}",
            context=context_of(parent),
            attributes=dict(attributes),
            links=[link for link in linked if link.context.is_valid],
            start_time=at_ms * 1_000_000,
        )
        span.end(end_time=at_ms * 1_000_000)
        ctx = span.get_span_context()
        return f"00-{format_trace_id(ctx.trace_id)}-{format_span_id(ctx.span_id)}-{int(ctx.trace_flags):02x}"

    def commit(self) -> int:
        return self.spans.commit()

    def shutdown(self) -> None:
        self.provider.shutdown()


class PageTracer:
    """The approvers' page's spans: `decision(...)` starts the span of one decision sent (end it once the
    broker has the record) and returns the headers to send the decision with."""

    def __init__(self, service: str, traces_file: Path | None) -> None:
        self.provider = TracerProvider(resource=Resource.create({"service.name": service}))
        if traces_file is not None:
            self.provider.add_span_processor(BatchSpanProcessor(JsonLinesSpanExporter(traces_file)))
        otlp = otlp_processor()
        if otlp is not None:
            self.provider.add_span_processor(otlp)
        self.tracer = self.provider.get_tracer("approval_gate.approvers")

    def decision(
        self, parent: str | None, attributes: Mapping[str, str]
    ) -> tuple[list[tuple[str, bytes]], Span]:
        span = self.tracer.start_span(
            "approvers decide",
            context=context_of(parent),
            kind=SpanKind.PRODUCER,
            attributes=dict(attributes),
        )
        return [(TRACEPARENT, traceparent_of(span).encode())], span

    def shutdown(self) -> None:
        self.provider.shutdown()
