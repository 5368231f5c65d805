//! A platform engineer's first hour: the README followed literally, the binary run as a
//! user runs it (from another working directory, with relative paths), and the mistakes
//! people make, each with the answer it now gets.
use crate::support;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use http::StatusCode;
use support::raw::exchange;
use support::*;

fn trustgate() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_trustgate"));
    c.env_remove("TRUSTGATE_CONFIG")
        .env_remove("TRUSTGATE_LOG_LEVEL")
        .env_remove("TRUSTGATE_LOG_FORMAT")
        .stdin(Stdio::null());
    c
}

fn out(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The first JSON log line `pick` accepts, within 10 s.
fn wait_line(
    lines: &Receiver<String>,
    pick: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines.recv_timeout(left).expect("the log line looked for");
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
            if pick(&v) {
                return v;
            }
        }
    }
}

fn message_is(v: &serde_json::Value, m: &str) -> bool {
    v["fields"]["message"]
        .as_str()
        .is_some_and(|s| s.contains(m))
}

/// Bugs 1 and 10: `run --config billing/billing.toml` from the directory above, relative
/// key paths inside, the rescan an hour away: a revocation and a new key take effect by
/// the watcher (not the rescan), and the reload says which kids came and went, and
/// warns when an identity lost its last key.
#[tokio::test]
async fn a_relative_config_path_is_watched_and_reloads_say_what_changed() {
    let keys = Keys::new();
    let root = keys.path();
    let dir = root.join("billing");
    std::fs::create_dir_all(dir.join("trusted")).unwrap();
    let orders = trustgate::keys::write_keypair(
        "orders",
        trustgate::keys::KeyAlg::Es256,
        &root.join("keys"),
        trustgate::keys::OutputFormat::Pem,
    )
    .unwrap();
    trustgate::keys::write_keypair(
        "billing",
        trustgate::keys::KeyAlg::Es256,
        &dir.join("keys"),
        trustgate::keys::OutputFormat::Pem,
    )
    .unwrap();
    std::fs::copy(&orders.public, dir.join("trusted/orders.pub")).unwrap();
    let app = spawn_app().await;
    std::fs::write(
        dir.join("billing.toml"),
        format!(
            "[identity]\nname = \"billing\"\nprivate_key = \"keys/billing.key\"\n\
             [trust]\nauthorized_keys = \"trusted\"\nrescan_interval = \"1h\"\n\
             [inbound]\nlisten = \"127.0.0.1:0\"\nupstream = \"http://{app}\"\n\
             [admin]\nlisten = \"127.0.0.1:0\"\n"
        ),
    )
    .unwrap();
    let mut cmd = trustgate();
    cmd.current_dir(root)
        .args(["run", "--config", "billing/billing.toml"]);
    let run = spawn_run(cmd);
    let token = sign_as(&orders, "orders", "billing");
    let bearer = format!("Bearer {token}");
    let url = format!("http://{}/x", run.inbound);
    let call = || async { get(url.clone(), &[("authorization", bearer.as_str())]).await };
    assert_eq!(call().await.status, StatusCode::OK);
    std::fs::remove_file(dir.join("trusted/orders.pub")).unwrap();
    let reloaded = wait_line(&run.lines, |v| message_is(v, "keyring reloaded"));
    assert!(
        reloaded["fields"]["removed"]
            .as_str()
            .is_some_and(|r| r.contains(&format!("orders:{}", orders.kid))),
        "{reloaded}"
    );
    let orphan = wait_line(&run.lines, |v| message_is(v, "has no trusted key left"));
    assert_eq!(orphan["fields"]["identity"], "orders");
    assert_eq!(
        call().await.status,
        StatusCode::UNAUTHORIZED,
        "revoked by the watcher"
    );
    std::fs::copy(&orders.public, dir.join("trusted/orders.pub")).unwrap();
    let reloaded = wait_line(&run.lines, |v| message_is(v, "keyring reloaded"));
    assert!(
        reloaded["fields"]["added"]
            .as_str()
            .is_some_and(|r| r.contains(&orders.kid)),
        "{reloaded}"
    );
    // The reload line is written once the new keyring is in force.
    assert_eq!(call().await.status, StatusCode::OK);
}

