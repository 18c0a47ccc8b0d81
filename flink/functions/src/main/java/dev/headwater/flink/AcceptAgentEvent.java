package dev.headwater.flink;

import com.networknt.schema.Schema;
import com.networknt.schema.SchemaRegistry;
import com.networknt.schema.SchemaRegistryConfig;
import com.networknt.schema.SpecificationVersion;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.time.DateTimeException;
import java.time.Instant;
import java.time.LocalDate;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.TreeSet;
import java.util.function.Predicate;
import org.apache.avro.io.BinaryEncoder;
import org.apache.avro.io.EncoderFactory;
import org.apache.flink.metrics.Counter;
import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.functions.FunctionContext;
import org.apache.flink.table.functions.ScalarFunction;
import org.apache.flink.types.Row;
import tools.jackson.databind.JsonNode;
import tools.jackson.databind.json.JsonMapper;

/**
 * The common case of agent-events in the JVM: a raw record this function can prove valid is validated,
 * normalized and encoded as its signal (Avro in the Confluent wire format, with the registry's id) right here;
 * every other record is left undecided, for the Python function ({@code flink_apps.agent_events.logic}) that
 * has the last word and explains rejects field by field.
 *
 * <p>Sound by construction: it decides only records whose every string is printable ASCII (tab, newline and
 * carriage return allowed) and whose numbers are all integers that fit a long, framed or bare JSON that starts
 * with {@code '{'}, valid against the contract, with an event time between the years 1000 and 8999. On that
 * domain Python's JSON, regular expressions, {@code datetime.fromisoformat} and {@code json.dumps(sort_keys=True)}
 * agree with {@link PlainJson}, the contract's checks, {@link #epochMillis} and {@link PlainJson#canonical}; a
 * test in tests/flink holds the two paths byte-equal on a corpus. Anything outside it costs a trip to Python,
 * never a wrong answer.
 *
 * <p>The result row: {@code decided} (true: a valid event, the other fields filled; false: Python decides),
 * then the columns of the Python function's result ({@code valid, event_id, event_time, k, v, ts}).
 */
public final class AcceptAgentEvent extends ScalarFunction {
  private static final long serialVersionUID = 1L;

  /** The Python function's counter of valid events: both paths count into the same name. */
  public static final String VALID = "events_valid";

  public static final String RESULT_TYPE =
      "ROW<decided BOOLEAN, valid BOOLEAN, event_id STRING, event_time BIGINT, k BYTES, v BYTES, ts BIGINT>";

  private static final java.util.Set<String> ERROR_EVENT_TYPES =
      java.util.Set.of("agent.error", "task.failed", "tool.failed", "llm.failed");
  private static final int MIN_YEAR = 1000;
  private static final int MAX_YEAR = 8999;
  // Undecided rows carry event time 0, as the Python function's rejects do: they never move a watermark.
  private static final Row UNDECIDED = Row.of(false, false, null, 0L, null, null, 0L);

  // The signal's fields, in the order #signal fills them (the schema's order may differ; see AvroRecordEncoder).
  private static final List<String> SIGNAL_FIELDS =
      List.of(
          "event_id", "event_type", "event_category", "is_error", "agent_id", "agent_type", "entity_id",
          "tenant_id", "session_id", "trace_id", "parent_event_id", "status", "duration_ms", "tags",
          "occurred_at", "payload_json", "payload_bytes", "ingest_lag_ms", "source", "contract");
  private static final List<String> SOURCE_FIELDS =
      List.of("topic", "partition", "offset", "timestamp", "schema_id");

  private final String contractJson;
  private final String contractName;
  private final String signalSchemaJson;
  private final int signalSchemaId;

  private transient Predicate<Object> contract;
  private transient int maxRecordBytes;
  private transient int maxPayloadBytes;
  private transient AvroRecordEncoder signals;
  private transient ByteArrayOutputStream buffer;
  private transient BinaryEncoder encoder;
  private transient Counter valid;

  /**
   * @param contractJson the raw events' JSON Schema (draft 7, with {@code x-headwater-limits})
   * @param contractName the contract's name, written into each signal ({@code agents.events.raw.v1})
   * @param signalSchemaJson the signals' Avro schema
   * @param signalSchemaId the id the registry gave it
   */
  public AcceptAgentEvent(
      String contractJson, String contractName, String signalSchemaJson, int signalSchemaId) {
    this.contractJson = contractJson;
    this.contractName = contractName;
    this.signalSchemaJson = signalSchemaJson;
    this.signalSchemaId = signalSchemaId;
    configure(); // fail on the client, at job build time, not on the task managers
  }

  @Override
  public void open(FunctionContext context) {
    configure();
    valid = context.getMetricGroup().counter(VALID);
  }

