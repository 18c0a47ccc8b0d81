package dev.headwater.flink;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.function.Predicate;
import org.junit.jupiter.api.Test;
import tools.jackson.databind.JsonNode;
import tools.jackson.databind.json.JsonMapper;

/** The compiled contract check; tests/flink holds it against the Python path on a large corpus. */
class CompiledContractTest {
  private static final JsonMapper JSON = JsonMapper.builder().build();

  private static Predicate<Object> shipped() throws IOException {
    JsonNode schema = JSON.readTree(Files.readString(Path.of("../../catalog/schemas/agents.events.raw.v1.json")));
    return CompiledContract.compile(schema).orElseThrow();
  }

  private static String event(String extra) {
    return "{\"event_id\":\"e-1\",\"event_type\":\"tool.called\",\"agent_id\":\"a-1\",\"agent_type\":\"planner\","
        + "\"occurred_at\":\"2026-11-29T10:00:00Z\",\"payload\":{}"
        + extra
        + "}";
  }

  private static Object read(String json) {
    return PlainJson.object(json.getBytes(StandardCharsets.US_ASCII), 0);
  }

  @Test
  void compilesTheShippedContractAndJudgesLikeTheContract() throws IOException {
    Predicate<Object> valid = shipped();
    assertTrue(valid.test(read(event(""))));
    assertTrue(valid.test(read(event(",\"tags\":[\"a\",\"b\"],\"duration_ms\":0,\"status\":\"ok\""))));
    assertTrue(valid.test(read(event(",\"tenant_id\":\"t\\n\"")))); // Python's $ allows one final \n
    assertFalse(valid.test(read(event(",\"tenant_id\":\"t\\r\"")))); // but not a final \r
    assertFalse(valid.test(read(event(",\"tags\":[\"a\",\"a\"]"))));
    assertFalse(valid.test(read(event(",\"duration_ms\":-1"))));
    assertFalse(valid.test(read(event(",\"duration_ms\":86400001"))));
    assertFalse(valid.test(read(event(",\"status\":\"maybe\""))));
    assertFalse(valid.test(read(event(",\"extra\":1"))));
    assertFalse(valid.test(read(event(",\"entity_id\":\"\""))));
    assertFalse(valid.test(read(event(",\"tags\":[1]"))));
    assertFalse(valid.test(read(event("").replace("\"agent_id\":\"a-1\",", ""))));
    assertFalse(valid.test(read(event("").replace("tool.called", "tool.teleported"))));
    assertFalse(valid.test(read(event("").replace("\"payload\":{}", "\"payload\":[]"))));
    assertFalse(valid.test(read(event(",\"duration_ms\":true")))); // a boolean is not an integer
    assertFalse(valid.test(read(event(",\"status\":null"))));
    assertTrue(valid.test(read(event("").replace("\"payload\":{}", "\"payload\":{\"a\":[{\"b\":null}]}"))));
  }

  @Test
  void refusesToCompileAKeywordItDoesNotKnow() {
    assertTrue(CompiledContract.compile(JSON.readTree("{\"type\":\"object\",\"oneOf\":[]}")).isEmpty());
    assertTrue(CompiledContract.compile(JSON.readTree("{\"type\":[\"string\",\"null\"]}")).isEmpty());
    assertTrue(
        CompiledContract.compile(JSON.readTree("{\"additionalProperties\":{\"type\":\"string\"}}")).isEmpty());
    assertEquals(true, CompiledContract.compile(JSON.readTree("{\"title\":\"x\",\"x-y\":1}")).isPresent());
  }
}
