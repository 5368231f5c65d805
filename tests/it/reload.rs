//! Hot reload with real files, the real watcher and the real proxy: the exact kubelet
//! `..data` swap, broken files, revocation on an open keep-alive connection, reloads under
//! load, signing-key rotation under traffic, and the directory vanishing.
use crate::support;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::StatusCode;
use support::*;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use trustgate::keys::{self, GeneratedFiles};

/// Writes `files` into a Kubernetes-style volume at `dir` the way the kubelet does:
/// new `..<timestamp>` directory, files written, `..data_tmp` symlink renamed over
/// `..data`, visible symlinks added for new names, stale ones removed, old directory
/// removed.
fn kubelet_update(dir: &Path, files: &[(&str, Vec<u8>)]) {
    static N: AtomicUsize = AtomicUsize::new(0);
    std::fs::create_dir_all(dir).unwrap();
    let ts = format!("..2026_11_24_10_00_00.{}", N.fetch_add(1, Ordering::SeqCst));
    let new_dir = dir.join(&ts);
    std::fs::create_dir(&new_dir).unwrap();
    for (name, content) in files {
        std::fs::write(new_dir.join(name), content).unwrap();
    }
    let old = std::fs::read_link(dir.join("..data")).ok();
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&ts, &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    for (name, _) in files {
        let visible = dir.join(name);
        if visible.symlink_metadata().is_err() {
            std::os::unix::fs::symlink(format!("..data/{name}"), &visible).unwrap();
        }
    }
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') && !files.iter().any(|(n, _)| *n == name) {
            std::fs::remove_file(entry.path()).unwrap();
        }
    }
    if let Some(old) = old {
        std::fs::remove_dir_all(dir.join(old)).unwrap();
    }
}

fn public(f: &GeneratedFiles) -> Vec<u8> {
    std::fs::read(&f.public).unwrap()
}

fn token(f: &GeneratedFiles, iss: &str) -> String {
    format!("Bearer {}", sign_as(f, iss, "billing"))
}

async fn billing(keys: &Keys, trusted: &Path, revoked: Option<&Path>) -> (Sidecar, GeneratedFiles) {
    let billing = keys.make("billing");
    let app = spawn_app().await;
    let mut conf = Conf::new("billing", &billing.private).inbound(trusted, app);
    if let Some(p) = revoked {
        conf = conf.set("trust", format!("revoked = \"{}\"", p.display()));
    }
    let side = conf.start().await;
    (side, billing)
}

async fn status(side: &Sidecar, auth: &str) -> (StatusCode, String) {
    let a = get(
        format!("http://{}/x", side.inbound()),
        &[("authorization", auth)],
    )
    .await;
    let reason = if a.status == StatusCode::OK {
        String::new()
    } else {
        a.json()["reason"].as_str().unwrap_or_default().to_owned()
    };
    (a.status, reason)
}

