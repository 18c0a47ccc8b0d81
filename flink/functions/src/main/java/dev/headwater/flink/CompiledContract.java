package dev.headwater.flink;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.function.Predicate;
import java.util.regex.Pattern;
import tools.jackson.databind.JsonNode;

/**
 * A JSON Schema (draft 7) compiled into a predicate over documents of the plain domain as {@link PlainJson}
 * reads them (printable-ASCII strings, integers in a long as {@code Long}, objects as maps, arrays as lists,
 * JSON null as {@code null}): true only when the document is valid.
 *
 * <p>Why not the general validator on the hot path: a profile put networknt's validator at a sixth of the
 * job's CPU per event, most of it in bookkeeping (paths, contexts, error lists) that a yes/no answer does not
 * need. This covers the keywords the platform's event contracts use; {@link #compile} returns empty for a
 * schema with any other keyword, and the caller keeps the general validator. A false "valid" here would
 * become a signal for an invalid event, so the answer is checked against the Python path, which has the last
 * word, by tests/flink/test_agent_events_native.py.
 */
final class CompiledContract {
  /** Annotations: they never change whether a document is valid. */
  private static final Set<String> ANNOTATIONS =
      Set.of("$schema", "$id", "$comment", "title", "description", "default", "examples", "format");

  private CompiledContract() {}

  /** The schema as a predicate, or empty when it uses a keyword this compiler does not know. */
  static Optional<Predicate<Object>> compile(JsonNode schema) {
    try {
      return Optional.of(node(schema));
    } catch (UnsupportedOperationException e) {
      return Optional.empty();
    }
  }

  private static Predicate<Object> node(JsonNode schema) {
    if (!schema.isObject()) {
      throw new UnsupportedOperationException("a boolean or non-object schema");
    }
    List<Predicate<Object>> checks = new ArrayList<>();
    boolean propertiesChecked = false;
    for (Map.Entry<String, JsonNode> keyword : schema.properties()) {
      String name = keyword.getKey();
      JsonNode value = keyword.getValue();
      if (ANNOTATIONS.contains(name) || name.startsWith("x-")) {
        continue;
      }
      if (name.equals("properties") || name.equals("additionalProperties")) {
        if (!propertiesChecked) { // one check for both keywords
          checks.add(properties(schema));
          propertiesChecked = true;
        }
        continue;
      }
      checks.add(
          switch (name) {
            case "type" -> type(value);
            case "enum" -> enumeration(value);
            case "minLength" -> length(value, true);
            case "maxLength" -> length(value, false);
            case "pattern" -> pattern(value);
            case "minimum" -> bound(value, true);
            case "maximum" -> bound(value, false);
            case "required" -> required(value);
            case "maxProperties" -> objectSize(value, false);
            case "minProperties" -> objectSize(value, true);
            case "maxItems" -> arraySize(value, false);
            case "minItems" -> arraySize(value, true);
            case "items" -> items(value);
            case "uniqueItems" -> unique(value);
            default -> throw new UnsupportedOperationException(name);
          });
    }
    return all(checks);
  }

  /** Every check, in a plain loop (a chain of {@code Predicate.and} is one call deeper per keyword). */
  private static Predicate<Object> all(List<Predicate<Object>> list) {
    @SuppressWarnings("unchecked")
    Predicate<Object>[] checks = list.toArray(new Predicate[0]);
    return document -> {
      for (Predicate<Object> check : checks) {
        if (!check.test(document)) {
          return false;
        }
      }
      return true;
    };
  }

  private static Predicate<Object> type(JsonNode value) {
    if (!value.isString()) {
      throw new UnsupportedOperationException("type as a list");
    }
    return switch (value.asString()) {
      case "string" -> node -> node instanceof String;
      // The plain domain has no floats (1.0 is never seen): its integers and numbers are the same longs.
      case "integer", "number" -> node -> node instanceof Long;
      case "boolean" -> node -> node instanceof Boolean;
      case "null" -> node -> node == null;
      case "object" -> node -> node instanceof Map;
      case "array" -> node -> node instanceof List;
      default -> throw new UnsupportedOperationException("type " + value.asString());
    };
  }

  private static Predicate<Object> enumeration(JsonNode value) {
    Set<String> allowed = new HashSet<>();
    for (JsonNode item : value) {
      if (!item.isString()) {
        throw new UnsupportedOperationException("an enum of non-strings");
      }
      allowed.add(item.asString());
    }
    return node -> node instanceof String text && allowed.contains(text);
  }

  private static int limit(JsonNode value) {
    if (!value.isInt() || value.intValue() < 0) {
      throw new UnsupportedOperationException("a limit that is not a non-negative int");
    }
    return value.intValue();
  }

