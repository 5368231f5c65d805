//! The demo's last step: the person behind a call. A small OIDC provider of the demo's own
//! on loopback (discovery and JWKS, nothing else), and three sidecars: web (the edge:
//! verifies the person's token, mints a transaction token) → orders → billing. The person
//! is seen two hops later; a forged transaction token is refused.
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use super::{call, spawn_echo_app, write_config, Answer};
use trustgate::keys::{self, KeyAlg, OutputFormat, SigningKey};
use trustgate::proxy::{unix_now, Proxy};

/// The provider: `/.well-known/openid-configuration` and `/jwks`, over plain HTTP on
/// loopback (the demo's sidecars allow it; a real one is fetched over TLS).
async fn provider(key: &SigningKey) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let jwks = serde_json::json!({ "keys": [key.public_jwk()] }).to_string();
    let discovery = serde_json::json!({
        "issuer": format!("http://{addr}"),
        "jwks_uri": format!("http://{addr}/jwks"),
    })
    .to_string();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (jwks, discovery) = (jwks.clone(), discovery.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: http::Request<_>| {
                    let body = match req.uri().path() {
                        "/jwks" => jwks.clone(),
                        _ => discovery.clone(),
                    };
                    async move { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body)))) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(addr)
}

/// The person's token, as the provider issues it (ES256, for audience web), bound to the
/// client's key (`cnf.jkt`: RFC 9449): worth nothing without a proof of that key.
fn person_token(
    key: &SigningKey,
    client: &SigningKey,
    provider: SocketAddr,
    now: u64,
) -> anyhow::Result<String> {
    let claims = serde_json::json!({
        "iss": format!("http://{provider}"), "sub": "alice", "aud": "web",
        "iat": now, "exp": now + 300, "tenant": "acme", "email": "alice@example.com",
        "cnf": { "jkt": client.kid },
    });
    super::signed(key, &claims)
}

/// Where the demo's client believes it calls web (behind an ingress): the proofs' origin.
const ORIGIN: &str = "https://shop.example";

/// The client's DPoP proof for `GET path` with `token` (RFC 9449 §4.2).
fn proof(client: &SigningKey, path: &str, token: &str, now: u64) -> anyhow::Result<String> {
    let header = serde_json::json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": client.public_jwk()});
    let claims = serde_json::json!({
        "jti": format!("demo-{now}-{path}"), "htm": "GET", "htu": format!("{ORIGIN}{path}"),
        "iat": now, "ath": trustgate::token::dpop::ath(token),
    });
    super::signed_with(client, &header, &claims)
}

/// A sidecar from configuration text, bound; its inbound and outbound addresses.
async fn sidecar(
    dir: &Path,
    name: &str,
    text: String,
) -> anyhow::Result<(Proxy, Option<SocketAddr>, Option<SocketAddr>)> {
    let cfg = write_config(&dir.join(format!("{name}.toml")), &text)?;
    let proxy = Proxy::bind(cfg, prometheus::Registry::new()).await?;
    let a = proxy.addrs();
    Ok((proxy, a.inbound, a.outbound))
}

fn config(name: &str, key: &Path, trusts: &Path, app: SocketAddr, extra: &str) -> String {
    format!(
        "[identity]\nname = \"{name}\"\nprivate_key = \"{}\"\n[trust]\nauthorized_keys = \"{}\"\n\
         [inbound]\nlisten = \"127.0.0.1:0\"\nupstream = \"http://{app}\"\n\
         [outbound]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n{extra}",
        key.display(),
        trusts.display()
    )
}

