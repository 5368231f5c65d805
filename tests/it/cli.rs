//! The real binary, as a user runs it: outputs, files and exit codes of every command.
use crate::support;

use std::path::Path;
use std::process::{Command, Output, Stdio};

fn trustgate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_trustgate"))
        .args(args)
        .env_remove("TRUSTGATE_CONFIG")
        .stdin(Stdio::null())
        .output()
        .expect("the trustgate binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exited, not killed")
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

/// keygen for `name` into `dir`, returning the printed kid.
fn keygen(dir: &Path, name: &str, extra: &[&str]) -> String {
    let mut args = vec!["keygen", name, "--out", p(dir)];
    args.extend_from_slice(extra);
    let o = trustgate(&args);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    stdout(&o).trim().to_owned()
}

#[test]
fn keygen_token_verify_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = tmp.path().join("keys");
    let trusted = tmp.path().join("authorized_keys");
    std::fs::create_dir(&trusted).unwrap();
    for (name, alg) in [
        ("orders", "ES256"),
        ("payments", "EdDSA"),
        ("search", "RS256"),
    ] {
        let kid = keygen(&keys, name, &["--alg", alg]);
        assert_eq!(kid.len(), 43, "kid is a base64url SHA-256: {kid}");
        let private = keys.join(format!("{name}.key"));
        let text = std::fs::read_to_string(&private).unwrap();
        assert!(text.starts_with("-----BEGIN PRIVATE KEY-----"));
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&private).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::copy(
            keys.join(format!("{name}.pub")),
            trusted.join(format!("{name}.pub")),
        )
        .unwrap();

        let o = trustgate(&[
            "token",
            "--key",
            p(&private),
            "--iss",
            name,
            "--aud",
            "billing",
        ]);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        let token = stdout(&o).trim().to_owned();
        assert_eq!(token.split('.').count(), 3);
        assert!(!stderr(&o).contains(&token), "a token is never logged");

        let o = trustgate(&[
            "verify",
            "--authorized-keys",
            p(&trusted),
            "--aud",
            "billing",
            &token,
        ]);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        let out = stdout(&o);
        assert!(out.contains(&format!("caller: {name}")), "{out}");
        assert!(out.contains(&format!("kid: {kid}")), "{out}");
        assert!(out.contains(&format!("alg: {alg}")), "{out}");

        let o = trustgate(&[
            "verify",
            "--authorized-keys",
            p(&trusted),
            "--aud",
            "other",
            &token,
        ]);
        assert_eq!(code(&o), 1);
        assert!(
            stderr(&o).contains("rejected: wrong_audience"),
            "{}",
            stderr(&o)
        );
    }
}

#[test]
fn keygen_refuses_to_overwrite_and_writes_jwk() {
    let tmp = tempfile::tempdir().unwrap();
    let kid = keygen(tmp.path(), "orders", &["--format", "jwk"]);
    let public: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("orders.pub")).unwrap()).unwrap();
    assert_eq!(public["kid"], kid.as_str());
    assert_eq!(public["alg"], "ES256");
    assert_eq!(public["use"], "sig");
    assert!(public.get("d").is_none());
    let private: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("orders.key")).unwrap()).unwrap();
    assert!(private.get("d").is_some());

    let o = trustgate(&["keygen", "orders", "--out", p(tmp.path())]);
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).contains("refusing to overwrite"),
        "{}",
        stderr(&o)
    );
    assert!(stdout(&o).is_empty());
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        vec!["keygen"],
        vec!["keygen", "x", "--alg", "HS256"],
        vec!["token", "--key", "k"],
        vec!["verify", "--aud", "x"],
        vec!["no-such-command"],
        vec![
            "token", "--key", "k", "--iss", "a", "--aud", "b", "--ttl", "soon",
        ],
    ] {
        let o = trustgate(&args);
        assert_eq!(code(&o), 2, "{args:?}: {}", stderr(&o));
    }
}

#[test]
fn invalid_identity_and_bad_key_exit_1_with_the_file_named() {
    let tmp = tempfile::tempdir().unwrap();
    let o = trustgate(&["keygen", "Not_A_Label", "--out", p(tmp.path())]);
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).contains("not a valid identity"),
        "{}",
        stderr(&o)
    );

    let bad = tmp.path().join("bad.key");
    std::fs::write(&bad, "not a key").unwrap();
    let o = trustgate(&["token", "--key", p(&bad), "--iss", "a", "--aud", "b"]);
    assert_eq!(code(&o), 1);
    let err = stderr(&o);
    assert!(err.contains("bad.key") && err.lines().count() == 1, "{err}");
}

