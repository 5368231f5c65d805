//! TLS: inbound termination (HTTP/1.1 and HTTP/2 by ALPN), outbound origination to
//! `https://` routes with a CA file, and client-certificate verification.
//! Certificates: `tests/fixtures/tls/` (see tests/fixtures/README.md).
mod support;

use std::path::PathBuf;

use bytes::Bytes;
use http::{Request, StatusCode};
use support::*;

fn tls(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tls")
        .join(name)
}

async fn billing_with_tls(
    keys: &Keys,
    client_ca: bool,
) -> (Sidecar, trustgate::keys::GeneratedFiles) {
    let orders = keys.make("orders");
    let billing = keys.make("billing");
    let trusted = keys.trust_dir("billing-trusts", &[&orders]);
    let app = spawn_app().await;
    let ca_line = if client_ca {
        format!("client_ca = \"{}\"", tls("ca.crt").display())
    } else {
        String::new()
    };
    let side = Sidecar::start(&format!(
        r#"
[identity]
name = "billing"
private_key = "{}"
[trust]
authorized_keys = "{}"
[inbound]
listen = "127.0.0.1:0"
upstream = "http://{app}"
tls_cert = "{}"
tls_key = "{}"
{ca_line}
[admin]
listen = "127.0.0.1:0"
"#,
        billing.private.display(),
        trusted.display(),
        tls("server.crt").display(),
        tls("server.key").display(),
    ))
    .await;
    (side, orders)
}

async fn orders_to(
    keys: &Keys,
    orders: &trustgate::keys::GeneratedFiles,
    upstream: &str,
    client_cert: bool,
) -> Sidecar {
    let cert = if client_cert {
        format!(
            "client_cert = \"{}\"\nclient_key = \"{}\"",
            tls("client.crt").display(),
            tls("client.key").display()
        )
    } else {
        String::new()
    };
    let _ = keys;
    Sidecar::start(&format!(
        r#"
[identity]
name = "orders"
private_key = "{}"
[outbound]
listen = "127.0.0.1:0"
ca_file = "{}"
{cert}
[[outbound.routes]]
host = "billing"
upstream = "{upstream}"
[admin]
listen = "127.0.0.1:0"
"#,
        orders.private.display(),
        tls("ca.crt").display(),
    ))
    .await
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
async fn untrusted_server_certificate_is_a_502() {
    let keys = Keys::new();
    let (billing, orders) = billing_with_tls(&keys, false).await;
    // The certificate is for localhost/127.0.0.1; the system roots do not know our CA.
    let orders_side = Sidecar::start(&format!(
        "[identity]\nname = \"orders\"\nprivate_key = \"{}\"\n[outbound]\nlisten = \"127.0.0.1:0\"\n[[outbound.routes]]\nhost = \"billing\"\nupstream = \"https://localhost:{}\"\n[admin]\nlisten = \"127.0.0.1:0\"\n",
        orders.private.display(),
        billing.inbound().port()
    ))
    .await;
    let a = get(
        format!("http://{}/orders", orders_side.outbound()),
        &[("host", "billing")],
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_GATEWAY, "{}", a.body);
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
