package dev.headwater.flink;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import org.apache.flink.types.Row;
import org.junit.jupiter.api.Test;

/** The cases that decide the domain; tests/flink holds the signals byte-equal with the Python path. */
class AcceptAgentEventTest {
  // The catalog's schemas, beside this project in the repository (and in the image's build stage).
  private static final Path SCHEMAS = Path.of("../../catalog/schemas");

  private static AcceptAgentEvent function() throws IOException {
    return new AcceptAgentEvent(
        Files.readString(SCHEMAS.resolve("agents.events.raw.v1.json")),
        "agents.events.raw.v1",
        Files.readString(SCHEMAS.resolve("agents.signals.v1.avsc")),
        7);
  }

  private static byte[] event(String extra) {
    return ("{\"event_id\":\"e-1\",\"event_type\":\"tool.failed\",\"agent_id\":\"a-1\",\"agent_type\":\"Planner\","
            + "\"occurred_at\":\"2026-11-29T10:00:00.123456789+01:00\",\"payload\":{\"b\":1,\"a\":[true,null,\"x\\ny\"]}"
            + extra
            + "}")
        .getBytes(StandardCharsets.UTF_8);
  }

  private static Row accept(AcceptAgentEvent f, byte[] value) throws IOException {
    return f.accept(value, "agents.events.raw.v1", 3, 42L, Instant.ofEpochMilli(1_800_000_000_000L));
  }

  @Test
  void decidesAValidEventAndEncodesItsSignalWithTheRegistryId() throws IOException {
    Row row = accept(function(), event(",\"tags\":[\"B\",\"a\",\"b\"]"));
    assertNotNull(row);
    assertEquals(true, row.getField(0));
    assertEquals(true, row.getField(1));
    assertEquals("e-1", row.getField(2));
    long expected = Instant.parse("2026-11-29T09:00:00.123Z").toEpochMilli();
    assertEquals(expected, row.getField(3));
    assertArrayEquals("a-1".getBytes(StandardCharsets.UTF_8), (byte[]) row.getField(4));
    byte[] signal = (byte[]) row.getField(5);
    assertArrayEquals(new byte[] {0, 0, 0, 0, 7}, java.util.Arrays.copyOf(signal, 5));
    assertEquals(expected, row.getField(6));
  }

  @Test
  void leavesEverythingOutsideItsDomainToPython() throws IOException {
    AcceptAgentEvent f = function();
    assertNull(accept(f, event(",\"duration_ms\":1.0")), "a float");
    assertNull(accept(f, event(",\"tenant_id\":\"t\\u00e9\"")), "a non-ASCII string");
    assertNull(accept(f, event(",\"tenant_id\":\"caf\u00e9\"")), "non-ASCII bytes");
    assertNull(accept(f, event(",\"tenant_id\":\"t\\u001f\"")), "a control character");
    assertNull(accept(f, event(",\"status\":\"broken\"")), "a contract violation");
    assertNull(accept(f, event(",\"event_id\":\"e-2\"")), "a duplicate key");
    assertNull(accept(f, (" " + new String(event(""), StandardCharsets.UTF_8)).getBytes(StandardCharsets.UTF_8)));
    assertNull(accept(f, (new String(event(""), StandardCharsets.UTF_8) + "{}").getBytes(StandardCharsets.UTF_8)));
    assertNull(accept(f, new byte[] {0, 0, 0, 1}), "a short frame");
    assertNull(accept(f, new byte[0]));
    assertNull(accept(f, null));
    String far = new String(event(""), StandardCharsets.UTF_8).replace("2026-11-29", "0999-11-29");
    assertNull(accept(f, far.getBytes(StandardCharsets.UTF_8)), "a year outside 1000-8999");
    String big = new String(event(""), StandardCharsets.UTF_8).replace("\"b\":1", "\"b\":12345678901234567890");
    assertNull(accept(f, big.getBytes(StandardCharsets.UTF_8)), "an integer beyond a long");
  }

  @Test
  void readsAFramedRecordAndKeepsItsSchemaId() throws IOException {
    byte[] body = event("");
    byte[] framed = new byte[body.length + 5];
    framed[4] = 9;
    System.arraycopy(body, 0, framed, 5, body.length);
    assertNotNull(accept(function(), framed));
  }