#[test]
fn verify_reads_stdin_and_reports_rejections() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = tmp.path().join("keys");
    let trusted = tmp.path().join("trusted");
    std::fs::create_dir(&trusted).unwrap();
    keygen(&keys, "orders", &[]);
    keygen(&keys, "mallory", &[]);
    std::fs::copy(keys.join("orders.pub"), trusted.join("orders.pub")).unwrap();

    // A token from a key nobody trusts.
    let o = trustgate(&[
        "token",
        "--key",
        p(&keys.join("mallory.key")),
        "--iss",
        "orders",
        "--aud",
        "billing",
    ]);
    let forged = stdout(&o).trim().to_owned();
    let o = support::trustgate_with_stdin(
        &[
            "verify",
            "--authorized-keys",
            p(&trusted),
            "--aud",
            "billing",
            "-",
        ],
        &format!("Bearer {forged}\n"),
    );
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).contains("rejected: unknown_key"),
        "{}",
        stderr(&o)
    );
    assert!(!stderr(&o).contains(&forged));

    // Expired, via the hidden clock override.
    let o = trustgate(&[
        "token",
        "--key",
        p(&keys.join("orders.key")),
        "--iss",
        "orders",
        "--aud",
        "billing",
    ]);
    let token = stdout(&o).trim().to_owned();
    let later = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600)
        .to_string();
    let o = trustgate(&[
        "verify",
        "--authorized-keys",
        p(&trusted),
        "--aud",
        "billing",
        "--now",
        &later,
        &token,
    ]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("rejected: expired"), "{}", stderr(&o));

    // Revoked.
    let kid = trustgate(&["keys", p(&trusted), "--json"]);
    let listing: serde_json::Value = serde_json::from_slice(&kid.stdout).unwrap();
    let kid = listing["keys"][0]["kid"].as_str().unwrap().to_owned();
    let revoked = tmp.path().join("revoked");
    std::fs::write(&revoked, format!("{kid}  # leaked\n")).unwrap();
    let o = trustgate(&[
        "verify",
        "--authorized-keys",
        p(&trusted),
        "--revoked",
        p(&revoked),
        "--aud",
        "billing",
        &token,
    ]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("rejected: revoked"), "{}", stderr(&o));
}

#[test]
fn keys_lists_identities_and_problems() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = tmp.path().join("keys");
    let dir = tmp.path().join("dir");
    std::fs::create_dir(&dir).unwrap();
    let kid = keygen(&keys, "orders", &["--alg", "EdDSA"]);
    std::fs::copy(keys.join("orders.pub"), dir.join("orders.pub")).unwrap();
    let o = trustgate(&["keys", p(&dir)]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("orders") && out.contains(&kid) && out.contains("EdDSA"),
        "{out}"
    );

    std::fs::copy(keys.join("orders.key"), dir.join("leak.key")).unwrap();
    let o = trustgate(&["keys", p(&dir)]);
    assert_eq!(code(&o), 1);
    assert!(stdout(&o).contains(&kid), "good keys still listed");
    let err = stderr(&o);
    assert!(
        err.contains("leak.key") && err.contains("private key material"),
        "{err}"
    );

    let o = trustgate(&["keys", p(&tmp.path().join("missing"))]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("missing"), "{}", stderr(&o));
}

#[test]
fn shared_key_tokens() {
    let tmp = tempfile::tempdir().unwrap();
    let join = tmp.path().join("join.key");
    std::fs::write(&join, "8f2a1c5e9b7d3f604a1e2c3b4d5f6a7b\n").unwrap();
    let o = trustgate(&[
        "token",
        "--shared",
        "--key",
        p(&join),
        "--iss",
        "orders",
        "--aud",
        "billing",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let token = stdout(&o).trim().to_owned();
    let o = trustgate(&[
        "verify",
        "--shared-key",
        p(&join),
        "--aud",
        "billing",
        &token,
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).contains("caller: orders"));
    assert!(stdout(&o).contains("alg: HS256"));
}

#[test]
fn check_validates_a_config_and_its_files() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = tmp.path().join("keys");
    let trusted = tmp.path().join("authorized_keys");
    std::fs::create_dir(&trusted).unwrap();
    keygen(&keys, "orders", &[]);
    let config = tmp.path().join("trustgate.toml");
    let good = format!(
        "[identity]\nname = \"orders\"\nprivate_key = \"{}\"\n\n[trust]\nauthorized_keys = \"{}\"\n\n[inbound]\n",
        p(&keys.join("orders.key")),
        p(&trusted)
    );
    std::fs::write(&config, &good).unwrap();
    let o = trustgate(&["check", "--config", p(&config)]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));

    std::fs::write(&config, format!("{good}listen = \"nowhere\"\nbogus = 1\n")).unwrap();
    let o = trustgate(&["check", "--config", p(&config)]);
    assert_eq!(code(&o), 1);
    let err = stderr(&o);
    assert!(
        err.contains("inbound.listen") && err.contains("inbound.bogus"),
        "{err}"
    );

    std::fs::remove_dir(&trusted).unwrap();
    std::fs::write(&config, &good).unwrap();
    let o = trustgate(&["check", "--config", p(&config)]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("authorized_keys"), "{}", stderr(&o));

    let o = trustgate(&["check", "--config", p(&tmp.path().join("absent.toml"))]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("absent.toml"), "{}", stderr(&o));
}

