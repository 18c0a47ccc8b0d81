"""W3C trace context through the apps, in Flink SQL: no OpenTelemetry SDK and no Python call per record.

A record read from Kafka carries its producer's `traceparent` header (`00-<trace id>-<span id>-<flags>`). The
record an app writes from it carries the same trace id and flags with the span id of the app's hop, derived
from where the input record was: the first 16 hex digits of SHA-256 over `topic/partition/offset`. The same
input gives the same header, so output written again after a restore from a checkpoint is identical. An input
without a valid traceparent starts a trace of its own, its id MD5 over the same text (as deterministic).

`headwater.tracing.hop_traceparent` is the same derivation in Python (the tracing CLI and the tests use it; a
test runs both on the same records).
"""

from __future__ import annotations

TRACEPARENT = "traceparent"
_VALID = "^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"
_ZERO_TRACE = "00-" + "0" * 32 + "-%"
_ZERO_SPAN = "%-" + "0" * 16 + "-__"


def hop_traceparent_sql(
    headers: str = "headers", topic: str = "topic", partition: str = "partition", offset: str = "offset"
) -> str:
    """A SQL expression (STRING) of the traceparent for the record made from the input row whose header map
    (MAP<STRING, BYTES>, the Kafka connector's `headers` metadata) and position are in the named columns."""
    parent = f"DECODE(`{headers}`['{TRACEPARENT}'], 'UTF-8')"
    where = f"CONCAT(`{topic}`, '/', CAST(`{partition}` AS STRING), '/', CAST(`{offset}` AS STRING))"
    valid = f"(COALESCE(REGEXP({parent}, '{_VALID}'), FALSE) AND {parent} NOT LIKE '{_ZERO_TRACE}' AND {parent} NOT LIKE '{_ZERO_SPAN}')"
    trace_id = f"CASE WHEN {valid} THEN SUBSTR({parent}, 4, 32) ELSE MD5({where}) END"
    flags = f"CASE WHEN {valid} THEN SUBSTR({parent}, 54, 2) ELSE '01' END"
    return f"CONCAT('00-', {trace_id}, '-', SUBSTR(SHA256({where}), 1, 16), '-', {flags})"


def headers_sql(traceparent: str = TRACEPARENT) -> str:
    """A SQL expression of the Kafka headers (MAP<STRING, BYTES>) to write: the traceparent column's value,
    none when it is null."""
    return (
        f"CASE WHEN `{traceparent}` IS NULL THEN CAST(NULL AS MAP<STRING, BYTES>) "
        f"ELSE CAST(MAP['{TRACEPARENT}', ENCODE(`{traceparent}`, 'UTF-8')] AS MAP<STRING, BYTES>) END"
    )
