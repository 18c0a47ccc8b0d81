package dev.headwater.flink;

import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.regex.Pattern;
import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.data.ArrayData;
import org.apache.flink.table.data.MapData;
import org.apache.flink.table.data.StringData;
import org.apache.flink.table.functions.ScalarFunction;

/**
 * The traceparent of the record an app writes from a Kafka record: the same value as the SQL expression
 * {@code flink_apps.common.tracing.hop_traceparent_sql} (which stays the definition; a test in tests/flink
 * runs both over the same rows), without its per-record costs: the header map copied into Flink's binary
 * form to look one key up, a regular expression, and the strings built along the way.
 *
 * <p>The input's {@code traceparent} header continues when it is a W3C version-00 traceparent with non-zero
 * ids: same trace id and flags, the hop's span id the first 16 hex digits of SHA-256 over {@code
 * topic/partition/offset}. Otherwise a trace starts here, its id MD5 over the same text, flags {@code 01}.
 */
public final class HopTraceparent extends ScalarFunction {
  private static final long serialVersionUID = 1L;

  public static final String HEADER = "traceparent";
  private static final int LENGTH = 55; // 00-<32>-<16>-<2>

  // What the SQL expression uses (Flink's REGEXP is java.util.regex with find(); `$` there also matches before
  // a final line terminator, which only the slow path below can meet).
  private static final Pattern VALID = Pattern.compile("^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$");
  private static final String ZERO_TRACE = "00-" + "0".repeat(32) + "-";
  private static final String ZERO_SPAN = "-" + "0".repeat(16) + "-";
  private static final byte[] HEX = "0123456789abcdef".getBytes(StandardCharsets.US_ASCII);

  private transient MessageDigest sha256;
  private transient MessageDigest md5;

  // A String, not Flink's StringData: a result's class travels with its type into the pipeline's conversions
  // between tables and streams, which expect the default class.
  public String eval(
      @DataTypeHint(value = "MAP<STRING, BYTES>", bridgedTo = MapData.class) MapData headers,
      @DataTypeHint(value = "STRING", bridgedTo = StringData.class) StringData topic,
      Integer partition,
      Long offset) {
    if (topic == null || partition == null || offset == null) {
      return null; // as CONCAT over a NULL
    }
    byte[] position = (topic + "/" + partition + "/" + offset).getBytes(StandardCharsets.UTF_8);
    byte[] out = new byte[LENGTH];
    byte[] parent = header(headers);
    out[0] = '0';
    out[1] = '0';
    out[2] = '-';
    if (parent != null && continues(parent)) {
      System.arraycopy(parent, 3, out, 3, 33); // trace id and its dash
      out[53] = parent[53]; // flags: at the same place in the input (see continues)
      out[54] = parent[54];
    } else {
      hex(digest(md5(), position), 16, out, 3);
      out[35] = '-';
      out[53] = '0';
      out[54] = '1';
    }
    hex(digest(sha256(), position), 8, out, 36);
    out[52] = '-';
    return new String(out, StandardCharsets.US_ASCII);
  }

  /** The value of the `traceparent` header, or null (no headers, no such header, or a null value). */
  private static byte[] header(MapData headers) {
    if (headers == null) {
      return null;
    }
    ArrayData keys = headers.keyArray();
    for (int i = 0; i < headers.size(); i++) {
      if (!keys.isNullAt(i) && HEADER.equals(keys.getString(i).toString())) {
        ArrayData values = headers.valueArray();
        return values.isNullAt(i) ? null : values.getBinary(i);
      }
    }
    return null;
  }

  /**
   * Whether the header continues its trace: the SQL's test on the header decoded as UTF-8 (REGEXP with the
   * pattern above, and NOT LIKE zero trace / zero span). A match is 55 characters, or 55 and one line
   * terminator the regular expression's {@code $} lets through; in both the trace id and flags sit where a
   * plain one has them.
   */
  static boolean continues(byte[] header) {
    if (header.length == LENGTH && plain(header)) {
      return !(startsWith(header, ZERO_TRACE) || regionIs(header, 35, ZERO_SPAN));
    }
    String text = new String(header, StandardCharsets.UTF_8); // as DECODE(.., 'UTF-8'): malformed -> U+FFFD
    if (!VALID.matcher(text).find()) {
      return false;
    }
    // A line terminator after the flags: `%-0{16}-__` cannot reach the end, `00-0{32}-%` still holds.
    return !text.startsWith(ZERO_TRACE);
  }

  /** 55 ASCII bytes of the shape 00-hex{32}-hex{16}-hex{2}, hex lower case. */
  private static boolean plain(byte[] b) {
    if (b[0] != '0' || b[1] != '0' || b[2] != '-' || b[35] != '-' || b[52] != '-') {
      return false;
    }
    for (int i = 3; i < LENGTH; i++) {
      if (i == 35 || i == 52) {
        continue;
      }
      byte c = b[i];
      if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
        return false;
      }
    }
    return true;
  }

  private static boolean startsWith(byte[] b, String prefix) {
    return regionIs(b, 0, prefix);
  }

  private static boolean regionIs(byte[] b, int at, String expected) {
    for (int i = 0; i < expected.length(); i++) {
      if (b[at + i] != expected.charAt(i)) {
        return false;
      }
    }
    return true;
  }

  private static byte[] digest(MessageDigest digest, byte[] input) {
    digest.reset();
    return digest.digest(input);
  }

  /** The first `count` bytes of `bytes` as lower-case hex into `out` from `at`. */
  private static void hex(byte[] bytes, int count, byte[] out, int at) {
    for (int i = 0; i < count; i++) {
      out[at + 2 * i] = HEX[(bytes[i] >> 4) & 0xF];
      out[at + 2 * i + 1] = HEX[bytes[i] & 0xF];
    }
  }

  private MessageDigest sha256() {
    if (sha256 == null) {
      sha256 = algorithm("SHA-256");
    }
    return sha256;
  }

  private MessageDigest md5() {
    if (md5 == null) {
      md5 = algorithm("MD5");
    }
    return md5;
  }

  private static MessageDigest algorithm(String name) {
    try {
      return MessageDigest.getInstance(name);
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException(name + " is missing from this JVM", e);
    }
  }
}