#[test]
fn check_names_the_platform_files_it_cannot_read() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = tmp.path().join("keys");
    keygen(&keys, "billing", &[]);
    let config = tmp.path().join("trustgate.toml");
    std::fs::write(tmp.path().join("token"), "aaa.bbb.ccc\n").unwrap();
    // Relative paths are the configuration directory's.
    let text = format!(
        "[identity]\nname = \"billing\"\nprivate_key = \"{}\"\n[inbound]\n\
         [[trust.issuers]]\nname = \"cluster\"\nkind = \"kubernetes\"\n\
         issuer = \"https://kubernetes.default.svc.cluster.local\"\nca_file = \"CA\"\n\
         bearer_token_file = \"token\"\ncallers = {{ \"shop/orders\" = \"orders\" }}\n\
         [outbound]\n[[outbound.routes]]\nhost = \"ledger\"\nupstream = \"http://l:8443\"\n\
         token_file = \"TOKEN_FILE\"\n",
        p(&keys.join("billing.key")),
    );
    std::fs::write(
        &config,
        text.replace("CA", "absent-ca.crt")
            .replace("TOKEN_FILE", "gone"),
    )
    .unwrap();
    let o = trustgate(&["check", "--config", p(&config)]);
    assert_eq!(code(&o), 1);
    let err = stderr(&o);
    assert!(
        err.contains("trust.issuers[0].ca_file") && err.contains("absent-ca.crt"),
        "{err}"
    );
    assert!(
        err.contains("outbound.routes[0].token_file") && err.contains("gone"),
        "{err}"
    );
    std::fs::copy(
        crate::support::tls_fixture("ca.crt"),
        tmp.path().join("ca.crt"),
    )
    .unwrap();
    std::fs::write(
        &config,
        text.replace("CA", "ca.crt").replace("TOKEN_FILE", "token"),
    )
    .unwrap();
    let o = trustgate(&["check", "--config", p(&config)]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
}

#[test]
fn run_refuses_a_missing_or_bad_config_before_binding() {
    let o = trustgate(&["run", "--config", "/nonexistent/trustgate.toml"]);
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).contains("/nonexistent/trustgate.toml"),
        "{}",
        stderr(&o)
    );
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("t.toml");
    std::fs::write(&config, "[identity]\nname = \"a\"\n[inbound]\nlisten = \"127.0.0.1:0\"\n[trust]\nauthorized_keys = \"missing-dir\"\n").unwrap();
    let o = trustgate(&["run", "--config", p(&config)]);
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).contains("trust.authorized_keys") && stderr(&o).contains("missing-dir"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn demo_runs_every_scenario_and_exits_0() {
    let o = trustgate(&["demo"]);
    let out = stdout(&o);
    assert_eq!(code(&o), 0, "{out}\n{}", stderr(&o));
    // Each scenario, ticked, with the answer it is meant to get, in this order.
    let answers: Vec<&str> = out
        .lines()
        .filter_map(|l| l.trim().strip_prefix("answer: "))
        .collect();
    let ticked = out.lines().filter(|l| l.starts_with("✔ ")).count();
    assert_eq!((ticked, answers.len()), (9, 7), "{out}");
    let expected = [
        "200 {",
        "401 {\"error\":\"invalid_token\",\"reason\":\"bad_signature\"}",
        "401 {\"error\":\"invalid_token\",\"reason\":\"unknown_key\"}",
        "403 {\"error\":\"forbidden\",\"reason\":\"policy\"}",
        "200 {",
        "401 {\"error\":\"invalid_token\",\"reason\":\"user_dpop_bearer_scheme\"}",
        "401 {\"error\":\"invalid_token\",\"reason\":\"txn_bad_signature\"}",
    ];
    for (answer, want) in answers.iter().zip(expected) {
        assert!(answer.starts_with(want), "{answer} is not {want}…\n{out}");
    }
    for ok in [answers[0], answers[4]] {
        let app: serde_json::Value = serde_json::from_str(&ok[4..]).unwrap();
        assert_eq!(app["x-service-caller"], "orders", "{out}");
        assert_eq!(app["token_reached_app"], false, "{out}");
        assert_eq!(app["x-caller-namespace"], serde_json::Value::Null, "{out}");
    }
    assert!(
        out.contains("demo complete: every answer was the expected one"),
        "{out}"
    );
    assert!(
        out.contains("✔ whose claims") && out.contains("\"x-caller-namespace\":null"),
        "a peer's own kubernetes.io claim never reaches the app: {out}"
    );
    assert!(out.contains("demo complete"), "{out}");
}
