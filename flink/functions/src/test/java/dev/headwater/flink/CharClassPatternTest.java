package dev.headwater.flink;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import java.util.Optional;
import java.util.function.Predicate;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;

/** The table-driven patterns judge as the regular expression does (Python's `$` included), or decline. */
class CharClassPatternTest {
  private static final List<String> PATTERNS =
      List.of(
          "^\\S+$", "^[A-Za-z0-9][A-Za-z0-9._:-]*$", "^[A-Za-z][A-Za-z0-9_.-]*$", "^\\d\\d-[^a-c\\s]+$",
          "^[-a]x$", "^[\\w.]*$", "^a$");
  private static final List<String> TEXTS =
      List.of(
          "", "a", "ab", "a b", "a\tb", "a\n", "a\r", "\n", "a\n\n", "A9._:-z", "9abc", "_x", "12-de", "12-ab",
          "12-d e", "-x", "ax", "xx", "a.b_c", "a$", "\u00e9", "caf\u00e9", " a", "a ");

  @Test
  void agreesWithTheRegularExpressionOnPlainText() {
    for (String pattern : PATTERNS) {
      Optional<Predicate<String>> compiled = CharClassPattern.compile(pattern);
      assertTrue(compiled.isPresent(), pattern);
      Pattern regex = Pattern.compile(pattern, Pattern.UNIX_LINES);
      for (String text : TEXTS) {
        boolean plain = text.chars().allMatch(c -> c < 128);
        boolean expected = plain && regex.matcher(text).find();
        assertEquals(expected, compiled.get().test(text), pattern + " on " + text.replace("\n", "\\n"));
      }
    }
  }

  @Test
  void declinesWhatItDoesNotUnderstand() {
    for (String pattern :
        List.of(
            "abc", "^a", "a$", "^a?$", "^a{2}$", "^(a|b)$", "^a+b$", "^.+$", "^[a[b]]$", "^[a&&b]$", "^\\n$",
            "^[\\x41]$", "^a\\$", "^a*b*$")) {
      assertTrue(CharClassPattern.compile(pattern).isEmpty(), pattern);
    }
  }
}
