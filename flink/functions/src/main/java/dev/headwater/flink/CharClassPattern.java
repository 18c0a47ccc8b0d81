package dev.headwater.flink;

import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.function.Predicate;

/**
 * The anchored character-class patterns event contracts use for ids and names ({@code ^\S+$}, {@code
 * ^[A-Za-z][A-Za-z0-9_.-]*$}) as a table lookup per character instead of a regular expression: a profile put
 * the regex engine at a fifth of the job's source thread. {@link #compile} understands {@code ^}, then single
 * characters or classes each matching exactly one character, then optionally one class with {@code *} or
 * {@code +}, then {@code $}; any other pattern is empty, and the caller uses a regular expression.
 *
 * <p>Semantics are Python's {@code re} on the plain domain (printable ASCII, tab, newline, carriage return):
 * {@code \d}, {@code \w}, {@code \s} are their ASCII classes there, and {@code $} also matches before a final
 * newline. A character outside ASCII never matches (never true where Python says false: a record with one is
 * not in the plain domain anyway).
 */
final class CharClassPattern implements Predicate<String> {
  private final boolean[][] fixed;
  private final boolean[] repeated;
  private final int minRepeats;

  private CharClassPattern(boolean[][] fixed, boolean[] repeated, int minRepeats) {
    this.fixed = fixed;
    this.repeated = repeated;
    this.minRepeats = minRepeats;
  }

  static Optional<Predicate<String>> compile(String pattern) {
    if (pattern.length() < 2 || pattern.charAt(0) != '^' || !pattern.endsWith("$") || pattern.endsWith("\\$")) {
      return Optional.empty();
    }
    Parser parser = new Parser(pattern.substring(1, pattern.length() - 1));
    List<boolean[]> fixed = new ArrayList<>();
    boolean[] repeated = null;
    int minRepeats = 0;
    while (!parser.done()) {
      if (repeated != null) {
        return Optional.empty(); // something after the repeated class
      }
      boolean[] atom = parser.atom();
      if (atom == null) {
        return Optional.empty();
      }
      char quantifier = parser.done() ? 0 : parser.peek();
      if (quantifier == '*' || quantifier == '+') {
        parser.skip();
        repeated = atom;
        minRepeats = quantifier == '+' ? 1 : 0;
      } else if (quantifier == '?' || quantifier == '{') {
        return Optional.empty();
      } else {
        fixed.add(atom);
      }
    }
    return Optional.of(new CharClassPattern(fixed.toArray(new boolean[0][]), repeated, minRepeats));
  }

  @Override
  public boolean test(String text) {
    // `$` matches at the end, or before a newline that ends the text.
    return whole(text, text.length())
        || (!text.isEmpty() && text.charAt(text.length() - 1) == '\n' && whole(text, text.length() - 1));
  }

  private boolean whole(String text, int length) {
    if (length < fixed.length + minRepeats || (repeated == null && length != fixed.length)) {
      return false;
    }
    for (int i = 0; i < fixed.length; i++) {
      if (!in(fixed[i], text.charAt(i))) {
        return false;
      }
    }
    for (int i = fixed.length; i < length; i++) {
      if (!in(repeated, text.charAt(i))) {
        return false;
      }
    }
    return true;
  }

  private static boolean in(boolean[] set, char c) {
    return c < 128 && set[c];
  }

  /** Reads one atom at a time: a literal, an escape, or a bracketed class; null for anything else. */
  private static final class Parser {
    private final String text;
    private int at;

    Parser(String text) {
      this.text = text;
    }

    boolean done() {
      return at >= text.length();
    }

    char peek() {
      return text.charAt(at);
    }

    void skip() {
      at++;
    }

    boolean[] atom() {
      char c = text.charAt(at++);
      if (c == '[') {
        return bracket();
      }
      if (c == '\\') {
        return at < text.length() ? escape(text.charAt(at++)) : null;
      }
      if (c == '.' || "()|*+?{}^$]".indexOf(c) >= 0 || c >= 128) {
        return null; // `.`, groups, alternatives, stray quantifiers and anchors: not this compiler's
      }
      boolean[] set = new boolean[128];
      set[c] = true;
      return set;
    }

    private boolean[] bracket() {
      boolean negated = at < text.length() && text.charAt(at) == '^';
      if (negated) {
        at++;
      }
      boolean[] set = new boolean[128];
      boolean first = true;
      while (true) {
        if (at >= text.length()) {
          return null;
        }
        char c = text.charAt(at++);
        if (c == ']' && !first) {
          break;
        }
        first = false;
        if (c == '[' || c >= 128 || (c == '&' && at < text.length() && text.charAt(at) == '&')) {
          return null; // nested classes and intersections read differently in Java and Python
        }
        int low;
        if (c == '\\') {
          if (at >= text.length()) {
            return null;
          }
          char e = text.charAt(at++);
          boolean[] shorthand = shorthand(e);
          if (shorthand != null) {
            or(set, shorthand);
            continue;
          }
          if (Character.isLetterOrDigit(e)) {
            return null; // \n, \x41, \b, ...: escapes with meanings of their own
          }
          low = e;
        } else {
          low = c;
        }
        if (at + 1 < text.length() && text.charAt(at) == '-' && text.charAt(at + 1) != ']') {
          char high = text.charAt(at + 1);
          if (high == '\\' || high == '[' || high >= 128 || high < low) {
            return null;
          }
          at += 2;
          for (int x = low; x <= high; x++) {
            set[x] = true;
          }
        } else {
          set[low] = true;
        }
      }
      if (negated) {
        for (int x = 0; x < 128; x++) {
          set[x] = !set[x];
        }
      }
      return set;
    }

    private static boolean[] escape(char e) {
      boolean[] shorthand = shorthand(e);
      if (shorthand != null) {
        return shorthand;
      }
      if (Character.isLetterOrDigit(e) || e >= 128) {
        return null;
      }
      boolean[] set = new boolean[128];
      set[e] = true; // an escaped punctuation character stands for itself
      return set;
    }

    /** \d, \w, \s and their complements, as Python reads them on ASCII text. */
    private static boolean[] shorthand(char e) {
      boolean[] set = new boolean[128];
      switch (Character.toLowerCase(e)) {
        case 'd' -> mark(set, "0123456789");
        case 'w' -> mark(set, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_");
        case 's' -> mark(set, " \t\n\r\u000b\f\u001c\u001d\u001e\u001f");
        default -> {
          return null;
        }
      }
      if (Character.isUpperCase(e)) {
        for (int x = 0; x < 128; x++) {
          set[x] = !set[x];
        }
      }
      return set;
    }

    private static void mark(boolean[] set, String chars) {
      for (int i = 0; i < chars.length(); i++) {
        set[chars.charAt(i)] = true;
      }
    }

    private static void or(boolean[] set, boolean[] other) {
      for (int x = 0; x < 128; x++) {
        set[x] |= other[x];
      }
    }
  }
}
