//! `trustgate demo`: two services and their sidecars on loopback, with fresh keys in a
//! temporary directory (removed afterwards). It makes a trusted call, a forged one, one
//! with a key nobody trusts and one the policy denies, and prints what each hop saw; then
//! a call made for a person, carried through three sidecars ([`people`]).
//! Exits non-zero if any answer is not the expected one: the demo is also a smoke test.
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

mod people;

use trustgate::config;
use trustgate::keys::{self, KeyAlg, OutputFormat};
use trustgate::proxy::Proxy;
use trustgate::token::TokenSigner;

/// A demo app: answers every request with what it received, as JSON.
pub async fn spawn_echo_app(name: &'static str) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| async move {
                    let header = |n: &str| {
                        req.headers()
                            .get(n)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned)
                    };
                    let mut body = serde_json::json!({
                        "app": name,
                        "method": req.method().as_str(),
                        "path": req.uri().path(),
                        "x-service-caller": header("x-service-caller"),
                        "x-service-caller-roles": header("x-service-caller-roles"),
                        "x-caller-namespace": header("x-caller-namespace"),
                        "token_reached_app": req.headers().contains_key("authorization"),
                        "x-user-subject": header("x-user-subject"),
                        "x-transaction-id": header("x-transaction-id"),
                        "x-tenant": header("x-tenant"),
                        "person_token_reached_app": req.headers().contains_key("x-user-token"),
                        "txn-token": header("txn-token"),
                    });
                    // The person's fields only where there is a person.
                    if let Some(map) = body.as_object_mut() {
                        if map.get("x-user-subject").is_some_and(|v| v.is_null()) {
                            map.remove("person_token_reached_app");
                        }
                        for k in [
                            "x-user-subject",
                            "x-transaction-id",
                            "x-tenant",
                            "txn-token",
                        ] {
                            if map.get(k).is_some_and(|v| v.is_null()) {
                                map.remove(k);
                            }
                        }
                    }
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body.to_string()))))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(addr)
}

pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    www_authenticate: Option<String>,
    pub(crate) body: String,
}