/// The step; whether every answer was the expected one.
pub async fn step(dir: &Path) -> anyhow::Result<bool> {
    let keys_dir = dir.join("keys");
    let people = keys::write_keypair("people", KeyAlg::Es256, &keys_dir, OutputFormat::Pem)?;
    let people_key = keys::load_signing_key(&people.private)?;
    let provider = provider(&people_key).await?;
    let mut made = Vec::new();
    for name in ["web", "orders2", "billing2"] {
        made.push(keys::write_keypair(
            name,
            KeyAlg::Es256,
            &keys_dir,
            OutputFormat::Pem,
        )?);
    }
    let trusts =
        |name: &str, who: &[&keys::GeneratedFiles]| -> anyhow::Result<std::path::PathBuf> {
            let d = dir.join(format!("{name}-trusts"));
            std::fs::create_dir_all(&d)?;
            for k in who {
                let file = k.public.file_name().unwrap_or_default();
                std::fs::copy(&k.public, d.join(file))?;
            }
            Ok(d)
        };
    let (web, orders, billing) = (&made[0], &made[1], &made[2]);
    let apps = [
        spawn_echo_app("web").await?,
        spawn_echo_app("orders").await?,
        spawn_echo_app("billing").await?,
    ];
    let downstream = "transaction_token_issuers = [\"web\"]\n";
    let (billing_proxy, billing_in, _) = sidecar(dir, "billing2", config("billing2",
        &billing.private, &trusts("billing2", &[orders, web])?, apps[2],
        "[inbound.users]\nmode = \"required\"\n[inbound.users.context_headers]\n\"x-tenant\" = \"tenant\"\n",
    ).replace("[trust]\n", &format!("[trust]\n{downstream}"))).await?;
    let billing_in = billing_in.ok_or_else(|| anyhow::anyhow!("no inbound"))?;
    let orders_text = config("orders2", &orders.private, &trusts("orders2", &[web])?, apps[1],
        &format!("[[outbound.routes]]\nhost = \"billing\"\nupstream = \"http://{billing_in}\"\naudience = \"billing2\"\n"))
        .replace("[trust]\n", &format!("[trust]\n{downstream}"));
    let (orders_proxy, orders_in, orders_out) = sidecar(dir, "orders2", orders_text).await?;
    let (orders_in, orders_out) = (
        orders_in.unwrap_or(billing_in),
        orders_out.unwrap_or(billing_in),
    );
    let web_text = config("web", &web.private, &trusts("web", &[])?, apps[0], &format!(
        "[inbound.users]\ncallers = \"optional\"\nmint_transaction_token = true\n\
         context = {{ tenant = \"/tenant\" }}\ndpop_origins = [\"{ORIGIN}\"]\n\
         [[outbound.routes]]\nhost = \"orders\"\nupstream = \"http://{orders_in}\"\naudience = \"orders2\"\n\
         [[trust.issuers]]\nname = \"people\"\nkind = \"oidc\"\nusers = true\n\
         issuer = \"http://{provider}\"\naudiences = [\"web\"]\n"));
    // The demo's provider answers on plain http:// (loopback only).
    let web_text = web_text.replace("[trust]\n", "[trust]\nallow_http_fetch = true\n");
    let (web_proxy, web_in, web_out) = sidecar(dir, "web", web_text).await?;
    let (web_in, web_out) = (web_in.unwrap_or(billing_in), web_out.unwrap_or(billing_in));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(());
    let mut servers = Vec::new();
    for proxy in [billing_proxy, orders_proxy, web_proxy] {
        let mut rx = stop_rx.clone();
        servers.push(tokio::spawn(proxy.serve(async move {
            let _ = rx.changed().await;
        })));
    }
    println!("people    an OIDC provider of the demo's own at http://{provider} (discovery, JWKS)");
    println!("          web (the edge) {web_in} → orders2 {orders_in} → billing2 {billing_in}\n");
    let ok = calls(&people_key, provider, web_in, web_out, orders_out).await;
    let _ = stop_tx.send(());
    for s in servers {
        let _ = s.await;
    }
    ok
}

/// What an app saw, from the echo app's answer.
fn saw(a: &Answer) -> serde_json::Value {
    serde_json::from_str(&a.body).unwrap_or_default()
}

