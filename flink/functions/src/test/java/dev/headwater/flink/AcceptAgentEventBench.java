package dev.headwater.flink;

import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import tools.jackson.databind.json.JsonMapper;

/**
 * The function's CPU per record, printed, not asserted: {@code java -cp <test classpath>
 * dev.headwater.flink.AcceptAgentEventBench [records] [rounds]}. Times are the thread's CPU time, which a busy
 * machine stretches less than the clock; the baseline, run in the same process on the same records, is Jackson
 * reading each record into a tree and nothing else.
 */
public final class AcceptAgentEventBench {
  private static final String[] TYPES = {
    "agent.heartbeat", "task.started", "task.completed", "tool.called", "tool.succeeded", "llm.requested",
    "llm.responded", "message.received", "message.sent", "tool.failed"
  };

  private AcceptAgentEventBench() {}

  /** Records shaped like the sample producer's (headwater/local/producer.py). */
  static List<byte[]> corpus(int count, long seed) {
    Random rng = new Random(seed);
    List<byte[]> records = new ArrayList<>(count);
    for (int i = 0; i < count; i++) {
      String type = TYPES[rng.nextInt(TYPES.length)];
      String family = type.substring(0, type.indexOf('.'));
      String payload =
          switch (family) {
            case "llm" -> "{\"model\":\"" + (rng.nextBoolean() ? "small" : "large") + "\",\"tokens\":" + (10 + rng.nextInt(3990)) + "}";
            case "tool" -> "{\"tool\":\"search\"}";
            case "task" -> "{\"task\":\"task-" + (1 + rng.nextInt(500)) + "\",\"priority\":" + (1 + rng.nextInt(5)) + "}";
            case "message" -> "{\"channel\":\"chat\",\"chars\":" + (1 + rng.nextInt(2000)) + "}";
            default -> "{\"note\":\"" + family + "\"}";
          };
      int agent = rng.nextInt(200);
      String event =
          "{\"event_id\":\"evt-" + Long.toHexString(rng.nextLong()) + "\",\"event_type\":\"" + type + "\","
              + "\"agent_id\":\"agent-" + agent + "\",\"agent_type\":\"" + (agent % 2 == 0 ? "planner" : "retriever") + "\","
              + "\"occurred_at\":\"2026-11-29T10:" + String.format("%02d:%02d.%03d", rng.nextInt(60), rng.nextInt(60), rng.nextInt(1000)) + "+00:00\","
              + "\"entity_id\":\"customer-" + rng.nextInt(1000) + "\",\"tenant_id\":\"tenant-" + rng.nextInt(5) + "\","
              + "\"session_id\":\"s-" + rng.nextInt(10000) + "\",\"trace_id\":\"" + Long.toHexString(rng.nextLong()) + "\","
              + "\"status\":\"" + (type.endsWith("failed") ? "error" : "ok") + "\",\"duration_ms\":" + rng.nextInt(5000) + ","
              + "\"tags\":[\"bench\",\"" + family + "\"],\"payload\":" + payload + "}";
      records.add(event.getBytes(StandardCharsets.UTF_8));
    }
    return records;
  }

  public static void main(String[] args) throws IOException {
    int count = args.length > 0 ? Integer.parseInt(args[0]) : 20_000;
    int rounds = args.length > 1 ? Integer.parseInt(args[1]) : 15;
    Path schemas = Path.of(System.getProperty("headwater.schemas", "../../catalog/schemas"));
    AcceptAgentEvent function =
        new AcceptAgentEvent(
            Files.readString(schemas.resolve("agents.events.raw.v1.json")),
            "agents.events.raw.v1",
            Files.readString(schemas.resolve("agents.signals.v1.avsc")),
            7);
    JsonMapper json = JsonMapper.builder().build();
    List<byte[]> records = corpus(count, 42);
    Instant now = Instant.ofEpochMilli(1_800_000_000_000L);
    ThreadMXBean cpu = ManagementFactory.getThreadMXBean();
    long sink = 0;
    for (int round = 0; round < rounds; round++) {
      long t0 = cpu.getCurrentThreadCpuTime();
      for (byte[] record : records) {
        sink += json.readTree(record).size();
      }
      long t1 = cpu.getCurrentThreadCpuTime();
      int decided = 0;
      for (int i = 0; i < records.size(); i++) {
        if (function.accept(records.get(i), "agents.events.raw.v1", 0, (long) i, now) != null) {
          decided++;
        }
      }
      long t2 = cpu.getCurrentThreadCpuTime();
      double parse = (t1 - t0) / (double) count;
      double accept = (t2 - t1) / (double) count;
      System.out.printf(
          "round %2d: Jackson tree %6.0f ns CPU/record, accept %6.0f ns CPU/record = %.2fx the tree (%d of %d decided)%n",
          round, parse, accept, accept / parse, decided, count);
    }
    System.out.println(sink == 42 ? "" : "done");
  }
}
