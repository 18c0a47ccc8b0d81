package dev.headwater.flink;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;

import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** The reader of the plain domain: what it reads, and everything it leaves to Python. */
class PlainJsonTest {
  private static Map<String, Object> read(String json) {
    return PlainJson.object(json.getBytes(StandardCharsets.UTF_8), 0);
  }

  @Test
  void readsThePlainDomainAsPythonDoes() {
    Map<String, Object> object =
        read(" {\"a\" : [1, -2, 0, -0, 9223372036854775807, true, false, null],\n\"b\":{\"c\":\"x\\\"\\\\\\/\\n\\r\\t\\u0041\"},\"\":{}}\r\n");
    assertNotNull(object);
    assertEquals(Arrays.asList(1L, -2L, 0L, 0L, Long.MAX_VALUE, true, false, null), object.get("a"));
    assertEquals(Map.of("c", "x\"\\/\n\r\tA"), object.get("b"));
    assertEquals(Map.of(), object.get(""));
    assertEquals(
        "{\"\":{},\"a\":[1,-2,0,0,9223372036854775807,true,false,null],\"b\":{\"c\":\"x\\\"\\\\/\\n\\r\\tA\"}}",
        PlainJson.canonical(object));
  }

  @Test
  void leavesEverythingElseToPython() {
    String[] outside = {
      "{\"a\":1.0}", "{\"a\":1e3}", "{\"a\":1E3}", "{\"a\":01}", "{\"a\":-}", "{\"a\":9223372036854775808}",
      "{\"a\":-9223372036854775808}", "{\"a\":NaN}", "{\"a\":Infinity}", "{\"a\":\"\u00e9\"}", "{\"a\":\"\\u00e9\"}",
      "{\"a\":\"\\u001f\"}", "{\"a\":\"\\b\"}", "{\"a\":\"\\f\"}", "{\"a\":\"\\x\"}", "{\"a\":\"\\u12\"}",
      "{\"a\":\"tab\there\"}", "{\"\u00e9\":1}", "{\"a\":1,\"a\":2}", "{\"a\":1", "{\"a\":1}x", "{\"a\":1}{}",
      "[1]", "\"a\"", "1", "{\"a\" 1}", "{\"a\":1,}", "{,}", "{\"a\":[1,]}", "{\"a\":tru}", "{\"a\":nul}",
      "{a:1}", "{'a':1}", "", "   ", "{\"a\":\"unterminated}",
    };
    for (String json : outside) {
      assertNull(read(json), json);
    }
    assertNull(read("{\"a\":" + "[".repeat(PlainJson.MAX_DEPTH) + "]".repeat(PlainJson.MAX_DEPTH) + "}"));
    assertNotNull(read("{\"a\":" + "[".repeat(PlainJson.MAX_DEPTH - 1) + "]".repeat(PlainJson.MAX_DEPTH - 1) + "}"));
  }

  @Test
  void readsFromAnOffset() {
    byte[] framed = "\0\0\0\0\7{\"a\":1}".getBytes(StandardCharsets.US_ASCII);
    assertEquals(Map.of("a", 1L), PlainJson.object(framed, 5));
  }
}