  private void configure() {
    JsonMapper json = JsonMapper.builder().build();
    JsonNode schemaNode = json.readTree(contractJson);
    JsonNode limits = schemaNode.path("x-headwater-limits");
    maxRecordBytes = positive(limits, "max_record_bytes");
    maxPayloadBytes = positive(limits, "max_payload_bytes");
    SchemaRegistry registry =
        SchemaRegistry.withDefaultDialect(
            SpecificationVersion.DRAFT_7,
            builder ->
                builder.schemaRegistryConfig(
                    SchemaRegistryConfig.builder().formatAssertionsEnabled(false).build()));
    Schema general = registry.getSchema(schemaNode);
    // The compiled check where the contract's keywords allow it (a sixth of the CPU per event otherwise).
    contract =
        CompiledContract.compile(schemaNode)
            .orElse(document -> general.validate(json.valueToTree(document)).isEmpty());
    signals =
        new AvroRecordEncoder(
            new org.apache.avro.Schema.Parser().parse(signalSchemaJson),
            SIGNAL_FIELDS,
            Map.of("source", SOURCE_FIELDS));
    buffer = new ByteArrayOutputStream(512);
    encoder = null;
  }

  private static int positive(JsonNode limits, String name) {
    JsonNode limit = limits.path(name);
    if (!limit.isInt() || limit.intValue() <= 0) {
      throw new IllegalArgumentException(
          "the event contract needs x-headwater-limits." + name + " as a positive integer, found " + limit);
    }
    return limit.intValue();
  }

  /**
   * Not deterministic for the planner's sake: a projection over its result (the pipeline's, which drops the
   * raw bytes of decided records) is then not merged into the call's own projection, which would copy the
   * call into it and evaluate it twice per record.
   */
  @Override
  public boolean isDeterministic() {
    return false;
  }

  public @DataTypeHint(RESULT_TYPE) Row eval(
      byte[] value,
      String topic,
      Integer partition,
      Long offset,
      @DataTypeHint("TIMESTAMP_LTZ(3)") Instant timestamp) {
    try {
      Row row = accept(value, topic, partition, offset, timestamp);
      if (row == null) {
        return UNDECIDED;
      }
      if (valid != null) {
        valid.inc();
      }
      return row;
    } catch (RuntimeException | IOException e) {
      return UNDECIDED; // Python decides, and dead-letters a defect of ours as a processing error
    }
  }

  /** The decided row of a provably valid record, or null. */
  Row accept(byte[] value, String topic, Integer partition, Long offset, Instant timestamp)
      throws IOException {
    if (value == null || value.length == 0 || value.length > maxRecordBytes) {
      return null;
    }
    if (topic == null || partition == null || offset == null) {
      return null;
    }
    int start = 0;
    Integer schemaId = null;
    if (value[0] == 0) { // the Confluent wire format's magic byte
      if (value.length < 6) {
        return null;
      }
      long id =
          ((value[1] & 0xFFL) << 24) | ((value[2] & 0xFFL) << 16) | ((value[3] & 0xFFL) << 8) | (value[4] & 0xFFL);
      if (id > Integer.MAX_VALUE) {
        return null;
      }
      schemaId = (int) id;
      start = 5;
    }
    if (value[start] != '{') {
      return null;
    }
    Map<String, Object> document = PlainJson.object(value, start);
    if (document == null || !contract.test(document)) {
      return null;
    }
    Long occurredAt = epochMillis(text(document, "occurred_at"));
    if (occurredAt == null) {
      return null;
    }
    String payloadJson = PlainJson.canonical(document.get("payload"));
    if (payloadJson.length() > maxPayloadBytes) { // ASCII: one byte per char
      return null;
    }
    String eventId = text(document, "event_id");
    String agentId = text(document, "agent_id");
    Long sourceTimestamp = timestamp == null ? null : timestamp.toEpochMilli();
    Object[] source = {topic, partition, offset, sourceTimestamp, schemaId}; // SOURCE_FIELDS
    Object[] signal = signal(document, eventId, agentId, occurredAt, payloadJson, sourceTimestamp, source);
    return Row.of(
        true, true, eventId, occurredAt, agentId.getBytes(StandardCharsets.UTF_8), encode(signal), occurredAt);
  }

  /** The signal's values, in the order of SIGNAL_FIELDS. */
  private Object[] signal(
      Map<String, Object> document,
      String eventId,
      String agentId,
      long occurredAt,
      String payloadJson,
      Long sourceTimestamp,
      Object[] source) {
    String eventType = text(document, "event_type");
    String status = text(document, "status");
    int dot = eventType.indexOf('.');
    String entityId = text(document, "entity_id");
    TreeSet<String> tags = new TreeSet<>();
    if (document.get("tags") instanceof List<?> items) {
      for (Object tag : items) {
        tags.add(((String) tag).toLowerCase(Locale.ROOT));
      }
    }
    return new Object[] {
      eventId,
      eventType,
      dot < 0 ? eventType : eventType.substring(0, dot), // event_category
      ERROR_EVENT_TYPES.contains(eventType) || "error".equals(status), // is_error
      agentId,
      text(document, "agent_type").toLowerCase(Locale.ROOT),
      entityId == null ? agentId : entityId,
      text(document, "tenant_id"),
      text(document, "session_id"),
      text(document, "trace_id"),
      text(document, "parent_event_id"),
      status,
      (Long) document.get("duration_ms"),
      new ArrayList<>(tags),
      occurredAt,
      payloadJson,
      payloadJson.length(), // payload_bytes
      sourceTimestamp == null ? null : sourceTimestamp - occurredAt, // ingest_lag_ms
      source,
      contractName,
    };
  }

