// The conformance app on the JDK's built-in com.sun.net.httpserver (same endpoints as
// py_http.py; no trailers, no upgrades: HttpServer has neither). Run: java JavaApp.java PORT
import com.sun.net.httpserver.*;
import java.io.*;
import java.net.InetSocketAddress;
import java.security.MessageDigest;
import java.util.*;
import java.util.concurrent.Executors;

public class JavaApp {
    static byte[] pattern(int n) {
        byte[] b = new byte[n];
        for (int i = 0; i < n; i++) b[i] = (byte) (i % 256);
        return b;
    }

    static String json(String s) {
        StringBuilder sb = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            if (c == '"' || c == '\\') sb.append('\\').append(c);
            else if (c < 0x20) sb.append(String.format("\\u%04x", (int) c));
            else sb.append(c);
        }
        return sb.append('"').toString();
    }

    public static void main(String[] args) throws Exception {
        HttpServer server = HttpServer.create(new InetSocketAddress("127.0.0.1", Integer.parseInt(args[0])), 128);
        server.setExecutor(Executors.newCachedThreadPool());
        server.createContext("/", ex -> {
            try {
                handle(ex);
            } catch (Exception e) {
                ex.close();
            }
        });
        server.start();
    }

    static void handle(HttpExchange ex) throws Exception {
        String path = ex.getRequestURI().getRawPath();
        String target = ex.getRequestURI().getRawPath() + (ex.getRequestURI().getRawQuery() == null ? "" : "?" + ex.getRequestURI().getRawQuery());
        boolean head = ex.getRequestMethod().equals("HEAD");
        if (path.startsWith("/status/")) {
            ex.sendResponseHeaders(Integer.parseInt(path.substring(8)), -1);
            ex.close();
            return;
        }
        if (path.startsWith("/big/")) {
            ex.getRequestBody().readAllBytes();
            byte[] body = pattern(Integer.parseInt(path.substring(5)));
            ex.getResponseHeaders().set("content-type", "application/octet-stream");
            ex.sendResponseHeaders(200, head ? -1 : body.length);
            if (!head) ex.getResponseBody().write(body);
            ex.close();
            return;
        }
        if (path.equals("/early")) {
            byte[] body = "{\"error\":\"too big\"}".getBytes();
            ex.getResponseHeaders().set("connection", "close");
            ex.sendResponseHeaders(413, body.length);
            ex.getResponseBody().write(body);
            ex.close();
            return;
        }
        if (path.equals("/sse")) {
            ex.getResponseHeaders().set("content-type", "text/event-stream");
            ex.sendResponseHeaders(200, 0);
            OutputStream out = ex.getResponseBody();
            for (int i = 0; i < 3; i++) {
                out.write(("data: event " + i + "\n\n").getBytes());
                out.flush();
                Thread.sleep(300);
            }
            ex.close();
            return;
        }
        if (path.startsWith("/slow/")) {
            Thread.sleep(Integer.parseInt(path.substring(6)));
            byte[] body = "late".getBytes();
            ex.sendResponseHeaders(200, body.length);
            ex.getResponseBody().write(body);
            ex.close();
            return;
        }
        if (path.equals("/die")) {
            ex.sendResponseHeaders(200, 1000);
            ex.getResponseBody().write(new byte[10]);
            ex.getResponseBody().flush();
            throw new IOException("dying mid-body");
        }
        MessageDigest sha = MessageDigest.getInstance("SHA-256");
        InputStream in = ex.getRequestBody();
        byte[] buf = new byte[65536];
        long len = 0;
        for (int n; (n = in.read(buf)) > 0; ) {
            sha.update(buf, 0, n);
            len += n;
        }
        StringBuilder hex = new StringBuilder();
        for (byte b : sha.digest()) hex.append(String.format("%02x", b));
        StringBuilder headers = new StringBuilder("[");
        for (Map.Entry<String, List<String>> e : ex.getRequestHeaders().entrySet()) {
            for (String v : e.getValue()) {
                if (headers.length() > 1) headers.append(',');
                headers.append('[').append(json(e.getKey())).append(',').append(json(v)).append(']');
            }
        }
        headers.append(']');
        // route: what HttpServer routes contexts on (the URI's decoded path).
        String route = ex.getRequestURI().getPath();
        String body = "{\"app\":\"java\",\"method\":" + json(ex.getRequestMethod()) + ",\"route\":" + json(route == null ? "" : route) + ",\"raw\":" + json(ex.getRequestURI().toString()) + ",\"target\":" + json(target)
                + ",\"version\":" + json(ex.getProtocol()) + ",\"headers\":" + headers + ",\"body_len\":" + len
                + ",\"body_sha256\":\"" + hex + "\"}";
        byte[] bytes = body.getBytes("UTF-8");
        String log = System.getenv("ROUTE_LOG");
        if (log != null) {
            synchronized (JavaApp.class) {
                try (FileOutputStream f = new FileOutputStream(log, true)) {
                    f.write((body + "\n").getBytes("UTF-8"));
                }
            }
        }
        ex.getResponseHeaders().set("content-type", "application/json");
        ex.sendResponseHeaders(200, head ? -1 : bytes.length);
        if (!head) ex.getResponseBody().write(bytes);
        ex.close();
    }
}
