package dev.headwater.connect;

import com.networknt.schema.Error;
import com.networknt.schema.Schema;
import com.networknt.schema.SchemaRegistry;
import com.networknt.schema.SchemaRegistryConfig;
import com.networknt.schema.SpecificationVersion;
import com.networknt.schema.path.PathType;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.apache.kafka.common.config.AbstractConfig;
import org.apache.kafka.common.config.ConfigDef;
import org.apache.kafka.common.config.ConfigException;
import org.apache.kafka.connect.connector.ConnectRecord;
import org.apache.kafka.connect.errors.DataException;
import org.apache.kafka.connect.header.Headers;
import org.apache.kafka.connect.source.SourceRecord;
import org.apache.kafka.connect.transforms.Transformation;
import tools.jackson.core.JacksonException;
import tools.jackson.databind.JsonNode;
import tools.jackson.databind.json.JsonMapper;
import tools.jackson.databind.node.ArrayNode;
import tools.jackson.databind.node.ObjectNode;

/**
 * Validates each record bound for a contracted topic against that topic's JSON Schema (draft 7, formats asserted)
 * and re-routes a record that breaks it to the dead-letter topic, unchanged, with headers saying why and where
 * it came from. Records of other topics, and valid ones, pass untouched.
 *
 * <p>Config: {@code dead.letter.topic}, {@code topics} (the contracted topics) and {@code contract.<topic>} (the
 * contract's JSON Schema text) for each; {@code pipeline} names the connector in the dead letters. The platform
 * derives all of it from its catalog.
 */
public class ContractCheck<R extends ConnectRecord<R>> implements Transformation<R> {

  public static final String DEAD_LETTER_TOPIC = "dead.letter.topic";
  public static final String TOPICS = "topics";
  public static final String CONTRACT_PREFIX = "contract.";
  public static final String PIPELINE = "pipeline";

  /** The header names every dead letter of the platform's outboxes uses (headwater/cdc.py has the same). */
  public static final String HEADER_PREFIX = "headwater.deadletter.";

  public static final String REASON = HEADER_PREFIX + "reason";
  public static final String REASON_CODE = HEADER_PREFIX + "reason_code";
  public static final String FIELD = HEADER_PREFIX + "field";
  public static final String RULE = HEADER_PREFIX + "rule";
  public static final String VIOLATIONS = HEADER_PREFIX + "violations";
  public static final String SOURCE_TOPIC = HEADER_PREFIX + "source_topic";
  public static final String SOURCE_LSN = HEADER_PREFIX + "source_lsn";
  public static final String AGGREGATE_ID = HEADER_PREFIX + "aggregate_id";
  public static final String CONTRACT = HEADER_PREFIX + "contract";
  public static final String PIPELINE_HEADER = HEADER_PREFIX + "pipeline";

  public static final String MALFORMED_JSON = "malformed_json";
  public static final String SCHEMA_VIOLATION = "schema_violation";
  public static final String EMPTY_RECORD = "empty_record";

  private static final int MAX_REASON_VIOLATIONS = 5;
  private static final int MAX_VIOLATIONS = 50;

  static final ConfigDef CONFIG_DEF =
      new ConfigDef()
          .define(
              DEAD_LETTER_TOPIC,
              ConfigDef.Type.STRING,
              ConfigDef.NO_DEFAULT_VALUE,
              new ConfigDef.NonEmptyString(),
              ConfigDef.Importance.HIGH,
              "Where a record that breaks its topic's contract goes.")
          .define(
              TOPICS,
              ConfigDef.Type.LIST,
              ConfigDef.NO_DEFAULT_VALUE,
              ConfigDef.Importance.HIGH,
              "The contracted topics; each needs contract.<topic>.")
          .define(
              PIPELINE,
              ConfigDef.Type.STRING,
              "",
              ConfigDef.Importance.LOW,
              "The connector's name, written to each dead letter.");

  private static final JsonMapper JSON = JsonMapper.builder().build();

  private final Map<String, Contract> contracts = new HashMap<>();
  private String deadLetterTopic;
  private String pipeline;

  private record Contract(String id, Schema schema) {}

  /** One broken rule: where (a JSON Pointer, "" for the whole payload), which keyword, and a short message. */
  public record Violation(String field, String rule, String message) {}

  @Override
  public void configure(Map<String, ?> configs) {
    AbstractConfig config = new AbstractConfig(CONFIG_DEF, configs);
    deadLetterTopic = config.getString(DEAD_LETTER_TOPIC);
    pipeline = config.getString(PIPELINE);
    List<String> topics = config.getList(TOPICS);
    if (topics.isEmpty()) {
      throw new ConfigException(TOPICS, "", "at least one contracted topic");
    }
    SchemaRegistry registry =
        SchemaRegistry.withDefaultDialect(
            SpecificationVersion.DRAFT_7,
            builder ->
                builder.schemaRegistryConfig(
                    SchemaRegistryConfig.builder()
                        .pathType(PathType.JSON_POINTER)
                        .formatAssertionsEnabled(true)
                        .build()));
    contracts.clear();
    for (String topic : topics) {
      Object text = configs.get(CONTRACT_PREFIX + topic);
      if (!(text instanceof String) || ((String) text).isBlank()) {
        throw new ConfigException(
            CONTRACT_PREFIX + topic, text, "the JSON Schema of " + topic + "'s data contract");
      }
      JsonNode node;
      try {
        node = JSON.readTree((String) text);
      } catch (JacksonException e) {
        throw new ConfigException(
            CONTRACT_PREFIX + topic, "(not JSON)", "a JSON Schema document: " + e.getOriginalMessage());
      }
      String id = node.path("$id").asString(topic);
      contracts.put(topic, new Contract(id, registry.getSchema(node)));
    }
  }

