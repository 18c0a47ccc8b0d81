"""Traces from source to decision: W3C trace context in Kafka record headers, spans exported per service.

- Context travels as the `traceparent` header (W3C Trace Context, `00-<trace id>-<span id>-<flags>`) of each
  record: the OpenTelemetry propagator reads and writes it through `KafkaHeadersGetter`/`KafkaHeadersSetter`
  (confluent-kafka's headers: a list of `(name, bytes)` pairs).
- The Flink apps carry it without the SDK (their hot path makes no per-record SDK call): the span id of a hop
  is derived from the record it read, `hop_span_id(topic, partition, offset)`, so a replay after a restore
  writes the same header. `hop_traceparent` is the reference of what the Flink SQL writes
  (`flink_apps.common.tracing`; a test keeps the two equal).
- Spans are exported one JSON object per line to `<state>/traces/<service>.jsonl` (`JsonLinesSpanExporter`),
  and also over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set; `read_spans` reads the files back.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter, Setter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import Span, format_span_id, format_trace_id
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

TRACEPARENT = "traceparent"
# A record made from many (a window's features): the traceparents of up to 16 contributing traces, newest
# first, comma-separated (written by flink_apps.common.tracing).
TRACELINKS = "tracelinks"
TRACES_DIR = "traces"
OTLP_ENDPOINT_ENV = "OTEL_EXPORTER_OTLP_ENDPOINT"
_TRACEPARENT_RE = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")

# Kafka record headers as confluent-kafka hands them over (None when a record has none), and as it takes them.
Headers = Mapping[str, bytes | str | None] | Sequence[tuple[str, bytes | str | None]] | None
ProducedHeaders = list[tuple[str, str | bytes | None]]
PROPAGATOR = TraceContextTextMapPropagator()


class KafkaHeadersGetter(Getter[Headers]):
    """Reads a header's values (decoded as UTF-8) from a record's header list; a name may repeat."""

    def get(self, carrier: Headers, key: str) -> list[str] | None:
        values = [
            v.decode("utf-8", "replace") if isinstance(v, bytes) else v
            for k, v in _pairs(carrier)
            if k.lower() == key.lower() and v is not None
        ]
        return values or None

    def keys(self, carrier: Headers) -> list[str]:
        return [k for k, _ in _pairs(carrier)]


def _pairs(carrier: Headers) -> list[tuple[str, bytes | str | None]]:
    if carrier is None:
        return []
    if isinstance(carrier, Mapping):
        return list(carrier.items())
    return list(carrier)


class KafkaHeadersSetter(Setter[ProducedHeaders]):
    """Sets a header on a header list to be produced, replacing one of the same name."""

    def set(self, carrier: ProducedHeaders, key: str, value: str) -> None:
        carrier[:] = [(k, v) for k, v in carrier if k.lower() != key.lower()]
        carrier.append((key, value.encode("utf-8")))


GETTER = KafkaHeadersGetter()
SETTER = KafkaHeadersSetter()


def extract(headers: Headers) -> Context:
    """The trace context a record's headers carry (an empty context when they carry none, or a bad one)."""
    return PROPAGATOR.extract(headers, getter=GETTER)


def inject(context: Context | None = None) -> ProducedHeaders:
    """Headers carrying `context` (default: the current one)."""
    headers: ProducedHeaders = []
    PROPAGATOR.inject(headers, context=context, setter=SETTER)
    return headers


def traceparent_of(span: Span) -> str:
    ctx = span.get_span_context()
    return f"00-{format_trace_id(ctx.trace_id)}-{format_span_id(ctx.span_id)}-{int(ctx.trace_flags):02x}"