/// Bug 2: an unknown log level is refused (never a silent sidecar), from the flag, the
/// environment and the file.
#[test]
fn an_unknown_log_level_is_refused() {
    let o = trustgate()
        .args(["--log-level", "verbose", "keys", "."])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", out(&o));
    assert!(
        out(&o).contains("\"verbose\" is not a log level"),
        "{}",
        out(&o)
    );
    let o = trustgate()
        .env("TRUSTGATE_LOG_LEVEL", "verbose")
        .args(["run", "--config", "/nonexistent.toml"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", out(&o));
    let keys = Keys::new();
    let billing = keys.make("billing");
    let config = keys.path().join("b.toml");
    let text = Conf::new("billing", &billing.private)
        .inbound(&keys.trust_dir("t", &[]), "127.0.0.1:9")
        .extra("[log]\nlevel = \"verbose\"\n")
        .toml();
    std::fs::write(&config, text).unwrap();
    let (code, text) = check_config(&config);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("log.level: \"verbose\" is not a log level"),
        "{text}"
    );
    for good in ["debug", "trustgate=debug,warn", "WARN", "hyper=info"] {
        let o = trustgate()
            .args(["--log-level", good, "keys", "."])
            .output()
            .unwrap();
        assert_ne!(o.status.code(), Some(2), "{good}: {}", out(&o));
    }
}

/// Bug 3: public paths take the rules' patterns, after the same canonical-path check.
#[tokio::test]
async fn public_paths_take_path_patterns() {
    let keys = Keys::new();
    let billing = keys.make("billing");
    let app = support::raw::spawn_raw_app().await;
    let side = Conf::new("billing", &billing.private)
        .inbound(&keys.trust_dir("t", &[]), app.addr)
        .set("inbound", r#"public_paths = ["/pub/*", "/healthz"]"#)
        .start()
        .await;
    for (path, status) in [
        ("/pub/a/b", 200),
        ("/pub", 200),
        ("/healthz", 200),
        ("/public", 401),
        ("/healthz/x", 401),
        ("/pub/../admin", 400),
        ("/pub/%2e%2e/admin", 400),
    ] {
        let req = format!("GET {path} HTTP/1.1\r\nhost: billing\r\n\r\n");
        let r = exchange(side.inbound(), req.as_bytes()).await.unwrap();
        assert_eq!(r.status, status, "{path}: {}", r.body_text());
    }
    let config = keys.path().join("b.toml");
    let text = Conf::new("billing", &billing.private)
        .inbound(&keys.trust_dir("t", &[]), "127.0.0.1:9")
        .set("inbound", r#"public_paths = ["*"]"#)
        .toml();
    std::fs::write(&config, text).unwrap();
    let (code, text) = check_config(&config);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("would forward every path without a token"),
        "{text}"
    );
}

/// Bugs 4 and 8: refusals after the token was verified name the caller (and a revoked
/// key its kid); a bare token without `Bearer` is malformed, not missing.
#[test]
fn refusals_name_the_caller_and_a_token_without_its_scheme_is_malformed() {
    let keys = Keys::new();
    let orders = keys.make("orders");
    let billing = keys.make("billing");
    let revoked = keys.path().join("revoked");
    std::fs::write(&revoked, "").unwrap();
    let app = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let text = Conf::new("billing", &billing.private)
        .inbound(&keys.trust_dir("t", &[&orders]), app.local_addr().unwrap())
        .path("trust", "revoked", &revoked)
        .extra("[[inbound.allow]]\npaths = [\"/ok\"]\n[callers.orders]\nrate_limit = \"1/h\"\nburst = 1\n")
        .toml();
    let dir = keys.path().join("run");
    std::fs::create_dir_all(&dir).unwrap();
    let run = run_binary(&text, &dir);
    let token = sign_as(&orders, "orders", "billing");
    let status = |path: &str, auth: &str| {
        let req = format!(
            "GET {path} HTTP/1.1\r\nhost: b\r\nauthorization: {auth}\r\nconnection: close\r\n\r\n"
        );
        let mut s = std::net::TcpStream::connect(&run.inbound).unwrap();
        std::io::Write::write_all(&mut s, req.as_bytes()).unwrap();
        let mut answer = String::new();
        std::io::Read::read_to_string(&mut s, &mut answer).unwrap();
        answer
    };
    // 403 policy: the caller is known.
    assert!(status("/denied", &format!("Bearer {token}")).starts_with("HTTP/1.1 403"));
    let line = access_line(&run.lines, "inbound");
    assert_eq!(
        (line["status"].as_u64(), line["caller"].as_str()),
        (Some(403), Some("orders"))
    );
    // A bare token: malformed.
    let answer = status("/ok", &token);
    assert!(answer.contains("\"reason\":\"malformed\""), "{answer}");
    let line = access_line(&run.lines, "inbound");
    assert_eq!(line["reason"], "malformed");
    // The one request of the hour goes to the app (which never answers: closed below)…
    // then 429 names the caller.
    drop(app);
    let _ = status("/ok", &format!("Bearer {token}"));
    let _ = access_line(&run.lines, "inbound");
    assert!(status("/ok", &format!("Bearer {token}")).starts_with("HTTP/1.1 429"));
    let line = access_line(&run.lines, "inbound");
    assert_eq!(
        (line["status"].as_u64(), line["caller"].as_str()),
        (Some(429), Some("orders"))
    );
    // Revoked: the caller, and the kid in a line of its own.
    std::fs::write(&revoked, format!("{}\n", orders.kid)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = status("/ok", &format!("Bearer {token}"));
        if answer.contains("\"reason\":\"revoked\"") {
            break;
        }
        assert!(Instant::now() < deadline, "never revoked: {answer}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let named = wait_line(&run.lines, |v| message_is(v, "a revoked key was presented"));
    assert_eq!(
        (
            named["fields"]["caller"].as_str(),
            named["fields"]["kid"].as_str()
        ),
        (Some("orders"), Some(orders.kid.as_str()))
    );
    let line = wait_line(&run.lines, |v| {
        v["target"] == "trustgate::access" && v["fields"]["reason"] == "revoked"
    });
    assert_eq!(line["fields"]["caller"], "orders");
}

/// Bugs 5, 6, 11: an environment override's problem names the variable; `check` and
/// `keys` agree on a private key in authorized_keys; an empty one is warned about; a
/// TOML error has a line and a column, a misspelt key a suggestion.
#[test]
fn check_says_where_and_what() {
    let keys = Keys::new();
    let billing = keys.make("billing");
    let trusted = keys.trust_dir("t", &[]);
    let config = keys.path().join("b.toml");
    let conf = Conf::new("billing", &billing.private).inbound(&trusted, "127.0.0.1:9");
    std::fs::write(&config, conf.toml()).unwrap();
    let check = |env: &[(&str, &str)]| {
        let mut c = trustgate();
        c.arg("check").arg("--config").arg(&config);
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    let o = check(&[("TRUSTGATE_INBOUND_LISTEN", "9443")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        out(&o).contains("environment variable TRUSTGATE_INBOUND_LISTEN (inbound.listen): invalid socket address"),
        "{}",
        out(&o)
    );
    assert!(!out(&o).contains("b.toml: inbound.listen"), "{}", out(&o));
    // Empty: valid, with a warning.
    let o = check(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    assert!(out(&o).contains("no trusted keys in"), "{}", out(&o));
    // A private key where public keys belong: check and keys both exit 1.
    std::fs::copy(&billing.private, trusted.join("orders.pem")).unwrap();
    let o = check(&[]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(
        out(&o).contains("holds private key material"),
        "{}",
        out(&o)
    );
    let k = trustgate().arg("keys").arg(&trusted).output().unwrap();
    assert_eq!(k.status.code(), Some(1), "{}", out(&k));
    // Syntax: line and column. A misspelt key: what was meant.
    std::fs::write(
        &config,
        "[identity]\nname = \"billing\"\n[trust]\nauthorized_keys = /x\n",
    )
    .unwrap();
    let o = check(&[]);
    assert!(
        out(&o).contains("b.toml:4:19: not valid TOML"),
        "{}",
        out(&o)
    );
    std::fs::write(
        &config,
        format!("{}listne = \"127.0.0.1:1\"\n[inbund]\n", conf.toml()),
    )
    .unwrap();
    let o = check(&[]);
    assert!(
        out(&o).contains("inbound.listne: unknown key (did you mean listen?)"),
        "{}",
        out(&o)
    );
    assert!(
        out(&o).contains("inbund: unknown key (did you mean inbound?)"),
        "{}",
        out(&o)
    );
    // check defaults --config as run does.
    let o = trustgate().arg("check").output().unwrap();
    assert!(
        out(&o).contains("/etc/trustgate/trustgate.toml"),
        "{}",
        out(&o)
    );
}

/// Item 7: the facts behind a refusal, in `verify` and `explain`.
#[test]
fn a_refusal_says_why() {
    let keys = Keys::new();
    let orders = keys.make("orders");
    let trusted = keys.trust_dir("t", &[&orders]);
    let verify = |token: &str| {
        let o = trustgate()
            .arg("verify")
            .arg("--authorized-keys")
            .arg(&trusted)
            .args(["--aud", "billing", token])
            .output()
            .unwrap();
        out(&o)
    };
    let wrong = sign_as(&orders, "orders", "shipping");
    assert!(
        verify(&wrong)
            .contains("why: the token's aud is \"shipping\"; this service is \"billing\""),
        "{}",
        verify(&wrong)
    );
    let stranger = keys.make("mallory");
    let unknown = sign_as(&stranger, "orders", "billing");
    assert!(
        verify(&unknown).contains(&format!(
            "kid \"{}\" is not a trusted key (the token claims iss \"orders\")",
            stranger.kid
        )),
        "{}",
        verify(&unknown)
    );
    let o = trustgate()
        .arg("verify")
        .arg("--authorized-keys")
        .arg(&trusted)
        .args(["--aud", "billing", "--now"])
        .arg((trustgate::proxy::unix_now() + 3600).to_string())
        .arg(sign_as(&orders, "orders", "billing"))
        .output()
        .unwrap();
    assert!(
        out(&o).contains("rejected: expired") && out(&o).contains("s ago"),
        "{}",
        out(&o)
    );
}

/// Item 9: which hop failed. billing's app down: 502 from billing/inbound, relayed by
/// orders' sidecar (counted callee_refused there); billing's sidecar down: 502 from
/// orders/outbound; billing's 401 is orders' callee_refused, not ok.
#[tokio::test]
async fn a_caller_can_tell_which_hop_failed() {
    let keys = Keys::new();
    let orders = keys.make("orders");
    let billing = keys.make("billing");
    // Port 9 (discard): nothing listens there, as the other tests assume.
    let billing_side = Conf::new("billing", &billing.private)
        .inbound(&keys.trust_dir("billing-trusts", &[&orders]), "127.0.0.1:9")
        .start()
        .await;
    let orders_side = Conf::new("orders", &orders.private)
        .inbound(&keys.trust_dir("orders-trusts", &[]), "127.0.0.1:9")
        .route("billing", format!("http://{}", billing_side.inbound()))
        .route("gone", "http://127.0.0.2:9")
        .start()
        .await;
    let out_url = format!("http://{}/x", orders_side.outbound());
    let via = |host: &'static str| {
        let url = out_url.clone();
        async move { get(url, &[("host", host)]).await }
    };
    let a = via("billing").await;
    assert_eq!(a.status, StatusCode::BAD_GATEWAY);
    assert_eq!(
        a.headers["trustgate-hop"], "billing/inbound",
        "billing's app is down"
    );
    let a = via("gone").await;
    assert_eq!(a.status, StatusCode::BAD_GATEWAY);
    assert_eq!(
        a.headers["trustgate-hop"], "orders/outbound",
        "the callee's sidecar is down"
    );
    let m = &orders_side.state.metrics.requests;
    assert_eq!(
        m.with_label_values(&["outbound", "callee_refused"]).get(),
        1
    );
    assert_eq!(m.with_label_values(&["outbound", "ok"]).get(), 0);
    // A refusal by billing's sidecar (orders is trusted by no key of billing's here).
    let stranger = Conf::new("orders", &keys.make("stranger").private)
        .route("billing", format!("http://{}", billing_side.inbound()))
        .start()
        .await;
    let a = get(
        format!("http://{}/x", stranger.outbound()),
        &[("host", "billing")],
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(a.headers["trustgate-hop"], "billing/inbound");
    let m = &stranger.state.metrics.requests;
    assert_eq!(
        m.with_label_values(&["outbound", "callee_refused"]).get(),
        1
    );
}

/// Item 13: the README's "Make keys and run a sidecar" block, run as written (after its
/// build line) in an empty directory, on free ports.
#[test]
fn the_readme_walkthrough_works_as_written() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let start = readme
        .find("<!-- readme:try -->")
        .expect("the marked block");
    let block = &readme[start..];
    let block = &block[block.find("```sh\n").unwrap() + 6..];
    let block = &block[..block.find("```").unwrap()];
    let mut lines = block.lines();
    assert!(lines.next().unwrap().starts_with("cargo build --release"));
    assert!(lines.next().unwrap().starts_with("cd \"$(mktemp -d)\""));
    // Whatever happens, the block's background jobs end with it (they hold its output).
    let script: String =
        std::iter::once("trap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n".to_owned())
            .chain(lines.map(|l| format!("{l}\n")))
            .collect();
    let (sidecar, app, admin) = (free_port(), free_port(), free_port());
    let script = script
        .replace("8443", &sidecar.to_string())
        .replace("8080", &app.to_string())
        .replace("15000", &admin.to_string());
    let dir = tempfile::tempdir().unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_trustgate")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let o = Command::new("timeout")
        .args(["120", "bash", "-euo", "pipefail", "-c", &script])
        .current_dir(dir.path())
        .env("PATH", path)
        .env_remove("TRUSTGATE_CONFIG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = out(&o);
    assert_eq!(o.status.code(), Some(0), "{text}");
    assert!(text.contains("configuration is valid"), "{text}");
    assert!(text.contains("\n200\n"), "{text}");
    assert!(text.contains("\"reason\":\"missing\""), "{text}");
    assert!(text.contains("token: none given"), "{text}");
}

/// Items 14–16: inject warns about its placeholder image; a kubelet-written Secret volume's
/// 0444 key is no warning; the OpenSSH Ed25519 hint works; --shared refuses a key pair's
/// file; a long --ttl is warned about; the listening line says who and how; an
/// outbound-only sidecar exports no inbound series.
#[tokio::test]
async fn the_small_things() {
    let keys = Keys::new();
    let deploy = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: a}\nspec:\n  selector: {matchLabels: {app: a}}\n  template:\n    metadata: {labels: {app: a}}\n    spec:\n      containers:\n        - {name: a, image: x, ports: [{containerPort: 8080}]}\n";
    let file = keys.path().join("d.yaml");
    std::fs::write(&file, deploy).unwrap();
    let o = trustgate().arg("inject").arg(&file).output().unwrap();
    assert!(
        out(&o).contains("warning: the sidecar image is the placeholder"),
        "{}",
        out(&o)
    );
    let o = trustgate()
        .arg("inject")
        .arg(&file)
        .args(["--image", "localhost/trustgate:1"])
        .output()
        .unwrap();
    assert!(!out(&o).contains("placeholder"), "{}", out(&o));

    // A Secret volume as the kubelet writes it: ..data and a 0444 file through it.
    let billing = keys.make("billing");
    let vol = keys.path().join("identity");
    std::fs::create_dir_all(vol.join("..2026_12_05")).unwrap();
    std::fs::copy(&billing.private, vol.join("..2026_12_05/billing.key")).unwrap();
    std::os::unix::fs::symlink("..2026_12_05", vol.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/billing.key", vol.join("billing.key")).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(
        vol.join("..2026_12_05/billing.key"),
        std::fs::Permissions::from_mode(0o444),
    )
    .unwrap();
    let config = keys.path().join("b.toml");
    std::fs::write(
        &config,
        Conf::new("billing", &vol.join("billing.key"))
            .inbound(&keys.trust_dir("t", &[]), "127.0.0.1:9")
            .toml(),
    )
    .unwrap();
    let (_, text) = check_config(&config);
    assert!(!text.contains("chmod 600"), "{text}");
    std::fs::set_permissions(&billing.private, std::fs::Permissions::from_mode(0o444)).unwrap();
    std::fs::write(
        &config,
        Conf::new("billing", &billing.private)
            .inbound(&keys.trust_dir("t", &[]), "127.0.0.1:9")
            .toml(),
    )
    .unwrap();
    let (_, text) = check_config(&config);
    assert!(
        text.contains("chmod 600"),
        "a plain file still warns: {text}"
    );

    // The OpenSSH Ed25519 key: the hint converts it.
    if Command::new("ssh-keygen").arg("-?").output().is_ok() {
        let ed = keys.path().join("ed");
        let made = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&ed)
            .output()
            .unwrap();
        assert!(made.status.success());
        let o = trustgate()
            .arg("token")
            .arg("--key")
            .arg(&ed)
            .args(["--iss", "a", "--aud", "b"])
            .output()
            .unwrap();
        let hint = out(&o);
        let python = hint
            .split("python3 -c \"")
            .nth(1)
            .and_then(|h| h.split("\", or").next())
            .expect(&hint)
            .replace("FILE", &ed.display().to_string());
        let py = Command::new("python3")
            .args(["-c", &python])
            .output()
            .unwrap();
        assert!(py.status.success(), "{}", out(&py));
        let o = trustgate()
            .arg("token")
            .arg("--key")
            .arg(format!("{}.pem", ed.display()))
            .args(["--iss", "a", "--aud", "b"])
            .output()
            .unwrap();
        assert!(o.status.success(), "the converted key signs: {}", out(&o));
    }
    let o = trustgate()
        .arg("token")
        .arg("--shared")
        .arg("--key")
        .arg(&billing.private)
        .args(["--iss", "a", "--aud", "b"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(out(&o).contains("not a shared secret"), "{}", out(&o));
    std::fs::set_permissions(&billing.private, std::fs::Permissions::from_mode(0o600)).unwrap();
    let o = trustgate()
        .arg("token")
        .arg("--key")
        .arg(&billing.private)
        .args(["--iss", "a", "--aud", "b", "--ttl", "1h"])
        .output()
        .unwrap();
    assert!(o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("refuses it lifetime_too_long"),
        "{}",
        out(&o)
    );

    // The listening line; an outbound-only sidecar's metrics.
    let dir = keys.path().join("run");
    std::fs::create_dir_all(&dir).unwrap();
    let text = Conf::new("billing", &billing.private).outbound().toml();
    let run = run_binary(&text, &dir);
    let metrics = get(format!("http://{}/metrics", run.admin), &[]).await.body;
    assert!(metrics.contains("direction=\"outbound\""), "{metrics}");
    assert!(!metrics.contains("direction=\"inbound\""), "{metrics}");
    drop(run);
    let text = Conf::new("billing", &billing.private)
        .inbound(&keys.trust_dir("t", &[]), "127.0.0.1:9")
        .toml();
    let mut cmd = trustgate();
    std::fs::write(dir.join("i.toml"), text).unwrap();
    cmd.arg("run").arg("--config").arg(dir.join("i.toml"));
    let run = spawn_run(cmd);
    let l = &run.listening;
    assert_eq!(
        (
            l["identity"].as_str(),
            l["mode"].as_str(),
            l["trusted_keys"].as_u64()
        ),
        (Some("billing"), Some("enforce"), Some(0)),
        "{l}"
    );
    assert_eq!(l["kid"], billing.kid.as_str());
    let help = out(&trustgate().args(["keygen", "--help"]).output().unwrap());
    assert!(
        help.contains("Key type") && help.contains("File format"),
        "{help}"
    );
    let help = out(&trustgate().args(["verify", "--help"]).output().unwrap());
    assert!(
        help.contains("Clock skew") && help.contains("authorized_keys directory"),
        "{help}"
    );
}
