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
 * A JSON Schema (draft 7) compiled into a predicate over documents of {@link AcceptAgentEvent}'s plain domain
 * (printable-ASCII strings, integers in a long): true only when the document is valid.
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
  static Optional<Predicate<JsonNode>> compile(JsonNode schema) {
    try {
      return Optional.of(node(schema));
    } catch (UnsupportedOperationException e) {
      return Optional.empty();
    }
  }

  private static Predicate<JsonNode> node(JsonNode schema) {
    if (!schema.isObject()) {
      throw new UnsupportedOperationException("a boolean or non-object schema");
    }
    List<Predicate<JsonNode>> checks = new ArrayList<>();
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
            case "maxProperties" -> size(value, JsonNode::isObject, false);
            case "minProperties" -> size(value, JsonNode::isObject, true);
            case "maxItems" -> size(value, JsonNode::isArray, false);
            case "minItems" -> size(value, JsonNode::isArray, true);
            case "items" -> items(value);
            case "uniqueItems" -> unique(value);
            default -> throw new UnsupportedOperationException(name);
          });
    }
    Predicate<JsonNode> all = document -> true;
    for (Predicate<JsonNode> check : checks) {
      all = all.and(check);
    }
    return all;
  }

  private static Predicate<JsonNode> type(JsonNode value) {
    if (!value.isString()) {
      throw new UnsupportedOperationException("type as a list");
    }
    return switch (value.asString()) {
      case "string" -> JsonNode::isString;
      case "integer" -> JsonNode::isIntegralNumber; // the plain domain has no floats (1.0 is never seen)
      case "number" -> JsonNode::isNumber;
      case "boolean" -> JsonNode::isBoolean;
      case "null" -> JsonNode::isNull;
      case "object" -> JsonNode::isObject;
      case "array" -> JsonNode::isArray;
      default -> throw new UnsupportedOperationException("type " + value.asString());
    };
  }

  private static Predicate<JsonNode> enumeration(JsonNode value) {
    Set<JsonNode> allowed = new HashSet<>();
    value.forEach(allowed::add);
    for (JsonNode item : allowed) {
      if (!item.isString()) {
        throw new UnsupportedOperationException("an enum of non-strings");
      }
    }
    return allowed::contains;
  }

  private static int limit(JsonNode value) {
    if (!value.isInt() || value.intValue() < 0) {
      throw new UnsupportedOperationException("a limit that is not a non-negative int");
    }
    return value.intValue();
  }

  private static Predicate<JsonNode> length(JsonNode value, boolean min) {
    int limit = limit(value);
    // Only strings are constrained; in the plain domain every character is one code point.
    return min
        ? node -> !node.isString() || node.asString().length() >= limit
        : node -> !node.isString() || node.asString().length() <= limit;
  }

  private static Predicate<JsonNode> pattern(JsonNode value) {
    // UNIX_LINES: `$` may match before a final newline, as in Python's `re`, but not before a final `\r`.
    Pattern regex = Pattern.compile(value.asString(), Pattern.UNIX_LINES);
    return node -> !node.isString() || regex.matcher(node.asString()).find();
  }

  private static Predicate<JsonNode> bound(JsonNode value, boolean min) {
    if (!value.isIntegralNumber() || !value.canConvertToLong()) {
      throw new UnsupportedOperationException("a bound that is not an integer");
    }
    long limit = value.longValue();
    // Only numbers are constrained; the plain domain's numbers are integers in a long.
    return min
        ? node -> !node.isNumber() || node.longValue() >= limit
        : node -> !node.isNumber() || node.longValue() <= limit;
  }

  private static Predicate<JsonNode> required(JsonNode value) {
    List<String> names = new ArrayList<>();
    value.forEach(name -> names.add(name.asString()));
    return node -> {
      if (!node.isObject()) {
        return true;
      }
      for (String name : names) {
        if (!node.has(name)) {
          return false;
        }
      }
      return true;
    };
  }

  /** `properties` and `additionalProperties` together. */
  private static Predicate<JsonNode> properties(JsonNode schema) {
    Map<String, Predicate<JsonNode>> known = new HashMap<>();
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

  private record PropertiesCheck(Map<String, Predicate<JsonNode>> known, boolean othersAllowed)
      implements Predicate<JsonNode> {
    @Override
    public boolean test(JsonNode node) {
      if (!node.isObject()) {
        return true;
      }
      for (Map.Entry<String, JsonNode> field : node.properties()) {
        Predicate<JsonNode> check = known.get(field.getKey());
        if (check == null ? !othersAllowed : !check.test(field.getValue())) {
          return false;
        }
      }
      return true;
    }
  }

  private static Predicate<JsonNode> size(JsonNode value, Predicate<JsonNode> applies, boolean min) {
    int limit = limit(value);
    return min
        ? node -> !applies.test(node) || node.size() >= limit
        : node -> !applies.test(node) || node.size() <= limit;
  }

  private static Predicate<JsonNode> items(JsonNode value) {
    Predicate<JsonNode> each = node(value); // a single schema for every item (a list of schemas: unsupported)
    return node -> {
      if (!node.isArray()) {
        return true;
      }
      for (JsonNode item : node) {
        if (!each.test(item)) {
          return false;
        }
      }
      return true;
    };
  }

  private static Predicate<JsonNode> unique(JsonNode value) {
    if (!value.isBoolean()) {
      throw new UnsupportedOperationException("uniqueItems that is not a boolean");
    }
    if (!value.booleanValue()) {
      return node -> true;
    }
    // Plain-domain items compare as JSON does: strings by text, integers by value (no 1 vs 1.0 to confuse).
    return node -> {
      if (!node.isArray()) {
        return true;
      }
      Set<JsonNode> seen = new HashSet<>();
      for (JsonNode item : node) {
        if (!seen.add(item)) {
          return false;
        }
      }
      return true;
    };
  }
}
