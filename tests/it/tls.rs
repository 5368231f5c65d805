//! TLS: inbound termination (HTTP/1.1 and HTTP/2 by ALPN), outbound origination to
//! `https://` routes with a CA file, and client-certificate verification.
//! Certificates: `tests/fixtures/tls/` (see tests/fixtures/README.md).
use crate::support;

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use support::*;

fn tls(name: &str) -> PathBuf {
    tls_fixture(name)
}

async fn billing_with_tls(
    keys: &Keys,
    client_ca: bool,
) -> (Sidecar, trustgate::keys::GeneratedFiles) {
    let orders = keys.make("orders");
    let billing = keys.make("billing");
    let trusted = keys.trust_dir("billing-trusts", &[&orders]);
    let app = spawn_app().await;
    let mut conf = Conf::new("billing", &billing.private)
        .inbound(&trusted, app)
        .inbound_tls();
    if client_ca {
        conf = conf.path("inbound", "client_ca", &tls("ca.crt"));
    }
    let side = conf.start().await;
    (side, orders)
}

async fn orders_to(
    keys: &Keys,
    orders: &trustgate::keys::GeneratedFiles,
    upstream: &str,
    client_cert: bool,
) -> Sidecar {
    let _ = keys;
    let mut conf = Conf::new("orders", &orders.private).path("outbound", "ca_file", &tls("ca.crt"));
    if client_cert {
        conf = conf
            .path("outbound", "client_cert", &tls("client.crt"))
            .path("outbound", "client_key", &tls("client.key"));
    }
    conf.route("billing", upstream).start().await
}

#[tokio::test]
async fn https_route_to_a_tls_inbound_http1_and_http2() {
    let keys = Keys::new();
    let (billing, orders) = billing_with_tls(&keys, false).await;
    let port = billing.inbound().port();
    let orders_side = orders_to(&keys, &orders, &format!("https://localhost:{port}"), false).await;

    let a = get(
        format!("http://{}/orders", orders_side.outbound()),
        &[("host", "billing")],
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let seen = a.json();
    assert_eq!(seen["headers"]["x-service-caller"], "orders");
    // The TLS link offers ALPN h2, yet an HTTP/1.1 request stays HTTP/1.1 to the app.
    assert_eq!(seen["version"], "HTTP/1.1");
    // Each hop appends itself: the app's call to orders (http), orders to billing (https).
    assert_eq!(
        seen["headers"]["forwarded"],
        "for=127.0.0.1;proto=http, for=127.0.0.1;proto=https"
    );

    // HTTP/2 from the app → HTTP/2 over TLS (ALPN h2) between the sidecars → HTTP/1.1
    // to the app, which is what `upstream_protocol = "auto"` gives a non-gRPC request.
    let req = Request::get(format!("http://{}/orders", orders_side.outbound()))
        .header("host", "billing")
        .body(body(Bytes::new()))
        .unwrap();
    let a = send(&h2_client(), req).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.json()["version"], "HTTP/1.1");
}

#[tokio::test]
async fn untrusted_server_certificate_is_a_502_upstream_tls() {
    let keys = Keys::new();
    let (billing, orders) = billing_with_tls(&keys, false).await;
    // The certificate is for localhost/127.0.0.1; the system roots do not know our CA.
    let orders_side = Conf::new("orders", &orders.private)
        .route(
            "billing",
            format!("https://localhost:{}", billing.inbound().port()),
        )
        .start()
        .await;
    let a = get(
        format!("http://{}/orders", orders_side.outbound()),
        &[("host", "billing")],
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_GATEWAY, "{}", a.body);
    // Its own reason, not "upstream_unreachable": the upstream answered, its certificate
    // was refused.
    assert_eq!(a.json()["error"], "upstream_tls", "{}", a.body);
}

#[tokio::test]
async fn client_certificates_are_required_when_client_ca_is_set() {
    let keys = Keys::new();
    let (billing, orders) = billing_with_tls(&keys, true).await;
    let upstream = format!("https://localhost:{}", billing.inbound().port());
    let with_cert = orders_to(&keys, &orders, &upstream, true).await;
    let a = get(
        format!("http://{}/orders", with_cert.outbound()),
        &[("host", "billing")],
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);

    let without = orders_to(&keys, &orders, &upstream, false).await;
    let a = get(
        format!("http://{}/orders", without.outbound()),
        &[("host", "billing")],
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_GATEWAY, "{}", a.body);
}