async fn calls(
    people_key: &SigningKey,
    provider: SocketAddr,
    web_in: SocketAddr,
    web_out: SocketAddr,
    orders_out: SocketAddr,
) -> anyhow::Result<bool> {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let dpop_client = keys::generate(KeyAlg::Es256)?;
    let now = unix_now();
    let person = person_token(people_key, &dpop_client, provider, now)?;
    let mut ok = true;
    ok &= stolen(&client, web_in, &person).await?;
    // 1. The person's token at the edge, with the client's proof: the app gets the person
    // and a transaction token.
    let a = call(
        &client,
        format!("http://{web_in}/profile"),
        &[
            ("x-user-token", format!("DPoP {person}")),
            ("dpop", proof(&dpop_client, "/profile", &person, now)?),
        ],
    )
    .await?;
    let web = saw(&a);
    let txn = web["txn-token"].as_str().unwrap_or_default().to_owned();
    let at_edge = a.status == StatusCode::OK
        && web["x-user-subject"] == "alice"
        && web["person_token_reached_app"] == false
        && !txn.is_empty();
    ok &= tick(at_edge, "a person: alice's DPoP-bound token (from the provider) and her client's proof at web, the edge",
        &format!("web's app sees x-user-subject: {}, x-transaction-id: {}, a txn-token, never alice's token",
            web["x-user-subject"], web["x-transaction-id"]));
    // 2. web's app calls orders, orders' app calls billing, each passing txn-token on.
    let a = call(
        &client,
        format!("http://{web_out}/orders/7"),
        &[("host", "orders".into()), ("txn-token", txn.clone())],
    )
    .await?;
    let at_orders = saw(&a);
    let a = call(
        &client,
        format!("http://{orders_out}/invoices/42"),
        &[("host", "billing".into()), ("txn-token", txn.clone())],
    )
    .await?;
    let at_billing = saw(&a);
    let two_hops = a.status == StatusCode::OK
        && at_orders["x-user-subject"] == "alice"
        && at_billing["x-user-subject"] == "alice"
        && at_billing["x-service-caller"] == "orders2"
        && at_billing["x-transaction-id"] == web["x-transaction-id"];
    ok &= tick(two_hops, "the person two hops later: web → orders2 → billing2, txn-token passed on by the apps",
        &format!("billing2's app sees x-service-caller: {}, x-user-subject: {}, x-tenant: {}, the same x-transaction-id",
            at_billing["x-service-caller"], at_billing["x-user-subject"], at_billing["x-tenant"]));
    // 3. A forged transaction token (its person edited) is refused.
    let mut parts: Vec<String> = txn.split('.').map(str::to_owned).collect();
    if parts.len() == 3 {
        let mut claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1]).unwrap_or_default())
                .unwrap_or_default();
        claims["sub"] = "mallory".into();
        parts[1] = URL_SAFE_NO_PAD.encode(claims.to_string());
    }
    let a = call(
        &client,
        format!("http://{orders_out}/invoices/42"),
        &[("host", "billing".into()), ("txn-token", parts.join("."))],
    )
    .await?;
    let refused = a.status == StatusCode::UNAUTHORIZED && a.body.contains("txn_bad_signature");
    ok &= tick(
        refused,
        "a forged transaction token: its sub edited to mallory",
        &format!("answer: {} {}", a.status.as_u16(), a.body),
    );
    Ok(ok)
}

/// The person's token stolen: bound to the client's key, without a proof it is worth
/// nothing.
async fn stolen(
    client: &Client<HttpConnector, Full<Bytes>>,
    web_in: SocketAddr,
    person: &str,
) -> anyhow::Result<bool> {
    let a = call(
        client,
        format!("http://{web_in}/profile"),
        &[("x-user-token", format!("Bearer {person}"))],
    )
    .await?;
    Ok(tick(
        a.status == StatusCode::UNAUTHORIZED && a.body.contains("user_dpop_bearer_scheme"),
        "alice's token stolen: bound to her client's key (DPoP), sent without a proof",
        &format!("answer: {} {}", a.status.as_u16(), a.body),
    ))
}

fn tick(ok: bool, title: &str, line: &str) -> bool {
    println!("{} {title}", if ok { "✔" } else { "✘" });
    println!("    {line}\n");
    ok
}
