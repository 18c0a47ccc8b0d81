import java.io.FileReader;
import java.io.Reader;
import java.util.Properties;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

/**
 * Connects with a Java Kafka admin client configured from a client properties file and prints the topics
 * it can see, one line per file: "<file>\t<topic>,<topic>,...". Arguments come in triples:
 * <package prefix> <bootstrap servers> <properties file>. The prefix ("" or a shading prefix such as
 * "org.apache.flink.kafka.shaded.") selects which copy of the Kafka client is used, so the same program
 * checks the files for plain Java clients and for flink-sql-connector-kafka's relocated client.
 * Run with `java -cp <jars> CheckClientProperties.java ...` (single-file source launch).
 */
public class CheckClientProperties {
    public static void main(String[] args) throws Exception {
        if (args.length == 0 || args.length % 3 != 0) {
            throw new IllegalArgumentException("expected triples: <prefix> <bootstrap> <properties file>");
        }
        for (int i = 0; i < args.length; i += 3) {
            String prefix = args[i];
            Properties props = new Properties();
            try (Reader reader = new FileReader(args[i + 2])) {
                props.load(reader);
            }
            props.put("bootstrap.servers", args[i + 1]);
            props.put("request.timeout.ms", "10000");
            props.put("default.api.timeout.ms", "20000");
            Class<?> admin = Class.forName(prefix + "org.apache.kafka.clients.admin.Admin");
            Object client = admin.getMethod("create", Properties.class).invoke(null, props);
            try {
                Object listing = admin.getMethod("listTopics").invoke(client);
                Future<?> names = (Future<?>) listing.getClass().getMethod("names").invoke(listing);
                Set<String> topics = new TreeSet<>();
                for (Object name : (Set<?>) names.get(30, TimeUnit.SECONDS)) {
                    topics.add((String) name);
                }
                System.out.println(args[i + 2] + "\t" + String.join(",", topics));
            } finally {
                ((AutoCloseable) client).close();
            }
        }
    }
}
