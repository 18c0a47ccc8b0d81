package dev.headwater.connect;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.HashMap;
import java.util.Map;
import org.apache.kafka.common.config.ConfigException;
import org.apache.kafka.connect.data.Schema;
import org.apache.kafka.connect.errors.DataException;
import org.apache.kafka.connect.header.ConnectHeaders;
import org.apache.kafka.connect.header.Header;
import org.apache.kafka.connect.source.SourceRecord;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

class ContractCheckTest {

  private static final String TOPIC = "actions.approvals.v1";
  private static final String DLQ = "actions.outbox_deadletter.v1";
  private static final String CONTRACT =
      """
      {"$schema": "http://json-schema.org/draft-07/schema#", "$id": "urn:test:approvals",
       "type": "object", "required": ["approval_id", "decided_at"], "additionalProperties": false,
       "properties": {"approval_id": {"type": "string", "minLength": 1},
                      "decided_at": {"type": "string", "format": "date-time"},
                      "sequence": {"type": "integer", "minimum": 0}}}
      """;

  private ContractCheck<SourceRecord> check;

  @BeforeEach
  void configure() {
    check = new ContractCheck<>();
    Map<String, Object> config = new HashMap<>();
    config.put("dead.letter.topic", DLQ);
    config.put("topics", TOPIC);
    config.put("contract." + TOPIC, CONTRACT);
    config.put("pipeline", "agent-actions-db-outbox");
    check.configure(config);
  }

  private static SourceRecord record(String topic, Object value) {
    ConnectHeaders headers = new ConnectHeaders();
    headers.addString("id", "row-1");
    return new SourceRecord(
        Map.of("server", "agent-actions-db"),
        Map.of("lsn", 12345L),
        topic,
        2,
        Schema.STRING_SCHEMA,
        "appr-1",
        Schema.OPTIONAL_STRING_SCHEMA,
        value,
        1000L,
        headers);
  }

  private static String header(SourceRecord r, String name) {
    Header h = r.headers().lastWithName(name);
    return h == null ? null : String.valueOf(h.value());
  }

  @Test
  void aValidPayloadPassesUntouched() {
    SourceRecord in =
        record(TOPIC, "{\"approval_id\": \"a\", \"decided_at\": \"2026-11-29T07:00:00Z\", \"sequence\": 3}");
    assertSame(in, check.apply(in));
  }

  @Test
  void aTopicWithoutContractPassesUntouched() {
    SourceRecord in = record("elsewhere", "not json");
    assertSame(in, check.apply(in));
  }

  @Test
  void notJsonIsDeadLetteredAsMalformed() {
    SourceRecord out = check.apply(record(TOPIC, "{not json"));
    assertEquals(DLQ, out.topic());
    assertEquals(null, out.kafkaPartition());
    assertEquals("{not json", out.value());
    assertEquals("appr-1", out.key());
    assertEquals("malformed_json", header(out, ContractCheck.REASON_CODE));
    assertEquals("", header(out, ContractCheck.FIELD));
    assertEquals("json", header(out, ContractCheck.RULE));
    assertEquals(TOPIC, header(out, ContractCheck.SOURCE_TOPIC));
    assertEquals("12345", header(out, ContractCheck.SOURCE_LSN));
    assertEquals("appr-1", header(out, ContractCheck.AGGREGATE_ID));
    assertEquals("urn:test:approvals", header(out, ContractCheck.CONTRACT));
    assertEquals("agent-actions-db-outbox", header(out, ContractCheck.PIPELINE_HEADER));
    assertEquals("row-1", header(out, "id"));
    assertEquals(Map.of("lsn", 12345L), out.sourceOffset());
  }

  @Test
  void aMissingRequiredFieldNamesTheFieldAndTheRule() {
    SourceRecord out = check.apply(record(TOPIC, "{\"decided_at\": \"2026-11-29T07:00:00Z\"}"));
    assertEquals(DLQ, out.topic());
    assertEquals("schema_violation", header(out, ContractCheck.REASON_CODE));
    assertEquals("/approval_id", header(out, ContractCheck.FIELD));
    assertEquals("required", header(out, ContractCheck.RULE));
    assertEquals("/approval_id: missing required field", header(out, ContractCheck.REASON));
  }

  @Test
  void aWrongTypeNamesTheFieldAndTheRule() {
    SourceRecord out =
        check.apply(
            record(TOPIC, "{\"approval_id\": \"a\", \"decided_at\": \"2026-11-29T07:00:00Z\", \"sequence\": \"x\"}"));
    assertEquals(DLQ, out.topic());
    assertEquals("/sequence", header(out, ContractCheck.FIELD));
    assertEquals("type", header(out, ContractCheck.RULE));
    assertTrue(header(out, ContractCheck.REASON).startsWith("/sequence: "), header(out, ContractCheck.REASON));
  }

  @Test
  void everyViolationIsListedInOrderTheFirstInFieldAndRule() {
    SourceRecord out = check.apply(record(TOPIC, "{\"sequence\": -1, \"extra\": 1, \"decided_at\": \"yesterday\"}"));
    String violations = header(out, ContractCheck.VIOLATIONS);
    for (String expected :
        new String[] {
          "\"field\":\"/approval_id\",\"rule\":\"required\"",
          "\"field\":\"/decided_at\",\"rule\":\"format\"",
          "\"field\":\"/extra\",\"rule\":\"additionalProperties\"",
          "\"field\":\"/sequence\",\"rule\":\"minimum\"",
        }) {
      assertTrue(violations.contains(expected), expected + " in " + violations);
    }
    assertEquals("/approval_id", header(out, ContractCheck.FIELD));
    assertEquals("required", header(out, ContractCheck.RULE));
  }

  @Test
  void aJsonScalarBreaksTheTypeRule() {
    SourceRecord out = check.apply(record(TOPIC, "\"just text\""));
    assertEquals(DLQ, out.topic());
    assertEquals("", header(out, ContractCheck.FIELD));
    assertEquals("type", header(out, ContractCheck.RULE));
  }

  @Test
  void aStructuredValueFailsTheTaskInsteadOfPassingUnchecked() {
    assertThrows(DataException.class, () -> check.apply(record(TOPIC, Map.of("approval_id", "a"))));
  }

  @Test
  void aTopicWithoutItsContractIsAConfigError() {
    ContractCheck<SourceRecord> bad = new ContractCheck<>();
    Map<String, Object> config = new HashMap<>();
    config.put("dead.letter.topic", DLQ);
    config.put("topics", TOPIC + ",actions.tickets.v1");
    config.put("contract." + TOPIC, CONTRACT);
    ConfigException e = assertThrows(ConfigException.class, () -> bad.configure(config));
    assertTrue(e.getMessage().contains("contract.actions.tickets.v1"), e.getMessage());
  }
}
