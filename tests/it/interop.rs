//! Interoperability with JOSE implementations we did not write.
//!
//! Keys and tokens in `tests/fixtures/interop/` were made by PyJWT, `cryptography`,
//! jwcrypto and ssh-keygen (see `tests/fixtures/README.md`); they must load and verify here
//! with the kids jwcrypto computed. In the other direction, tokens trustgate signs are
//! verified by PyJWT (`tests/it/support/interop_verify.py`) against the JWK trustgate
//! publishes. That direction needs Python with PyJWT: without it the test says so and
//! skips, unless `TRUSTGATE_REQUIRE_INTEROP=1` (set by CI), which makes it fail.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use trustgate::keys::{self, KeyAlg, Keyring, TrustedKey};
use trustgate::token::{self, TokenSigner, VerifyPolicy};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/interop")
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn kids_of_foreign_public_keys_equal_jwcrypto_thumbprints() {
    let load = keys::load_dir(&fixtures().join("authorized_keys")).unwrap();
    assert!(load.problems.is_empty(), "{:?}", load.problems);
    let expected = read_json(&fixtures().join("kids.json"));
    let expected = expected.as_object().unwrap();
    assert_eq!(expected.len(), 9);
    for (file, entry) in expected {
        let ours: Vec<&str> = load
            .keys
            .iter()
            .filter(|k| k.source.file_name().unwrap() == file.as_str())
            .map(|k| k.key.kid.as_str())
            .collect();
        let theirs: Vec<&str> = entry["kids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(ours, theirs, "{file}");
        for k in load
            .keys
            .iter()
            .filter(|k| k.source.file_name().unwrap() == file.as_str())
        {
            assert_eq!(k.speaks.identity(), entry["identity"].as_str());
        }
    }
}

#[test]
fn foreign_private_keys_load_with_the_expected_kid() {
    let expected = read_json(&fixtures().join("private/expected_kids.json"));
    let expected = expected.as_object().unwrap();
    assert_eq!(expected.len(), 7);
    for (file, kid) in expected {
        let key = keys::load_signing_key(&fixtures().join("private").join(file))
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(key.kid, kid.as_str().unwrap(), "{file}");
    }
}

fn fixture_keyring(shared: bool) -> Keyring {
    if shared {
        let path = fixtures().join("shared/join.key");
        let key = keys::load_shared_key(&path).unwrap();
        let t = TrustedKey {
            speaks: keys::Speaks::Anyone,
            key: key.verifying_key().clone(),
            source: path,
        };
        return Keyring::new(vec![t], Default::default(), vec![]);
    }
    let load = keys::load_dir(&fixtures().join("authorized_keys")).unwrap();
    Keyring::new(load.keys, Default::default(), load.problems)
}

#[test]
fn tokens_made_by_pyjwt_get_the_expected_answer() {
    let cases = read_json(&fixtures().join("tokens.json"));
    let cases = cases.as_array().unwrap();
    assert!(cases.len() >= 25);
    let (ring, shared_ring) = (fixture_keyring(false), fixture_keyring(true));
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let ring = if case["shared"].as_bool() == Some(true) {
            &shared_ring
        } else {
            &ring
        };
        let policy = VerifyPolicy::new(case["aud"].as_str().unwrap().to_owned());
        let result = token::verify(
            case["token"].as_str().unwrap(),
            ring,
            &policy,
            case["now"].as_u64().unwrap(),
        );
        match (case["expect"].as_str().unwrap(), result) {
            ("ok", Ok(v)) => assert_eq!(&*v.caller, case["caller"].as_str().unwrap(), "{name}"),
            ("ok", Err(r)) => panic!("{name}: expected ok, got {r}"),
            (reason, Ok(_)) => panic!("{name}: expected {reason}, got ok"),
            (reason, Err(r)) => assert_eq!(r.reason(), reason, "{name}"),
        }
    }
}

/// PyJWT available? In CI it must be; elsewhere its absence is said loudly.
fn python_with_pyjwt() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import jwt, cryptography"])
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        assert!(
            std::env::var("TRUSTGATE_REQUIRE_INTEROP").as_deref() != Ok("1"),
            "TRUSTGATE_REQUIRE_INTEROP=1 but python3 with PyJWT is not available \
             (pip install pyjwt cryptography jwcrypto)"
        );
        eprintln!(
            "SKIPPED: python3 with PyJWT not found; our tokens were not checked by PyJWT \
             (pip install pyjwt cryptography jwcrypto)"
        );
    }
    ok
}

#[test]
fn tokens_made_here_verify_in_pyjwt() {
    if !python_with_pyjwt() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // Our keys, and the keys other tools made.
    let mut signing = Vec::new();
    for alg in [KeyAlg::Es256, KeyAlg::EdDsa, KeyAlg::Rs256] {
        signing.push(keys::generate(alg).unwrap());
    }
    for file in ["ec_sec1.pem", "ed_private.jwk", "rsa_private.jwk"] {
        signing.push(keys::load_signing_key(&fixtures().join("private").join(file)).unwrap());
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/support/interop_verify.py");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for (i, key) in signing.into_iter().enumerate() {
        let jwks = tmp.path().join(format!("jwks{i}.json"));
        let jwk = serde_json::to_value(key.public_jwk().unwrap()).unwrap();
        std::fs::write(&jwks, serde_json::json!({ "keys": [jwk] }).to_string()).unwrap();
        let alg = key.alg;
        let signer = TokenSigner::new("orders".into(), Arc::new(key), Duration::from_secs(60));
        let mut ctx = BTreeMap::new();
        ctx.insert("x-user-id".to_string(), "42".to_string());
        let token = signer.sign("billing", Some(&ctx), None, now).unwrap();
        let out = Command::new("python3")
            .arg(&script)
            .args([
                "--jwks",
                jwks.to_str().unwrap(),
                "--aud",
                "billing",
                "--iss",
                "orders",
            ])
            .arg(&token)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "PyJWT refused our {alg} token: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line: Value = serde_json::from_str(stdout.trim()).unwrap();
        assert_eq!(line["kid"], signer.kid());
        assert_eq!(line["alg"], alg.as_str());
        assert_eq!(line["claims"]["ctx"]["x-user-id"], "42");

        // And PyJWT refuses it for another audience: the script is not a rubber stamp.
        let out = Command::new("python3")
            .arg(&script)
            .args([
                "--jwks",
                jwks.to_str().unwrap(),
                "--aud",
                "payments",
                "--iss",
                "orders",
            ])
            .arg(&token)
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "PyJWT accepted a token for another audience"
        );
    }
}