@dataclass(frozen=True)
class TraceParent:
    trace_id: str
    span_id: str
    flags: str = "01"

    @classmethod
    def parse(cls, text: str | bytes | None) -> TraceParent | None:
        """A W3C version-00 traceparent, or None for anything else."""
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        match = _TRACEPARENT_RE.match(text or "")
        if match is None or set(match[1]) == {"0"} or set(match[2]) == {"0"}:
            return None
        return cls(match[1], match[2], match[3])

    def __str__(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"


def header(headers: Headers, name: str = TRACEPARENT) -> str | None:
    values = GETTER.get(headers, name)
    return values[0] if values else None


def hop_span_id(topic: str, partition: int, offset: int) -> str:
    """The span id of a stream app's hop over the record at (topic, partition, offset): the first 16 hex digits
    of SHA-256 over `topic/partition/offset`. The same record always gives the same id, so output written
    again after a restore from a checkpoint carries the same header."""
    return hashlib.sha256(f"{topic}/{partition}/{offset}".encode()).hexdigest()[:16]


def hop_trace_id(topic: str, partition: int, offset: int) -> str:
    """The trace id a hop starts when its input carries no valid traceparent: MD5 over `topic/partition/offset`
    (32 hex digits), as deterministic as the span id."""
    return hashlib.md5(f"{topic}/{partition}/{offset}".encode(), usedforsecurity=False).hexdigest()


def hop_traceparent(parent: str | bytes | None, topic: str, partition: int, offset: int) -> str:
    """The traceparent a stream app writes on a record made from the one at (topic, partition, offset): the
    parent's trace id and flags with the hop's span id; a new deterministic trace if the parent is not valid."""
    parsed = TraceParent.parse(parent)
    trace_id = parsed.trace_id if parsed else hop_trace_id(topic, partition, offset)
    flags = parsed.flags if parsed else "01"
    return str(TraceParent(trace_id, hop_span_id(topic, partition, offset), flags))


# ---- exporting ----------------------------------------------------------------------------------------------


def span_record(span: ReadableSpan) -> dict[str, Any]:
    """One exported span as a JSON object (ids in hex, times in epoch nanoseconds)."""
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
    """Appends each span as one JSON line to a file: readable with `jq`, `grep` or `read_spans`."""

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


def traces_dir(state_dir: Path) -> Path:
    return Path(state_dir) / TRACES_DIR


def span_file(state_dir: Path, service: str) -> Path:
    return traces_dir(state_dir) / f"{service}.jsonl"


def tracer_provider(service: str, state_dir: Path | None) -> TracerProvider:
    """A provider whose spans go to `<state_dir>/traces/<service>.jsonl` (if a state dir is given) and to
    the OTLP endpoint of `OTEL_EXPORTER_OTLP_ENDPOINT` (if set). Shut it down to flush the last spans."""
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    if state_dir is not None:
        provider.add_span_processor(BatchSpanProcessor(JsonLinesSpanExporter(span_file(state_dir, service))))
    if os.environ.get(OTLP_ENDPOINT_ENV):
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


# ---- reading ------------------------------------------------------------------------------------------------


@dataclass
class SpanRecord:
    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    service: str
    start_ns: int
    attributes: dict[str, Any] = field(default_factory=dict)
    links: list[dict[str, str]] = field(default_factory=list)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> SpanRecord:
        return cls(
            raw["trace_id"],
            raw["span_id"],
            raw.get("parent_span_id"),
            raw["name"],
            raw.get("service", ""),
            int(raw.get("start_ns") or 0),
            dict(raw.get("attributes") or {}),
            list(raw.get("links") or []),
        )


def read_spans(folder: Path, trace_id: str | None = None) -> list[SpanRecord]:
    """Every span in the `*.jsonl` files of `folder` (of one trace, if given), oldest first; a line that is
    not a span (a file cut short by a crash) is skipped."""
    spans = [s for s in _read(sorted(Path(folder).glob("*.jsonl"))) if trace_id in (None, s.trace_id)]
    return sorted(spans, key=lambda s: s.start_ns)


def _read(files: Iterable[Path]) -> Iterator[SpanRecord]:
    for path in files:
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                yield SpanRecord.from_json(json.loads(line))
            except (ValueError, KeyError, TypeError):
                continue
