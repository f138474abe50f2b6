// Ask seccompagent for this process's limits: connect, read one JSON
// document to EOF, print two numbers. Java 16+ (unix domain sockets).
// Run: java View.java [SOCKET]
import java.io.InputStream;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.Channels;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

public class View {
    public static void main(String[] args) throws Exception {
        String path = args.length > 0 ? args[0] : "/run/seccompagent/view.sock";
        String json;
        try (SocketChannel ch = SocketChannel.open(UnixDomainSocketAddress.of(path));
             InputStream in = Channels.newInputStream(ch)) {
            json = new String(in.readAllBytes(), StandardCharsets.UTF_8);
        }
        // "total" is unique as a key: the others are host_total, swap_total.
        System.out.println("cpu count " + number(json, "recommended_threads"));
        System.out.println("memory total " + number(json, "total"));
    }

    static String number(String json, String key) {
        Matcher m = Pattern.compile("\"" + key + "\"\\s*:\\s*(\\d+)").matcher(json);
        if (!m.find()) throw new IllegalStateException("no " + key + " in " + json);
        return m.group(1);
    }
}
