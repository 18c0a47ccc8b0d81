"""W3C trace context through the apps, in Flink SQL: no OpenTelemetry SDK and no Python call per record.

A record read from Kafka carries its producer's `traceparent` header (`00-<trace id>-<span id>-<flags>`). The
record an app writes from it carries the same trace id and flags with the span id of the app's hop, derived
from where the input record was: the first 16 hex digits of SHA-256 over `topic/partition/offset`. The same
input gives the same header, so output written again after a restore from a checkpoint is identical. An input
without a valid traceparent starts a trace of its own, its id MD5 over the same text (as deterministic).

`headwater.tracing.hop_traceparent` is the same derivation in Python (the tracing CLI and the tests use it; a
test runs both on the same records).

A record made from many inputs (feature-aggregator: one window of signals) continues the trace of one of them,
the newest (`hop_traceparent_of_sql` over that input's header value and position), and names the others in a
second header, `tracelinks`: the traceparents of the newest inputs of up to `MAX_LINKS` distinct traces, newest
first, comma-separated (span links, as a reader of the record may follow them).
"""

from __future__ import annotations

TRACEPARENT = "traceparent"
TRACELINKS = "tracelinks"
MAX_LINKS = 16
_VALID = "^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"
_ZERO_TRACE = "00-" + "0" * 32 + "-%"
_ZERO_SPAN = "%-" + "0" * 16 + "-__"


def valid_traceparent_sql(value: str) -> str:
    """A SQL expression (STRING): `value` (a STRING expression) when it is a W3C version-00 traceparent with a
    non-zero trace and span id, else NULL."""
    valid = f"(COALESCE(REGEXP({value}, '{_VALID}'), FALSE) AND {value} NOT LIKE '{_ZERO_TRACE}' AND {value} NOT LIKE '{_ZERO_SPAN}')"
    return f"CASE WHEN {valid} THEN {value} ELSE CAST(NULL AS STRING) END"


def header_value_sql(headers: str = "headers", name: str = TRACEPARENT) -> str:
    """A SQL expression (STRING): the header `name` of the Kafka `headers` metadata column, as UTF-8 text."""
    return f"DECODE(`{headers}`['{name}'], 'UTF-8')"


def hop_traceparent_of_sql(
    parent: str, topic: str = "topic", partition: str = "partition", offset: str = "offset"
) -> str:
    """A SQL expression (STRING) of the traceparent for the record made from the input whose traceparent
    (a STRING expression, null or invalid when it had none) and position are given."""
    where = f"CONCAT(`{topic}`, '/', CAST(`{partition}` AS STRING), '/', CAST(`{offset}` AS STRING))"
    valid = f"(COALESCE(REGEXP({parent}, '{_VALID}'), FALSE) AND {parent} NOT LIKE '{_ZERO_TRACE}' AND {parent} NOT LIKE '{_ZERO_SPAN}')"
    trace_id = f"CASE WHEN {valid} THEN SUBSTR({parent}, 4, 32) ELSE MD5({where}) END"
    flags = f"CASE WHEN {valid} THEN SUBSTR({parent}, 54, 2) ELSE '01' END"
    return f"CONCAT('00-', {trace_id}, '-', SUBSTR(SHA256({where}), 1, 16), '-', {flags})"


def hop_traceparent_sql(
    headers: str = "headers", topic: str = "topic", partition: str = "partition", offset: str = "offset"
) -> str:
    """A SQL expression (STRING) of the traceparent for the record made from the input row whose header map
    (MAP<STRING, BYTES>, the Kafka connector's `headers` metadata) and position are in the named columns."""
    return hop_traceparent_of_sql(header_value_sql(headers), topic, partition, offset)


def headers_sql(traceparent: str = TRACEPARENT, links: str | None = None) -> str:
    """A SQL expression of the Kafka headers (MAP<STRING, BYTES>) to write: the traceparent column's value,
    none when it is null; and the links column's value as `tracelinks`, if given and neither null nor empty."""
    only = f"CAST(MAP['{TRACEPARENT}', ENCODE(`{traceparent}`, 'UTF-8')] AS MAP<STRING, BYTES>)"
    if links is not None:
        both = (
            f"CAST(MAP['{TRACEPARENT}', ENCODE(`{traceparent}`, 'UTF-8'), "
            f"'{TRACELINKS}', ENCODE(`{links}`, 'UTF-8')] AS MAP<STRING, BYTES>)"
        )
        only = f"CASE WHEN COALESCE(`{links}`, '') = '' THEN {only} ELSE {both} END"
    return f"CASE WHEN `{traceparent}` IS NULL THEN CAST(NULL AS MAP<STRING, BYTES>) ELSE {only} END"