  /** A string field, or null when absent; a field of another type fails the record (to Python). */
  private static String text(Map<String, Object> document, String name) {
    return (String) document.get(name);
  }

  private byte[] encode(Object[] signal) throws IOException {
    buffer.reset();
    buffer.write(0);
    buffer.write(signalSchemaId >>> 24);
    buffer.write(signalSchemaId >>> 16);
    buffer.write(signalSchemaId >>> 8);
    buffer.write(signalSchemaId);
    encoder = EncoderFactory.get().binaryEncoder(buffer, encoder); // buffered: one copy per record
    signals.write(signal, encoder);
    encoder.flush();
    return buffer.toByteArray();
  }

  /**
   * {@code occurred_at} as UTC epoch milliseconds, or null unless it is exactly {@code
   * YYYY-MM-DD(T|t)hh:mm:ss[.f{1,9}](Z|z|+hh:mm|-hh:mm)} naming a real instant of the years 1000 to 8999 with an
   * offset within 18 hours. Like Python's {@code datetime.fromisoformat}: the fraction truncated to the
   * millisecond (Python keeps microseconds, then the platform floors them to milliseconds). Read by hand: a
   * {@code DateTimeFormatter} cost more than the rest of the event's normalization.
   */
  static Long epochMillis(String text) {
    int n = text.length();
    if (n < 20
        || text.charAt(4) != '-'
        || text.charAt(7) != '-'
        || (text.charAt(10) != 'T' && text.charAt(10) != 't')
        || text.charAt(13) != ':'
        || text.charAt(16) != ':') {
      return null;
    }
    int year = digits(text, 0, 4);
    int month = digits(text, 5, 2);
    int day = digits(text, 8, 2);
    int hour = digits(text, 11, 2);
    int minute = digits(text, 14, 2);
    int second = digits(text, 17, 2);
    if (year < MIN_YEAR || year > MAX_YEAR || month < 1 || day < 1) {
      return null; // digits() gives -1 for a non-digit: every lower bound refuses it
    }
    if (hour < 0 || hour > 23 || minute < 0 || minute > 59 || second < 0 || second > 59) {
      return null;
    }
    int at = 19;
    long millis = 0;
    if (text.charAt(at) == '.') {
      int start = ++at;
      while (at < n && text.charAt(at) >= '0' && text.charAt(at) <= '9') {
        at++;
      }
      int count = at - start;
      if (count < 1 || count > 9) {
        return null;
      }
      for (int i = start; i < start + Math.min(count, 3); i++) {
        millis = millis * 10 + (text.charAt(i) - '0');
      }
      for (int i = count; i < 3; i++) {
        millis *= 10;
      }
    }
    if (at >= n) {
      return null;
    }
    char zone = text.charAt(at);
    int offsetSeconds;
    if (zone == 'Z' || zone == 'z') {
      if (at + 1 != n) {
        return null;
      }
      offsetSeconds = 0;
    } else if (zone == '+' || zone == '-') {
      if (at + 6 != n || text.charAt(at + 3) != ':') {
        return null;
      }
      int hours = digits(text, at + 1, 2);
      int minutes = digits(text, at + 4, 2);
      if (hours < 0 || minutes < 0 || minutes > 59 || hours * 60 + minutes > 18 * 60) {
        return null;
      }
      offsetSeconds = (zone == '-' ? -1 : 1) * (hours * 3600 + minutes * 60);
    } else {
      return null;
    }
    long epochDay;
    try {
      epochDay = LocalDate.of(year, month, day).toEpochDay(); // refuses February 30th and the like
    } catch (DateTimeException e) {
      return null;
    }
    long seconds = epochDay * 86_400L + hour * 3600L + minute * 60L + second - offsetSeconds;
    return seconds * 1000L + millis;
  }

  /** The non-negative number written by `count` ASCII digits at `start`, or -1. */
  private static int digits(String text, int start, int count) {
    int value = 0;
    for (int i = start; i < start + count; i++) {
      char c = text.charAt(i);
      if (c < '0' || c > '9') {
        return -1;
      }
      value = value * 10 + (c - '0');
    }
    return value;
  }
}
