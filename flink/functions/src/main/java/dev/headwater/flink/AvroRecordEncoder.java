package dev.headwater.flink;

import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import org.apache.avro.Schema;
import org.apache.avro.io.BinaryEncoder;

/**
 * An Avro record schema compiled into a writer of its binary encoding: the same bytes as Avro's {@code
 * GenericDatumWriter} for the types it supports (null, boolean, int, long, string, arrays, records, and unions
 * of null with one of these), without resolving each union by name and each field by a map lookup per record,
 * which a profile of the job put at most of Avro's CPU.
 *
 * <p>The caller names the fields it fills, in its own order, and passes each record's values as an {@code
 * Object[]} in that order (a record-typed field's value: the nested record's {@code Object[]}, in the order
 * named for it). The schema and the names must agree exactly: a field the caller does not fill, or a name the
 * schema does not have, fails here, when the job is built, not as wrong bytes later.
 */
final class AvroRecordEncoder {
  @FunctionalInterface
  private interface Writer {
    void write(Object value, BinaryEncoder out) throws IOException;
  }

  private final Writer[] writers; // in the schema's field order
  private final int[] from; // writers[i] writes values[from[i]]

  /**
   * @param names the fields the caller fills, in the order of its values
   * @param nested for each record-typed field, the names of the nested record's values
   * @throws IllegalArgumentException naming the first field that is not supported or not filled
   */
  AvroRecordEncoder(Schema schema, List<String> names, Map<String, List<String>> nested) {
    if (schema.getType() != Schema.Type.RECORD) {
      throw new IllegalArgumentException("not a record schema: " + schema.getType());
    }
    List<Schema.Field> fields = schema.getFields();
    Set<String> unknown = new TreeSet<>(names);
    writers = new Writer[fields.size()];
    from = new int[fields.size()];
    for (Schema.Field field : fields) {
      String name = schema.getFullName() + "." + field.name();
      from[field.pos()] = names.indexOf(field.name());
      if (from[field.pos()] < 0) {
        throw new IllegalArgumentException(name + " is not filled by this function (it fills " + names + ")");
      }
      unknown.remove(field.name());
      try {
        writers[field.pos()] =
            field.schema().getType() == Schema.Type.RECORD
                ? record(new AvroRecordEncoder(field.schema(), nestedNames(nested, name, field), Map.of()))
                : writer(field.schema());
      } catch (IllegalArgumentException e) {
        throw new IllegalArgumentException(name + ": " + e.getMessage(), e);
      }
    }
    if (!unknown.isEmpty()) {
      throw new IllegalArgumentException(schema.getFullName() + " has no field " + String.join(", ", unknown));
    }
  }

  private static List<String> nestedNames(Map<String, List<String>> nested, String name, Schema.Field field) {
    List<String> names = nested.get(field.name());
    if (names == null) {
      throw new IllegalArgumentException(name + " is a record whose fields this function does not name");
    }
    return names;
  }

  /** Write the record whose values are {@code values}; a null where the schema has no null fails, as in Avro. */
  void write(Object[] values, BinaryEncoder out) throws IOException {
    for (int i = 0; i < writers.length; i++) {
      writers[i].write(values[from[i]], out);
    }
  }

  private static Writer record(AvroRecordEncoder nested) {
    return (value, out) -> nested.write((Object[]) value, out);
  }

  private static Writer writer(Schema schema) {
    return switch (schema.getType()) {
      case NULL -> (value, out) -> out.writeNull();
      case BOOLEAN -> (value, out) -> out.writeBoolean((Boolean) value);
      case INT -> (value, out) -> out.writeInt((Integer) value);
      case LONG -> (value, out) -> out.writeLong((Long) value);
      case STRING -> (value, out) -> out.writeString((String) value);
      case ARRAY -> array(writer(schema.getElementType()));
      case UNION -> nullable(schema);
      default -> throw new IllegalArgumentException("type " + schema.getType() + " is not supported");
    };
  }

  private static Writer array(Writer item) {
    return (value, out) -> {
      List<?> items = (List<?>) value;
      out.writeArrayStart();
      out.setItemCount(items.size());
      for (Object element : items) {
        out.startItem();
        item.write(element, out);
      }
      out.writeArrayEnd();
    };
  }

  /** A union of null and one other type: its branch index, then the value. */
  private static Writer nullable(Schema union) {
    List<Schema> branches = new ArrayList<>(union.getTypes());
    if (branches.size() != 2 || branches.stream().noneMatch(b -> b.getType() == Schema.Type.NULL)) {
      throw new IllegalArgumentException("only unions of null and one other type are supported: " + union);
    }
    int nullIndex = branches.get(0).getType() == Schema.Type.NULL ? 0 : 1;
    int valueIndex = 1 - nullIndex;
    Writer value = writer(branches.get(valueIndex));
    return (datum, out) -> {
      if (datum == null) {
        out.writeIndex(nullIndex);
      } else {
        out.writeIndex(valueIndex);
        value.write(datum, out);
      }
    };
  }
}