/// Polls until `auth` gets `want` (status, reason) or the deadline passes; returns the
/// time it took.
async fn until(side: &Sidecar, auth: &str, want: (StatusCode, &str)) -> Duration {
    let start = Instant::now();
    let deadline = Duration::from_secs(3);
    loop {
        let got = status(side, auth).await;
        if got.0 == want.0 && got.1 == want.1 {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < deadline,
            "still {got:?} after {deadline:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

const OK: (StatusCode, &str) = (StatusCode::OK, "");
const UNKNOWN: (StatusCode, &str) = (StatusCode::UNAUTHORIZED, "unknown_key");

#[tokio::test]
async fn kubelet_swaps_add_replace_and_remove_keys() {
    let keys = Keys::new();
    let orders = keys.make("orders");
    let payments = keys.make("payments");
    let trusted = keys.path().join("secret");
    kubelet_update(&trusted, &[("orders.pub", public(&orders))]);
    let (side, _) = billing(&keys, &trusted, None).await;
    let (orders_t, payments_t) = (token(&orders, "orders"), token(&payments, "payments"));
    assert_eq!(
        status(&side, &orders_t).await,
        (StatusCode::OK, String::new())
    );
    assert_eq!(status(&side, &payments_t).await.1, "unknown_key");

    let mut took = Vec::new();
    // Add.
    kubelet_update(
        &trusted,
        &[
            ("orders.pub", public(&orders)),
            ("payments.pub", public(&payments)),
        ],
    );
    took.push(until(&side, &payments_t, OK).await);
    // Replace orders' key (a rotation done by editing the Secret).
    let orders2 = keys.make("orders2");
    let orders2_t = token(&orders2, "orders");
    kubelet_update(
        &trusted,
        &[
            ("orders.pub", public(&orders2)),
            ("payments.pub", public(&payments)),
        ],
    );
    took.push(until(&side, &orders2_t, OK).await);
    assert_eq!(status(&side, &orders_t).await.1, "unknown_key");
    // Remove.
    kubelet_update(&trusted, &[("orders.pub", public(&orders2))]);
    took.push(until(&side, &payments_t, UNKNOWN).await);
    assert_eq!(status(&side, &orders2_t).await.0, StatusCode::OK);
    eprintln!("change → enforcement: {took:?}");
    let m = get(format!("http://{}/metrics", side.admin()), &[])
        .await
        .body;
    assert!(m.contains("trustgate_trusted_keys 1"), "{m}");
    assert!(
        m.contains("trustgate_keyring_reloads_total{result=\"ok\"}"),
        "{m}"
    );
}

#[tokio::test]
async fn a_broken_file_keeps_the_good_keys_and_is_reported() {
    let keys = Keys::new();
    let orders = keys.make("orders");
    let trusted = keys.path().join("secret");
    kubelet_update(&trusted, &[("orders.pub", public(&orders))]);
    let (side, _) = billing(&keys, &trusted, None).await;
    let orders_t = token(&orders, "orders");

    // A junk file appears next to the good one.
    kubelet_update(
        &trusted,
        &[
            ("orders.pub", public(&orders)),
            ("search.pem", b"-----BEGIN PUBLIC KEY-----\nMFkw".to_vec()),
        ],
    );
    let admin = side.admin();
    let mut reported = false;
    for _ in 0..300 {
        let trust = get(format!("http://{admin}/trust"), &[]).await.json();
        if trust["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["file"].as_str().unwrap().ends_with("search.pem"))
        {
            reported = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(reported, "the broken file shows in /trust");
    assert_eq!(status(&side, &orders_t).await.0, StatusCode::OK);
    let m = get(format!("http://{admin}/metrics"), &[]).await.body;
    assert!(
        m.contains("trustgate_keyring_reloads_total{result=\"error\"}"),
        "{m}"
    );

    // The good file itself is broken by a bad edit: its previous keys stay in force.
    kubelet_update(&trusted, &[("orders.pub", b"not a key".to_vec())]);
    let mut kept = false;
    for _ in 0..300 {
        let trust = get(format!("http://{admin}/trust"), &[]).await.json();
        let problems = trust["problems"].as_array().unwrap().clone();
        if problems
            .iter()
            .any(|p| p["reason"].as_str().unwrap().contains("keeping the 1 key"))
        {
            kept = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(kept);
    assert_eq!(status(&side, &orders_t).await.0, StatusCode::OK);
}

#[tokio::test]
async fn revocation_applies_to_an_open_keep_alive_connection() {
    let keys = Keys::new();
    let orders = keys.make("orders");
    let trusted = keys.trust_dir("trusted", &[&orders]);
    let revoked = keys.path().join("revoked");
    std::fs::write(&revoked, "# nothing revoked yet\n").unwrap();
    let (side, _) = billing(&keys, &trusted, Some(&revoked)).await;
    let auth = token(&orders, "orders");
    let mut conn = tokio::net::TcpStream::connect(side.inbound())
        .await
        .unwrap();
    let request = format!("GET /x HTTP/1.1\r\nHost: billing\r\nAuthorization: {auth}\r\n\r\n");
    let mut ask = async || -> String {
        conn.write_all(request.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 16 * 1024];
        let n = conn.read(&mut buf).await.unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    assert!(ask().await.starts_with("HTTP/1.1 200"));
    std::fs::write(&revoked, format!("{}  # leaked\n", orders.kid)).unwrap();
    let start = Instant::now();
    loop {
        let answer = ask().await;
        if answer.starts_with("HTTP/1.1 401") {
            assert!(answer.contains("revoked"), "{answer}");
            break;
        }
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "revocation not applied"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    eprintln!(
        "revocation → enforcement on the same connection: {:?}",
        start.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_reloads_under_load_fail_no_request() {
    let keys = Keys::new();
    let orders = keys.make("orders");
    let extra: Vec<_> = (0..3).map(|i| keys.make(&format!("extra{i}"))).collect();
    let trusted = keys.path().join("secret");
    kubelet_update(&trusted, &[("orders.pub", public(&orders))]);
    let (side, _) = billing(&keys, &trusted, None).await;
    let side = Arc::new(side);
    let auth = token(&orders, "orders");
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, bad) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (side, auth, stop, ok, bad) = (
            side.clone(),
            auth.clone(),
            stop.clone(),
            ok.clone(),
            bad.clone(),
        );
        clients.push(tokio::spawn(async move {
            let c = client();
            while !stop.load(Ordering::Relaxed) {
                let req = http::Request::get(format!("http://{}/x", side.inbound()))
                    .header("authorization", auth.as_str())
                    .body(body(bytes::Bytes::new()))
                    .unwrap();
                let a = send(&c, req).await;
                if a.status == StatusCode::OK {
                    &ok
                } else {
                    &bad
                }
                .fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let state = side.state.clone();
    let mut took: Vec<Duration> = Vec::new();
    for i in 0..20 {
        let generation = state.trust.snapshot().generation;
        let mut files = vec![("orders.pub", public(&orders))];
        let names = ["extra0.pub", "extra1.pub", "extra2.pub"];
        for (j, e) in extra.iter().enumerate() {
            if (i + j) % 2 == 0 {
                files.push((names[j], public(e)));
            }
        }
        let start = Instant::now();
        kubelet_update(&trusted, &files);
        let applied = eventually(Duration::from_secs(3), || {
            state.trust.snapshot().generation > generation
        })
        .await;
        assert!(applied, "reload {i} not applied");
        took.push(start.elapsed());
    }
    took.sort();
    eprintln!(
        "kubelet swap -> new keyring published, median of 20: {:?} (min {:?}, max {:?})",
        took[10], took[0], took[19]
    );
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    assert_eq!(
        bad.load(Ordering::Relaxed),
        0,
        "non-200 answers during reloads"
    );
    assert!(ok.load(Ordering::Relaxed) > 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_key_rotation_under_outbound_traffic() {
    let keys = Keys::new();
    let old = keys.make("orders");
    let new = keys::write_keypair(
        "orders",
        keys::KeyAlg::Es256,
        &keys.path().join("next"),
        keys::OutputFormat::Pem,
    )
    .unwrap();
    // Step 1 of the procedure: billing trusts both keys before the switch.
    let trusted = keys.path().join("billing-trusts");
    std::fs::create_dir_all(&trusted).unwrap();
    std::fs::copy(&old.public, trusted.join("orders.pem")).unwrap();
    std::fs::copy(&new.public, trusted.join("orders.next.pem")).unwrap();
    let (billing_side, _) = billing(&keys, &trusted, None).await;
    let identity = keys.path().join("identity");
    std::fs::create_dir_all(&identity).unwrap();
    std::fs::copy(&old.private, identity.join("orders.key")).unwrap();
    let orders_side = Conf::new("orders", &identity.join("orders.key"))
        .route("billing", format!("http://{}", billing_side.inbound()))
        .start()
        .await;
    let out = orders_side.outbound();
    let stop = Arc::new(AtomicBool::new(false));
    let bad = Arc::new(AtomicUsize::new(0));
    let total = Arc::new(AtomicUsize::new(0));
    let traffic = {
        let (stop, bad, total) = (stop.clone(), bad.clone(), total.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let a = get(format!("http://{out}/x"), &[("host", "billing")]).await;
                total.fetch_add(1, Ordering::Relaxed);
                if a.status != StatusCode::OK {
                    bad.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    let admin = orders_side.admin();
    let jwks = get(format!("http://{admin}/.well-known/jwks.json"), &[])
        .await
        .json();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
    assert_eq!(jwks["keys"][0]["kid"], old.kid.as_str());

    // Step 3: switch the private key (atomically, as a Secret update or `mv` would).
    let staged = identity.join(".orders.key.new");
    std::fs::copy(&new.private, &staged).unwrap();
    std::fs::rename(&staged, identity.join("orders.key")).unwrap();
    let state = orders_side.state.clone();
    assert!(
        eventually(Duration::from_secs(3), || {
            state.trust.signer().is_some_and(|s| s.kid() == new.kid)
        })
        .await,
        "the new key was not picked up"
    );
    let jwks = get(format!("http://{admin}/.well-known/jwks.json"), &[])
        .await
        .json();
    let kids: Vec<_> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        kids,
        vec![new.kid.clone(), old.kid.clone()],
        "new key first, old one in grace"
    );
    // Let traffic run with the new key for a moment (measured in requests, not time).
    let seen = total.load(Ordering::Relaxed);
    assert!(
        eventually(Duration::from_secs(5), || total.load(Ordering::Relaxed)
            > seen + 20)
        .await
    );
    stop.store(true, Ordering::Relaxed);
    traffic.await.unwrap();
    assert_eq!(
        bad.load(Ordering::Relaxed),
        0,
        "every call succeeds through the rotation"
    );
    // The tokens now carry the new kid: billing trusts it under orders.
    let trust = get(format!("http://{admin}/trust"), &[]).await.json();
    assert_eq!(trust["signing_kid"], new.kid.as_str());
}

#[tokio::test]
async fn directory_vanishing_keeps_the_last_keyring_and_recreation_applies() {
    let keys = Keys::new();
    let orders = keys.make("orders");
    let payments = keys.make("payments");
    let trusted: PathBuf = keys.path().join("trusted");
    std::fs::create_dir_all(&trusted).unwrap();
    std::fs::copy(&orders.public, trusted.join("orders.pub")).unwrap();
    let (side, _) = billing(&keys, &trusted, None).await;
    let orders_t = token(&orders, "orders");
    let admin = side.admin();
    std::fs::remove_dir_all(&trusted).unwrap();
    let m_has_error = || async {
        get(format!("http://{admin}/metrics"), &[])
            .await
            .body
            .contains("trustgate_keyring_reloads_total{result=\"error\"}")
    };
    let mut counted = false;
    for _ in 0..300 {
        if m_has_error().await {
            counted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(counted, "the failed reload is counted");
    assert_eq!(
        status(&side, &orders_t).await.0,
        StatusCode::OK,
        "last good keyring in force"
    );
    assert_eq!(
        get(format!("http://{admin}/readyz"), &[]).await.status,
        StatusCode::OK
    );

    std::fs::create_dir_all(&trusted).unwrap();
    std::fs::copy(&payments.public, trusted.join("payments.pub")).unwrap();
    until(&side, &token(&payments, "payments"), OK).await;
    until(&side, &orders_t, UNKNOWN).await;
}

#[tokio::test]
async fn missing_directory_at_start_is_a_clear_error() {
    let keys = Keys::new();
    let billing = keys.make("billing");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.toml");
    std::fs::write(
        &path,
        Conf::new("billing", &billing.private)
            .inbound(&keys.path().join("absent"), "127.0.0.1:8080")
            .toml(),
    )
    .unwrap();
    let cfg = trustgate::config::load(&path, Vec::new()).unwrap();
    let err = trustgate::proxy::Proxy::bind(cfg, prometheus::Registry::new())
        .await
        .err()
        .expect("no start without the trust directory")
        .to_string();
    assert!(err.contains("absent"), "{err}");
}
