package dev.headwater.flink;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * JSON of the plain domain, read straight from a record's bytes: every string (names included) printable
 * ASCII, tab, newline or carriage return, and every number an integer that fits a long. On that domain
 * Python's {@code json} reads the same values; anything else (a non-ASCII byte, a float, a duplicate name,
 * malformed JSON, nesting deeper than {@link #MAX_DEPTH}) makes {@link #object} return null, and the record
 * goes to the Python path, which has the last word.
 *
 * <p>Values: {@code Map<String, Object>} (objects), {@code List<Object>} (arrays), {@code String}, {@code
 * Long}, {@code Boolean} and Java {@code null} for JSON null.
 *
 * <p>Why not Jackson's tree: a profile of the job put reading the tree and then walking it again to prove
 * the domain at a quarter of the source thread's CPU; this reads each byte once and proves the domain as it
 * goes.
 */
final class PlainJson {
  static final int MAX_DEPTH = 32;

  /** Thrown (preallocated, no stack trace) when the bytes leave the plain domain. */
  private static final RuntimeException OUTSIDE =
      new RuntimeException("outside the plain domain", null, false, false) {
        private static final long serialVersionUID = 1L;
      };

  private final byte[] in;
  private final int end;
  private int at;
  private StringBuilder escaped;

  private PlainJson(byte[] in, int start) {
    this.in = in;
    this.at = start;
    this.end = in.length;
  }

  /**
   * The object written in {@code in} from {@code start} to its end, or null unless it is one JSON object of the
   * plain domain.
   */
  static Map<String, Object> object(byte[] in, int start) {
    PlainJson reader = new PlainJson(in, start);
    int end = reader.end;
    try {
      reader.space();
      if (reader.at >= end || in[reader.at] != '{') {
        return null;
      }
      Object value = reader.value(0);
      reader.space();
      if (reader.at != end) {
        return null; // trailing data
      }
      @SuppressWarnings("unchecked")
      Map<String, Object> object = (Map<String, Object>) value;
      return object;
    } catch (RuntimeException e) { // OUTSIDE
      return null;
    }
  }

  /**
   * The byte at {@code i}, or 0 past the end: truncated JSON reads a byte no grammar rule accepts, and fails
   * there as any other bad byte does. (Not an index out of bounds: compiled code that meets one traps back
   * to the interpreter, and the job's malformed records made the JIT recompile this reader again and again.)
   */
  private byte byteAt(int i) {
    return i < end ? in[i] : 0;
  }

  private Object value(int depth) {
    byte b = byteAt(at); // 0 past the end: refused below
    switch (b) {
      case '{':
        return object(depth + 1);
      case '[':
        return array(depth + 1);
      case '"':
        return string();
      case 't':
        return literal("true", Boolean.TRUE);
      case 'f':
        return literal("false", Boolean.FALSE);
      case 'n':
        return literal("null", null);
      default:
        if (b == '-' || (b >= '0' && b <= '9')) {
          return number();
        }
        throw OUTSIDE;
    }
  }

  private Map<String, Object> object(int depth) {
    if (depth > MAX_DEPTH) {
      throw OUTSIDE;
    }
    at++; // {
    // An event's top level has a dozen or more fields: room for them without a resize.
    Map<String, Object> object = new HashMap<>(depth == 1 ? 32 : 16);
    space();
    if (byteAt(at) == '}') {
      at++;
      return object;
    }
    while (true) {
      space();
      if (byteAt(at) != '"') {
        throw OUTSIDE;
      }
      String name = string();
      space();
      if (byteAt(at++) != ':') {
        throw OUTSIDE;
      }
      space();
      int size = object.size();
      object.put(name, value(depth));
      if (object.size() == size) {
        throw OUTSIDE; // a duplicate name: Python keeps the last, a reader may keep either
      }
      space();
      byte next = byteAt(at++);
      if (next == '}') {
        return object;
      }
      if (next != ',') {
        throw OUTSIDE;
      }
    }
  }

  private List<Object> array(int depth) {
    if (depth > MAX_DEPTH) {
      throw OUTSIDE;
    }
    at++; // [
    List<Object> array = new ArrayList<>();
    space();
    if (byteAt(at) == ']') {
      at++;
      return array;
    }
    while (true) {
      space();
      array.add(value(depth));
      space();
      byte next = byteAt(at++);
      if (next == ']') {
        return array;
      }
      if (next != ',') {
        throw OUTSIDE;
      }
    }
  }

  private String string() {
    int start = ++at; // "
    while (true) {
      byte b = byteAt(at);
      if (b == '"') {
        at++;
        return new String(in, start, at - 1 - start, StandardCharsets.ISO_8859_1);
      }
      if (b == '\\') {
        return escapedString(start);
      }
      if (b < 0x20 || b > 0x7E) { // a raw control character (invalid JSON) or a non-ASCII byte (negative)
        throw OUTSIDE;
      }
      at++;
    }
  }

  /** The rest of a string that has an escape at {@code at}; its plain prefix starts at {@code start}. */
  private String escapedString(int start) {
    if (escaped == null) {
      escaped = new StringBuilder(64);
    }
    StringBuilder out = escaped;
    out.setLength(0);
    out.append(new String(in, start, at - start, StandardCharsets.ISO_8859_1));
    while (true) {
      byte b = byteAt(at++);
      if (b == '"') {
        return out.toString();
      }
      if (b == '\\') {
        byte e = byteAt(at++);
        switch (e) {
          case '"', '\\', '/' -> out.append((char) e);
          case 'n' -> out.append('\n');
          case 'r' -> out.append('\r');
          case 't' -> out.append('\t');
          case 'u' -> {
            int c = hex(at) << 12 | hex(at + 1) << 8 | hex(at + 2) << 4 | hex(at + 3);
            at += 4;
            if ((c < 0x20 || c > 0x7E) && c != '\t' && c != '\n' && c != '\r') {
              throw OUTSIDE;
            }
            out.append((char) c);
          }
          default -> throw OUTSIDE; // \b and \f write control characters; anything else is invalid JSON
        }
      } else if (b < 0x20 || b > 0x7E) {
        throw OUTSIDE;
      } else {
        out.append((char) b);
      }
    }
  }

  private int hex(int i) {
    byte b = byteAt(i);
    if (b >= '0' && b <= '9') {
      return b - '0';
    }
    if (b >= 'a' && b <= 'f') {
      return b - 'a' + 10;
    }
    if (b >= 'A' && b <= 'F') {
      return b - 'A' + 10;
    }
    throw OUTSIDE;
  }

  /** An integer in a long: -?(0|[1-9][0-9]*), not followed by a fraction or an exponent. */
  private Long number() {
    boolean negative = byteAt(at) == '-';
    if (negative) {
      at++;
    }
    int first = at;
    long value = 0;
    for (byte b = byteAt(at); b >= '0' && b <= '9'; b = byteAt(at)) {
      int digit = b - '0';
      if (value > (Long.MAX_VALUE - digit) / 10) {
        throw OUTSIDE; // beyond a long (Long.MIN_VALUE itself included: Python reads it, the domain does not)
      }
      value = value * 10 + digit;
      at++;
    }
    int digits = at - first;
    if (digits == 0 || (digits > 1 && byteAt(first) == '0')) {
      throw OUTSIDE; // no digits, or a leading zero: invalid JSON
    }
    byte next = byteAt(at);
    if (next == '.' || next == 'e' || next == 'E') {
      throw OUTSIDE; // a float
    }
    return negative ? -value : value;
  }

  private Object literal(String word, Boolean value) {
    for (int i = 0; i < word.length(); i++) {
      if (byteAt(at + i) != word.charAt(i)) {
        throw OUTSIDE;
      }
    }
    at += word.length();
    return value;
  }

  /** JSON's whitespace, as Python's reader skips it. */
  private void space() {
    for (byte b = byteAt(at); b == ' ' || b == '\t' || b == '\n' || b == '\r'; b = byteAt(at)) {
      at++;
    }
  }

  /**
   * Compact JSON with sorted keys, as Python's {@code json.dumps(v, sort_keys=True, separators=(",", ":"),
   * ensure_ascii=False)} writes a value of the plain domain.
   */
  static String canonical(Object value) {
    StringBuilder out = new StringBuilder(256);
    writeCanonical(value, out);
    return out.toString();
  }

  private static void writeCanonical(Object value, StringBuilder out) {
    if (value instanceof Map<?, ?> object) {
      String[] names = object.keySet().toArray(new String[0]);
      Arrays.sort(names); // UTF-16 order, Python's code point order on ASCII
      out.append('{');
      for (int i = 0; i < names.length; i++) {
        if (i > 0) {
          out.append(',');
        }
        writeString(names[i], out);
        out.append(':');
        writeCanonical(object.get(names[i]), out);
      }
      out.append('}');
    } else if (value instanceof List<?> array) {
      out.append('[');
      for (int i = 0; i < array.size(); i++) {
        if (i > 0) {
          out.append(',');
        }
        writeCanonical(array.get(i), out);
      }
      out.append(']');
    } else if (value instanceof String text) {
      writeString(text, out);
    } else if (value == null) {
      out.append("null");
    } else if (value instanceof Long || value instanceof Boolean) {
      out.append(value);
    } else {
      throw new IllegalArgumentException("not a plain JSON value: " + value.getClass().getName());
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