pub(crate) async fn call(
    client: &Client<HttpConnector, Full<Bytes>>,
    url: String,
    headers: &[(&str, String)],
) -> anyhow::Result<Answer> {
    let mut req = Request::get(url);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let resp = client.request(req.body(Full::new(Bytes::new()))?).await?;
    let status = resp.status();
    let www_authenticate = resp
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = resp.into_body().collect().await?.to_bytes();
    Ok(Answer {
        status,
        www_authenticate,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

pub(crate) fn write_config(path: &Path, text: &str) -> anyhow::Result<config::Config> {
    std::fs::write(path, text)?;
    config::load(path, Vec::new()).map_err(|e| anyhow::anyhow!("demo configuration: {e}"))
}

/// The demo's keys: orders, billing, and mallory (trusted by nobody).
struct DemoKeys {
    orders: keys::GeneratedFiles,
    billing: keys::GeneratedFiles,
    mallory: keys::GeneratedFiles,
    billing_trusts: std::path::PathBuf,
    orders_trusts: std::path::PathBuf,
}

fn make_keys(dir: &Path) -> anyhow::Result<DemoKeys> {
    let keys_dir = dir.join("keys");
    let orders = keys::write_keypair("orders", KeyAlg::Es256, &keys_dir, OutputFormat::Pem)?;
    let billing = keys::write_keypair("billing", KeyAlg::Es256, &keys_dir, OutputFormat::Pem)?;
    let mallory = keys::write_keypair("mallory", KeyAlg::Es256, &keys_dir, OutputFormat::Pem)?;
    let billing_trusts = dir.join("billing-authorized_keys");
    let orders_trusts = dir.join("orders-authorized_keys");
    std::fs::create_dir_all(&billing_trusts)?;
    std::fs::create_dir_all(&orders_trusts)?;
    std::fs::copy(&orders.public, billing_trusts.join("orders.pub"))?;
    std::fs::copy(&billing.public, orders_trusts.join("billing.pub"))?;
    println!("keys      orders  kid {}", orders.kid);
    println!("          billing kid {}", billing.kid);
    println!("          mallory kid {} (trusted by nobody)", mallory.kid);
    println!("trust     billing's authorized_keys holds orders.pub\n");

    Ok(DemoKeys {
        orders,
        billing,
        mallory,
        billing_trusts,
        orders_trusts,
    })
}

/// billing's sidecar (inbound only) and its inbound address.
async fn billing_sidecar(
    dir: &Path,
    k: &DemoKeys,
    billing_app: SocketAddr,
) -> anyhow::Result<(Proxy, SocketAddr)> {
    let (billing, billing_trusts) = (&k.billing, &k.billing_trusts);
    let billing_cfg = write_config(
        &dir.join("billing.toml"),
        &format!(
            r#"
[identity]
name = "billing"
private_key = "{key}"
[trust]
authorized_keys = "{trust}"
[inbound]
listen = "127.0.0.1:0"
upstream = "http://{app}"
public_paths = ["/healthz"]
[inbound.claim_headers]
"x-caller-namespace" = "/kubernetes.io/namespace"
[[inbound.allow]]
callers = ["orders"]
methods = ["GET", "POST"]
paths = ["/invoices", "/invoices/*"]
[callers.orders]
roles = ["reader"]
[admin]
listen = "127.0.0.1:0"
"#,
            key = billing.private.display(),
            trust = billing_trusts.display(),
            app = billing_app,
        ),
    )?;
    let billing_proxy = Proxy::bind(billing_cfg, prometheus::Registry::new()).await?;
    let billing_in = billing_proxy
        .addrs()
        .inbound
        .ok_or_else(|| anyhow::anyhow!("billing sidecar has no inbound listener"))?;

    Ok((billing_proxy, billing_in))
}

/// orders' sidecar, its outbound routing `billing` to billing's inbound.
async fn orders_sidecar(
    dir: &Path,
    k: &DemoKeys,
    orders_app: SocketAddr,
    billing_in: SocketAddr,
) -> anyhow::Result<(Proxy, SocketAddr)> {
    let (orders, orders_trusts) = (&k.orders, &k.orders_trusts);
    let orders_cfg = write_config(
        &dir.join("orders.toml"),
        &format!(
            r#"
[identity]
name = "orders"
private_key = "{key}"
[trust]
authorized_keys = "{trust}"
[inbound]
listen = "127.0.0.1:0"
upstream = "http://{app}"
[outbound]
listen = "127.0.0.1:0"
[[outbound.routes]]
host = "billing"
upstream = "http://{billing_in}"
[admin]
listen = "127.0.0.1:0"
"#,
            key = orders.private.display(),
            trust = orders_trusts.display(),
            app = orders_app,
        ),
    )?;
    let orders_proxy = Proxy::bind(orders_cfg, prometheus::Registry::new()).await?;
    let orders_out = orders_proxy
        .addrs()
        .outbound
        .ok_or_else(|| anyhow::anyhow!("orders sidecar has no outbound listener"))?;

    Ok((orders_proxy, orders_out))
}

pub async fn run() -> anyhow::Result<bool> {
    let tmp = tempfile::Builder::new()
        .prefix("trustgate-demo-")
        .tempdir()?;
    let dir = tmp.path();
    println!(
        "trustgate demo — two services, two sidecars, fresh keys in {}\n",
        dir.display()
    );
    let k = make_keys(dir)?;
    let orders_app = spawn_echo_app("orders").await?;
    let billing_app = spawn_echo_app("billing").await?;
    let (billing_proxy, billing_in) = billing_sidecar(dir, &k, billing_app).await?;
    let (orders_proxy, orders_out) = orders_sidecar(dir, &k, orders_app, billing_in).await?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(());
    let mut servers = Vec::new();
    for proxy in [billing_proxy, orders_proxy] {
        let mut rx = stop_rx.clone();
        servers.push(tokio::spawn(proxy.serve(async move {
            let _ = rx.changed().await;
        })));
    }
    println!("apps      orders app {orders_app}, billing app {billing_app}");
    println!(
        "sidecars  orders outbound {orders_out} → billing inbound {billing_in} → billing app\n"
    );

    let mut all_ok = calls(&k, orders_out, billing_in).await?;
    all_ok &= people::step(dir).await?;
    let _ = stop_tx.send(());
    for s in servers {
        let _ = s.await;
    }
    drop(tmp);
    println!(
        "{}",
        if all_ok {
            "demo complete: every answer was the expected one (keys removed)"
        } else {
            "demo FAILED: an answer was not the expected one"
        }
    );
    Ok(all_ok)
}

/// A real orders token whose claims were edited to say "admin" (the signature no longer
/// matches them).
fn forged_token(orders: &keys::GeneratedFiles, now: u64) -> anyhow::Result<String> {
    let orders_key = Arc::new(keys::load_signing_key(&orders.private)?);
    let signer = TokenSigner::new("orders".into(), orders_key, Duration::from_secs(60));
    let token = signer.sign("billing", None, None, now)?;
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let forged_claims = serde_json::json!({
        "iss": "admin", "sub": "admin", "aud": "billing", "iat": now, "exp": now + 60
    });
    parts[1] = URL_SAFE_NO_PAD.encode(forged_claims.to_string());
    Ok(parts.join("."))
}

/// A token orders really signs, asserting a platform's claim (`kubernetes.io`) it does not
/// own: its signature is good, its claim is not read.
fn self_asserted_token(orders: &keys::GeneratedFiles, now: u64) -> anyhow::Result<String> {
    let key = keys::load_signing_key(&orders.private)?;
    let claims = serde_json::json!({
        "iss": "orders", "sub": "orders", "aud": "billing", "iat": now, "exp": now + 60,
        "kubernetes.io": {"namespace": "shop"}
    });
    signed(&key, &claims)
}

/// A JWT of `claims` signed with `key`, as another party would make it.
pub(crate) fn signed(key: &keys::SigningKey, claims: &serde_json::Value) -> anyhow::Result<String> {
    let header = serde_json::json!({"alg": key.alg.as_str(), "typ": "JWT", "kid": key.kid});
    signed_with(key, &header, claims)
}

/// A JWS of `claims` under `header`, signed with `key`.
pub(crate) fn signed_with(
    key: &keys::SigningKey,
    header: &serde_json::Value,
    claims: &serde_json::Value,
) -> anyhow::Result<String> {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = URL_SAFE_NO_PAD.encode(key.sign(input.as_bytes())?);
    Ok(format!("{input}.{signature}"))
}

/// Prints one call and its answer; whether it was the expected one.
pub(crate) fn check_answer(title: &str, hops: &str, answer: &Answer, expected: StatusCode) -> bool {
    let ok = answer.status == expected;
    println!("{} {title}", if ok { "✔" } else { "✘" });
    println!("    {hops}");
    println!("    answer: {} {}", answer.status.as_u16(), answer.body);
    if let Some(w) = &answer.www_authenticate {
        println!("    www-authenticate: {w}");
    }
    if !ok {
        println!("    expected {expected}");
    }
    println!();
    ok
}

/// The five calls, each checked against the answer it must get.
async fn calls(
    k: &DemoKeys,
    orders_out: SocketAddr,
    billing_in: SocketAddr,
) -> anyhow::Result<bool> {
    let (orders, mallory) = (&k.orders, &k.mallory);
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let mut all_ok = true;

    // 1. Trusted: orders' app calls billing through its sidecar, by Host header.
    let a = call(
        &client,
        format!("http://{orders_out}/invoices/42"),
        &[("host", "billing".into())],
    )
    .await?;
    all_ok &= check_answer(
        "trusted call: orders app → orders sidecar (signs) → billing sidecar (verifies) → billing app",
        "the billing app sees x-service-caller: orders and never the token",
        &a,
        StatusCode::OK,
    );
    if a.status == StatusCode::OK {
        let seen: serde_json::Value = serde_json::from_str(&a.body).unwrap_or_default();
        all_ok &= seen["x-service-caller"] == "orders" && seen["token_reached_app"] == false;
    }

    // 2. Forged: a real orders token whose claims were edited to another caller.
    let now = trustgate::proxy::unix_now();
    let forged = forged_token(orders, now)?;
    let a = call(
        &client,
        format!("http://{billing_in}/invoices/42"),
        &[("authorization", format!("Bearer {forged}"))],
    )
    .await?;
    all_ok &= check_answer(
        "forged call: orders' token with its claims edited to say \"admin\"",
        "straight to billing's sidecar; the signature no longer matches",
        &a,
        StatusCode::UNAUTHORIZED,
    );

    // 3. Unknown key: mallory signs a perfect token claiming to be orders.
    let mallory_key = Arc::new(keys::load_signing_key(&mallory.private)?);
    let mallory_token = TokenSigner::new("orders".into(), mallory_key, Duration::from_secs(60))
        .sign("billing", None, None, now)?;
    let a = call(
        &client,
        format!("http://{billing_in}/invoices/42"),
        &[("authorization", format!("Bearer {mallory_token}"))],
    )
    .await?;
    all_ok &= check_answer(
        "unknown key: a well-formed token from a key billing does not trust",
        "billing's authorized_keys has no such kid",
        &a,
        StatusCode::UNAUTHORIZED,
    );

    // 4. Policy: orders may read invoices, not /admin.
    let a = call(
        &client,
        format!("http://{orders_out}/admin/users"),
        &[("host", "billing".into())],
    )
    .await?;
    all_ok &= check_answer(
        "policy: orders calls billing's /admin/users",
        "the token is valid; [[inbound.allow]] only lets orders reach /invoices",
        &a,
        StatusCode::FORBIDDEN,
    );

    all_ok &= whose_claims(&client, orders, billing_in, now).await?;

    Ok(all_ok)
}

/// Whose claims (the fifth call): orders signs a platform's claim into its own token;
/// the token is valid, the claim is not read.
async fn whose_claims(
    client: &Client<HttpConnector, Full<Bytes>>,
    orders: &keys::GeneratedFiles,
    billing_in: SocketAddr,
    now: u64,
) -> anyhow::Result<bool> {
    let asserted = self_asserted_token(orders, now)?;
    let a = call(
        client,
        format!("http://{billing_in}/invoices/42"),
        &[("authorization", format!("Bearer {asserted}"))],
    )
    .await?;
    let mut ok = check_answer(
        "whose claims: orders signs \"kubernetes.io\": {\"namespace\": \"shop\"} into its own token",
        "valid token, but a peer's own claims are not a platform's: no x-caller-namespace reaches the app",
        &a,
        StatusCode::OK,
    );
    if a.status == StatusCode::OK {
        let seen: serde_json::Value = serde_json::from_str(&a.body).unwrap_or_default();
        ok &= seen["x-caller-namespace"].is_null() && seen["x-service-caller"] == "orders";
    }
    Ok(ok)
}