/// The SHA-256 fingerprint of the certificate a TLS server at `addr` presents, read by
/// OpenSSL's client (another stack's handshake).
fn served_fingerprint(addr: std::net::SocketAddr) -> String {
    let mut s_client = std::process::Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &addr.to_string(),
            "-servername",
            "localhost",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("openssl runs");
    let mut pem = String::new();
    std::io::Read::read_to_string(s_client.stdout.as_mut().unwrap(), &mut pem).unwrap();
    let _ = s_client.wait();
    fingerprint_of_pem(pem.as_bytes())
}

/// The SHA-256 fingerprint of the first certificate in `pem` (`openssl x509`).
fn fingerprint_of_pem(pem: &[u8]) -> String {
    let mut x509 = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("openssl runs");
    std::io::Write::write_all(x509.stdin.as_mut().unwrap(), pem).unwrap();
    let out = x509.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The inbound certificate is reloaded like the keys, and a handshake shows it: a broken
/// file keeps the current certificate served (counted as an error), a new valid pair is
/// served on the next connection (counted as ok,
/// `trustgate_reloads_total{material="tls_certificate"}`), and neither swap counts a
/// reload of the trust material (each material has its own watched directories).
#[tokio::test]
async fn certificate_reloads_are_served_and_counted() {
    if !have_tool("openssl", &["version"], "apt-get install openssl") {
        return;
    }
    let keys = Keys::new();
    let billing = keys.make("billing");
    let orders = keys.make("orders");
    let trusted = keys.trust_dir("trusted", &[&orders]);
    let dir = keys.path().join("tls");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(tls("server.crt"), dir.join("tls.crt")).unwrap();
    std::fs::copy(tls("server.key"), dir.join("tls.key")).unwrap();
    let side = Conf::new("billing", &billing.private)
        .inbound(&trusted, "127.0.0.1:9")
        .set(
            "inbound",
            format!("tls_cert = \"{}\"", dir.join("tls.crt").display()),
        )
        .set(
            "inbound",
            format!("tls_key = \"{}\"", dir.join("tls.key").display()),
        )
        .start()
        .await;
    let state = side.state.clone();
    let count = move |material: &str, result: &str| {
        state
            .metrics
            .reloads
            .with_label_values(&[material, result])
            .get()
    };
    let addr = side.inbound();
    let served = move || tokio::task::spawn_blocking(move || served_fingerprint(addr));
    let server = fingerprint_of_pem(&std::fs::read(tls("server.crt")).unwrap());
    let client = fingerprint_of_pem(&std::fs::read(tls("client.crt")).unwrap());
    assert!(server.contains("Fingerprint") && server != client);
    assert_eq!(served().await.unwrap(), server);
    let trust_reloads = (count("trust", "ok"), count("trust", "error"));

    std::fs::write(dir.join("tls.crt.new"), "not a certificate").unwrap();
    std::fs::rename(dir.join("tls.crt.new"), dir.join("tls.crt")).unwrap();
    assert!(
        eventually(Duration::from_secs(5), || count("tls_certificate", "error")
            >= 1)
        .await,
        "a broken certificate is counted as a failed reload"
    );
    assert_eq!(count("tls_certificate", "ok"), 0);
    assert_eq!(
        served().await.unwrap(),
        server,
        "the old certificate is still served"
    );

    // A different valid pair (the client certificate, signed by the same CA).
    std::fs::copy(tls("client.key"), dir.join("tls.key")).unwrap();
    std::fs::copy(tls("client.crt"), dir.join("tls.crt.new")).unwrap();
    std::fs::rename(dir.join("tls.crt.new"), dir.join("tls.crt")).unwrap();
    assert!(
        eventually(Duration::from_secs(5), || count("tls_certificate", "ok")
            >= 1)
        .await,
        "a new valid pair is swapped in and counted"
    );
    assert_eq!(
        served().await.unwrap(),
        client,
        "the new certificate is served"
    );
    assert_eq!(
        (count("trust", "ok"), count("trust", "error")),
        trust_reloads,
        "a certificate swap is not a trust reload"
    );
    side.shutdown().await;
}