  @Test
  void writesCanonicalJsonAsPythonDoes() {
    String text = "{\"z\":{\"b\":[1,-2,{}],\"a\":\"q\\\"\\\\/\\t\"},\"A\":false,\"e\":[]}";
    assertEquals(
        "{\"A\":false,\"e\":[],\"z\":{\"a\":\"q\\\"\\\\/\\t\",\"b\":[1,-2,{}]}}",
        PlainJson.canonical(PlainJson.object(text.getBytes(StandardCharsets.US_ASCII), 0)));
  }

  @Test
  void readsEventTimesLikePythonOrNotAtAll() {
    assertEquals(0L, AcceptAgentEvent.epochMillis("1970-01-01t01:00:00.0009+01:00"));
    assertEquals(-1L, AcceptAgentEvent.epochMillis("1969-12-31T23:59:59.9999Z"));
    assertNull(AcceptAgentEvent.epochMillis("2026-02-30T00:00:00Z"));
    assertNull(AcceptAgentEvent.epochMillis("2026-01-01T23:59:60Z"));
    assertNull(AcceptAgentEvent.epochMillis("2026-01-01T00:00:00+19:00"));
    assertNull(AcceptAgentEvent.epochMillis("2026-01-01T00:00:00+01:60"));
    assertNull(AcceptAgentEvent.epochMillis("2026-01-01T00:00:00Z\n"));
    assertNull(AcceptAgentEvent.epochMillis("2026-01-01T00:00:00.Z"));
    assertNull(AcceptAgentEvent.epochMillis("2026-01-01T00:00:00.1234567890Z"));
    assertNull(AcceptAgentEvent.epochMillis("2026-01-01 00:00:00Z"));
    assertNull(AcceptAgentEvent.epochMillis("2026-01-01T00:00:0xZ"));
    assertEquals(
        Instant.parse("2024-02-29T12:30:15.123Z").toEpochMilli(),
        AcceptAgentEvent.epochMillis("2024-02-29T13:30:15.123999+01:00"));
    assertEquals(
        Instant.parse("2026-03-01T05:29:59Z").toEpochMilli(),
        AcceptAgentEvent.epochMillis("2026-02-28T23:59:59-05:30"));
  }

  @Test
  void judgesWithTheGeneralValidatorAContractItCannotCompile() throws IOException {
    // oneOf is not a keyword the compiled check knows: networknt's validator judges the record's values.
    String contract =
        Files.readString(SCHEMAS.resolve("agents.events.raw.v1.json"))
            .replaceFirst(
                "\"type\": \"object\",",
                "\"type\": \"object\", \"oneOf\": [{\"required\": [\"tags\"]}, {\"required\": [\"status\"]}],");
    AcceptAgentEvent f =
        new AcceptAgentEvent(
            contract, "agents.events.raw.v1", Files.readString(SCHEMAS.resolve("agents.signals.v1.avsc")), 7);
    assertNotNull(accept(f, event(",\"tags\":[\"a\"]")));
    assertNull(accept(f, event(",\"tags\":[\"a\"],\"status\":\"ok\"")), "both");
    assertNull(accept(f, event("")), "neither");
  }

  @Test
  void refusesASignalSchemaWithAFieldItDoesNotFill() throws IOException {
    String schema =
        Files.readString(SCHEMAS.resolve("agents.signals.v1.avsc"))
            .replaceFirst("\"fields\": \\[", "\"fields\": [{\"name\": \"surprise\", \"type\": \"string\"}, ");
    IllegalArgumentException e =
        assertThrows(
            IllegalArgumentException.class,
            () ->
                new AcceptAgentEvent(
                    Files.readString(SCHEMAS.resolve("agents.events.raw.v1.json")), "c", schema, 7));
    assertTrue(e.getMessage().contains("surprise"), e.getMessage());
  }

  @Test
  void refusesAContractWithoutLimits() {
    assertThrows(
        IllegalArgumentException.class, () -> new AcceptAgentEvent("{\"type\":\"object\"}", "c", "{\"type\":\"record\",\"name\":\"R\",\"fields\":[{\"name\":\"source\",\"type\":\"string\"}]}", 1));
  }
}