  @Override
  public R apply(R record) {
    if (record == null) {
      return null;
    }
    Contract contract = contracts.get(record.topic());
    if (contract == null) {
      return record;
    }
    Rejection rejection = check(contract, record.value());
    if (rejection == null) {
      return record;
    }
    Headers headers = record.headers().duplicate();
    Violation first = rejection.violations.get(0);
    headers.addString(REASON, reason(rejection.violations));
    headers.addString(REASON_CODE, rejection.code);
    headers.addString(FIELD, first.field());
    headers.addString(RULE, first.rule());
    headers.addString(VIOLATIONS, violationsJson(rejection.violations));
    headers.addString(SOURCE_TOPIC, record.topic());
    headers.addString(CONTRACT, contract.id());
    if (record.key() != null) {
      headers.addString(AGGREGATE_ID, String.valueOf(record.key()));
    }
    if (record instanceof SourceRecord source && source.sourceOffset() != null) {
      Object lsn = source.sourceOffset().get("lsn");
      if (lsn != null) {
        headers.addString(SOURCE_LSN, String.valueOf(lsn));
      }
    }
    if (!pipeline.isEmpty()) {
      headers.addString(PIPELINE_HEADER, pipeline);
    }
    return record.newRecord(
        deadLetterTopic,
        null,
        record.keySchema(),
        record.key(),
        record.valueSchema(),
        record.value(),
        record.timestamp(),
        headers);
  }

  private record Rejection(String code, List<Violation> violations) {}

  /** Null when the value keeps the contract; else why not. */
  private static Rejection check(Contract contract, Object value) {
    String text;
    if (value == null) {
      return new Rejection(EMPTY_RECORD, List.of(new Violation("", "type", "no payload")));
    } else if (value instanceof String s) {
      text = s;
    } else if (value instanceof byte[] b) {
      text = new String(b, StandardCharsets.UTF_8);
    } else {
      // A structured value means the converter or the router is not the one this check is configured for:
      // fail the task loudly rather than pass unchecked events or dead-letter valid ones.
      throw new DataException(
          "contract check expects the payload as JSON text (the outbox router without expand.json.payload, "
              + "StringConverter); got "
              + value.getClass().getName());
    }
    JsonNode node;
    try {
      node = JSON.readTree(text);
    } catch (JacksonException e) {
      return new Rejection(
          MALFORMED_JSON, List.of(new Violation("", "json", "not JSON: " + e.getOriginalMessage())));
    }
    if (node == null || node.isMissingNode()) {
      return new Rejection(MALFORMED_JSON, List.of(new Violation("", "json", "not JSON: empty")));
    }
    List<Error> errors = contract.schema().validate(node);
    if (errors.isEmpty()) {
      return null;
    }
    Map<String, Violation> found = new LinkedHashMap<>();
    for (Error error : errors) {
      Violation v = violation(error);
      found.putIfAbsent(v.field() + "\u0000" + v.rule(), v);
    }
    List<Violation> violations = new ArrayList<>(found.values());
    violations.sort(Comparator.comparing(Violation::field).thenComparing(Violation::rule));
    if (violations.size() > MAX_VIOLATIONS) {
      violations = violations.subList(0, MAX_VIOLATIONS);
    }
    return new Rejection(SCHEMA_VIOLATION, violations);
  }

  private static Violation violation(Error error) {
    String where = error.getInstanceLocation() == null ? "" : error.getInstanceLocation().toString();
    String rule = error.getKeyword() == null ? "schema" : error.getKeyword();
    String property = error.getProperty();
    if (("required".equals(rule) || "additionalProperties".equals(rule)) && property != null) {
      String field = where + "/" + property.replace("~", "~0").replace("/", "~1");
      String message =
          "required".equals(rule) ? "missing required field" : "field is not in the contract";
      return new Violation(field, rule, message);
    }
    String message = error.getMessage() == null ? rule : error.getMessage();
    // networknt prefixes the location; the field says it already.
    String prefix = where + ": ";
    if (message.startsWith(prefix)) {
      message = message.substring(prefix.length());
    }
    return new Violation(where, rule, message);
  }

  static String reason(List<Violation> violations) {
    StringBuilder out = new StringBuilder();
    int shown = Math.min(violations.size(), MAX_REASON_VIOLATIONS);
    for (int i = 0; i < shown; i++) {
      Violation v = violations.get(i);
      if (i > 0) {
        out.append("; ");
      }
      out.append(v.field().isEmpty() ? "(record)" : v.field()).append(": ").append(v.message());
    }
    if (violations.size() > shown) {
      out.append("; and ").append(violations.size() - shown).append(" more");
    }
    return out.toString();
  }

  private static String violationsJson(List<Violation> violations) {
    ArrayNode array = JSON.createArrayNode();
    for (Violation v : violations) {
      ObjectNode o = array.addObject();
      o.put("field", v.field());
      o.put("rule", v.rule());
      o.put("message", v.message());
    }
    return JSON.writeValueAsString(array);
  }

  @Override
  public ConfigDef config() {
    return CONFIG_DEF;
  }

  @Override
  public void close() {
    contracts.clear();
  }
}