  private static Predicate<Object> length(JsonNode value, boolean min) {
    int limit = limit(value);
    // Only strings are constrained; in the plain domain every character is one code point.
    return min
        ? node -> !(node instanceof String text) || text.length() >= limit
        : node -> !(node instanceof String text) || text.length() <= limit;
  }

  private static Predicate<Object> pattern(JsonNode value) {
    Predicate<String> matches = CharClassPattern.compile(value.asString()).orElseGet(() -> regex(value.asString()));
    return node -> !(node instanceof String text) || matches.test(text);
  }

  private static Predicate<String> regex(String pattern) {
    // UNIX_LINES: `$` may match before a final newline, as in Python's `re`, but not before a final `\r`.
    Pattern regex = Pattern.compile(pattern, Pattern.UNIX_LINES);
    return text -> regex.matcher(text).find();
  }

  private static Predicate<Object> bound(JsonNode value, boolean min) {
    if (!value.isIntegralNumber() || !value.canConvertToLong()) {
      throw new UnsupportedOperationException("a bound that is not an integer");
    }
    long limit = value.longValue();
    // Only numbers are constrained; the plain domain's numbers are integers in a long.
    return min
        ? node -> !(node instanceof Long number) || number >= limit
        : node -> !(node instanceof Long number) || number <= limit;
  }

  private static Predicate<Object> required(JsonNode value) {
    List<String> names = new ArrayList<>();
    value.forEach(name -> names.add(name.asString()));
    return node -> {
      if (!(node instanceof Map<?, ?> object)) {
        return true;
      }
      for (String name : names) {
        if (!object.containsKey(name)) {
          return false;
        }
      }
      return true;
    };
  }

  /** `properties` and `additionalProperties` together. */
  private static Predicate<Object> properties(JsonNode schema) {
    Map<String, Predicate<Object>> known = new HashMap<>();
    for (Map.Entry<String, JsonNode> property : schema.path("properties").properties()) {
      known.put(property.getKey(), node(property.getValue()));
    }
    JsonNode additional = schema.get("additionalProperties");
    final boolean othersAllowed;
    if (additional == null || (additional.isBoolean() && additional.booleanValue())) {
      othersAllowed = true;
    } else if (additional.isBoolean()) {
      othersAllowed = false;
    } else {
      throw new UnsupportedOperationException("additionalProperties as a schema");
    }
    return new PropertiesCheck(known, othersAllowed);
  }

  private record PropertiesCheck(Map<String, Predicate<Object>> known, boolean othersAllowed)
      implements Predicate<Object> {
    @Override
    public boolean test(Object node) {
      if (!(node instanceof Map<?, ?> object)) {
        return true;
      }
      for (Map.Entry<?, ?> field : object.entrySet()) {
        Predicate<Object> check = known.get(field.getKey());
        if (check == null ? !othersAllowed : !check.test(field.getValue())) {
          return false;
        }
      }
      return true;
    }
  }

  private static Predicate<Object> objectSize(JsonNode value, boolean min) {
    int limit = limit(value);
    return min
        ? node -> !(node instanceof Map<?, ?> object) || object.size() >= limit
        : node -> !(node instanceof Map<?, ?> object) || object.size() <= limit;
  }

  private static Predicate<Object> arraySize(JsonNode value, boolean min) {
    int limit = limit(value);
    return min
        ? node -> !(node instanceof List<?> array) || array.size() >= limit
        : node -> !(node instanceof List<?> array) || array.size() <= limit;
  }

  private static Predicate<Object> items(JsonNode value) {
    Predicate<Object> each = node(value); // a single schema for every item (a list of schemas: unsupported)
    return node -> {
      if (!(node instanceof List<?> array)) {
        return true;
      }
      for (Object item : array) {
        if (!each.test(item)) {
          return false;
        }
      }
      return true;
    };
  }

  private static Predicate<Object> unique(JsonNode value) {
    if (!value.isBoolean()) {
      throw new UnsupportedOperationException("uniqueItems that is not a boolean");
    }
    if (!value.booleanValue()) {
      return node -> true;
    }
    // Plain-domain items compare as JSON does: strings by text, integers by value (no 1 vs 1.0 to confuse),
    // true apart from 1, objects and arrays by their contents (maps and lists compare so).
    return node -> {
      if (!(node instanceof List<?> array)) {
        return true;
      }
      Set<Object> seen = new HashSet<>();
      for (Object item : array) {
        if (!seen.add(item)) {
          return false;
        }
      }
      return true;
    };
  }
}
