package dev.headwater.flink;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.Map;
import org.apache.flink.table.data.GenericMapData;
import org.apache.flink.table.data.StringData;
import org.junit.jupiter.api.Test;

/**
 * The hop's traceparent on the vectors tests/unit/test_tracing.py and tests/flink/test_trace_headers.py hold
 * the Python reference and the SQL expression to (tests/flink also runs this function beside the SQL).
 */
class HopTraceparentTest {
  private static final String PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

  private static String hop(String parent, String topic, int partition, long offset) {
    Map<Object, Object> headers = new HashMap<>();
    headers.put(StringData.fromString("other"), "x".getBytes(StandardCharsets.UTF_8));
    if (parent != null) {
      headers.put(StringData.fromString(HopTraceparent.HEADER), parent.getBytes(StandardCharsets.UTF_8));
    }
    return new HopTraceparent().eval(new GenericMapData(headers), StringData.fromString(topic), partition, offset);
  }

  @Test
  void continuesAValidTraceAndStartsOneOtherwise() {
    assertEquals("00-0af7651916cd43dd8448eb211c80319c-dba9426a534a4a9b-01", hop(PARENT, "raw", 0, 5));
    assertEquals("00-f898bf06db451d73c38440e1e80bc918-a408699215008471-01", hop(null, "raw", 1, 7));
    String started = "00-0dd2e293d489ff63a0a6f7a9d4b95725-2ae423010d00f9de-01";
    assertEquals(started, hop("garbage", "raw", 2, 9));
    assertEquals(started, hop("00-" + "0".repeat(32) + "-b7ad6b7169203331-01", "raw", 2, 9));
    assertEquals(
        "00-0af7651916cd43dd8448eb211c80319c-dba9426a534a4a9b-00",
        hop(PARENT.substring(0, 53) + "00", "raw", 0, 5));
  }

  @Test
  void readsTheHeaderAsTheSqlDoes() {
    assertTrue(HopTraceparent.continues(bytes(PARENT)));
    assertTrue(HopTraceparent.continues(bytes(PARENT + "\n"))); // REGEXP's `$` before a final terminator
    assertFalse(HopTraceparent.continues(bytes(PARENT + "\n\n")));
    assertFalse(HopTraceparent.continues(bytes(PARENT.toUpperCase())));
    assertFalse(HopTraceparent.continues(bytes(PARENT.substring(0, 36) + "0".repeat(16) + "-01")));
    assertFalse(HopTraceparent.continues(bytes("01" + PARENT.substring(2))));
    assertFalse(HopTraceparent.continues(bytes(" " + PARENT)));
    assertFalse(HopTraceparent.continues(bytes(PARENT.substring(1))));
    assertFalse(HopTraceparent.continues(new byte[0]));
  }

  @Test
  void noPositionNoTraceparent() {
    assertNull(new HopTraceparent().eval(null, null, 0, 0L));
    assertNull(new HopTraceparent().eval(null, StringData.fromString("raw"), null, 0L));
  }

  private static byte[] bytes(String text) {
    return text.getBytes(StandardCharsets.UTF_8);
  }
}
