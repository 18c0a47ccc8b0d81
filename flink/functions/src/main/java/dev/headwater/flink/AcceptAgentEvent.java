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
import java.util.Iterator;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.function.Predicate;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericDatumWriter;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.BinaryEncoder;
import org.apache.avro.io.EncoderFactory;
import org.apache.flink.metrics.Counter;
import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.functions.FunctionContext;
import org.apache.flink.table.functions.ScalarFunction;
import org.apache.flink.types.Row;
import tools.jackson.core.JacksonException;
import tools.jackson.core.StreamReadFeature;
import tools.jackson.databind.DeserializationFeature;
import tools.jackson.databind.JsonNode;
import tools.jackson.databind.json.JsonMapper;

/**
 * The common case of agent-events in the JVM: a raw record this function can prove valid is validated,
 * normalized and encoded as its signal (Avro in the Confluent wire format, with the registry's id) right here;
 * every other record is left undecided, for the Python function ({@code flink_apps.agent_events.logic}) that
 * has the last word and explains rejects field by field.
 *
 * <p>Sound by construction: it decides only records whose every string is printable ASCII (tab, newline and
 * carriage return allowed) and whose numbers are all integers that fit a long, framed or bare JSON that starts with {@code
 * '{'}, valid against the contract, with an event time between the years 1000 and 8999. On that domain
 * Python's JSON, regular expressions, {@code datetime.fromisoformat} and {@code json.dumps(sort_keys=True)}
 * agree with Jackson, the validator, {@code java.time} and {@link #canonicalJson}; a test in tests/flink holds
 * the two paths byte-equal on a corpus. Anything outside it costs a trip to Python, never a wrong answer.
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

  private final String contractJson;
  private final String contractName;
  private final String signalSchemaJson;
  private final int signalSchemaId;

  private transient JsonMapper json;
  private transient Predicate<JsonNode> contract;
  private transient int maxRecordBytes;
  private transient int maxPayloadBytes;
  private transient org.apache.avro.Schema signalSchema;
  private transient org.apache.avro.Schema sourceSchema;
  private transient GenericDatumWriter<GenericRecord> writer;
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
    json =
        JsonMapper.builder()
            .enable(StreamReadFeature.STRICT_DUPLICATE_DETECTION)
            .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS)
            .build();
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
    contract = CompiledContract.compile(schemaNode).orElse(document -> general.validate(document).isEmpty());
    signalSchema = new org.apache.avro.Schema.Parser().parse(signalSchemaJson);
    sourceSchema = signalSchema.getField("source").schema();
    writer = new GenericDatumWriter<>(signalSchema);
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
    JsonNode document;
    try {
      document = json.readTree(value, start, value.length - start);
    } catch (JacksonException e) {
      return null;
    }
    if (document == null || !document.isObject() || !plain(document)) {
      return null;
    }
    if (!contract.test(document)) {
      return null;
    }
    Long occurredAt = epochMillis(document.get("occurred_at").asString());
    if (occurredAt == null) {
      return null;
    }
    String payloadJson = canonicalJson(document.get("payload"));
    if (payloadJson.length() > maxPayloadBytes) { // ASCII: one byte per char
      return null;
    }
    String agentId = document.get("agent_id").asString();
    Long sourceTimestamp = timestamp == null ? null : timestamp.toEpochMilli();
    GenericRecord signal = signal(document, agentId, occurredAt, payloadJson, sourceTimestamp);
    GenericRecord source = new GenericData.Record(sourceSchema);
    source.put("topic", topic);
    source.put("partition", partition);
    source.put("offset", offset);
    source.put("timestamp", sourceTimestamp);
    source.put("schema_id", schemaId);
    signal.put("source", source);
    return Row.of(
        true,
        true,
        document.get("event_id").asString(),
        occurredAt,
        agentId.getBytes(StandardCharsets.UTF_8),
        encode(signal),
        occurredAt);
  }

  private GenericRecord signal(
      JsonNode document, String agentId, long occurredAt, String payloadJson, Long sourceTimestamp) {
    String eventType = document.get("event_type").asString();
    String status = text(document, "status");
    GenericRecord signal = new GenericData.Record(signalSchema);
    signal.put("event_id", document.get("event_id").asString());
    signal.put("event_type", eventType);
    int dot = eventType.indexOf('.');
    signal.put("event_category", dot < 0 ? eventType : eventType.substring(0, dot));
    signal.put("is_error", ERROR_EVENT_TYPES.contains(eventType) || "error".equals(status));
    signal.put("agent_id", agentId);
    signal.put("agent_type", document.get("agent_type").asString().toLowerCase(Locale.ROOT));
    String entityId = text(document, "entity_id");
    signal.put("entity_id", entityId == null ? agentId : entityId);
    signal.put("tenant_id", text(document, "tenant_id"));
    signal.put("session_id", text(document, "session_id"));
    signal.put("trace_id", text(document, "trace_id"));
    signal.put("parent_event_id", text(document, "parent_event_id"));
    signal.put("status", status);
    JsonNode duration = document.get("duration_ms");
    signal.put("duration_ms", duration == null ? null : duration.longValue());
    TreeSet<String> tags = new TreeSet<>();
    JsonNode tagNodes = document.get("tags");
    if (tagNodes != null) {
      for (JsonNode tag : tagNodes) {
        tags.add(tag.asString().toLowerCase(Locale.ROOT));
      }
    }
    signal.put("tags", new ArrayList<>(tags));
    signal.put("occurred_at", occurredAt);
    signal.put("payload_json", payloadJson);
    signal.put("payload_bytes", payloadJson.length());
    signal.put("ingest_lag_ms", sourceTimestamp == null ? null : sourceTimestamp - occurredAt);
    signal.put("contract", contractName);
    return signal;
  }

  private static String text(JsonNode document, String name) {
    JsonNode node = document.get(name);
    return node == null ? null : node.asString();
  }

  private byte[] encode(GenericRecord signal) throws IOException {
    buffer.reset();
    buffer.write(0);
    buffer.write(signalSchemaId >>> 24);
    buffer.write(signalSchemaId >>> 16);
    buffer.write(signalSchemaId >>> 8);
    buffer.write(signalSchemaId);
    encoder = EncoderFactory.get().binaryEncoder(buffer, encoder); // buffered: one copy per record
    writer.write(signal, encoder);
    encoder.flush();
    return buffer.toByteArray();
  }

  /**
   * True when every string (names included) is printable ASCII, tab, newline or carriage return, and every
   * number is an integer that fits a long: the domain on which both paths provably agree.
   */
  static boolean plain(JsonNode node) {
    if (node.isString()) {
      return plain(node.asString());
    }
    if (node.isNumber()) {
      // Integers in a long: Python reads floats and very long integers differently (or not at all).
      return node.isInt() || node.isLong();
    }
    if (node.isObject()) {
      for (Map.Entry<String, JsonNode> field : node.properties()) {
        if (!plain(field.getKey()) || !plain(field.getValue())) {
          return false;
        }
      }
      return true;
    }
    if (node.isArray()) {
      for (JsonNode item : node) {
        if (!plain(item)) {
          return false;
        }
      }
      return true;
    }
    return node.isBoolean() || node.isNull();
  }

  private static boolean plain(String text) {
    for (int i = 0; i < text.length(); i++) {
      char c = text.charAt(i);
      if ((c < 0x20 || c > 0x7E) && c != '\t' && c != '\n' && c != '\r') {
        return false;
      }
    }
    return true;
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

  /**
   * Compact JSON with sorted keys, as Python's {@code json.dumps(v, sort_keys=True, separators=(",", ":"),
   * ensure_ascii=False)} writes a value of the {@link #plain} domain.
   */
  static String canonicalJson(JsonNode node) {
    StringBuilder out = new StringBuilder(256);
    writeCanonical(node, out);
    return out.toString();
  }

  private static void writeCanonical(JsonNode node, StringBuilder out) {
    if (node.isObject()) {
      TreeMap<String, JsonNode> sorted = new TreeMap<>();
      for (Map.Entry<String, JsonNode> field : node.properties()) {
        sorted.put(field.getKey(), field.getValue());
      }
      out.append('{');
      Iterator<Map.Entry<String, JsonNode>> fields = sorted.entrySet().iterator();
      while (fields.hasNext()) {
        Map.Entry<String, JsonNode> field = fields.next();
        writeString(field.getKey(), out);
        out.append(':');
        writeCanonical(field.getValue(), out);
        if (fields.hasNext()) {
          out.append(',');
        }
      }
      out.append('}');
    } else if (node.isArray()) {
      out.append('[');
      List<JsonNode> items = new ArrayList<>();
      node.forEach(items::add);
      for (int i = 0; i < items.size(); i++) {
        if (i > 0) {
          out.append(',');
        }
        writeCanonical(items.get(i), out);
      }
      out.append(']');
    } else if (node.isString()) {
      writeString(node.asString(), out);
    } else if (node.isIntegralNumber()) {
      out.append(node.bigIntegerValue().toString());
    } else if (node.isBoolean()) {
      out.append(node.booleanValue() ? "true" : "false");
    } else if (node.isNull()) {
      out.append("null");
    } else {
      throw new IllegalArgumentException("not in the plain domain: " + node.getNodeType());
    }
  }

  private static void writeString(String text, StringBuilder out) {
    out.append('"');
    for (int i = 0; i < text.length(); i++) {
      char c = text.charAt(i);
      switch (c) {
        case '"' -> out.append("\\\"");
        case '\\' -> out.append("\\\\");
        case '\n' -> out.append("\\n");
        case '\r' -> out.append("\\r");
        case '\t' -> out.append("\\t");
        default -> out.append(c);
      }
    }
    out.append('"');
  }
}
