//! Key files on disk: every format loads with the same kid, and every kind of bad file
//! is refused with a reason that names it, never a panic, never stopping the other files.
use std::path::{Path, PathBuf};

use trustgate::keys::{
    self, load_dir, load_revoked, load_shared_key, load_signing_key, parse_public_keys,
    write_keypair, KeyAlg, Keyring, OutputFormat,
};

const PEM_P256: &str = "-----BEGIN PUBLIC KEY-----";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/bad")
        .join(name)
}

/// A fresh key pair for `name` in `dir`, returning (private path, public path, kid).
fn keypair(
    dir: &Path,
    name: &str,
    alg: KeyAlg,
    format: OutputFormat,
) -> (PathBuf, PathBuf, String) {
    let f = write_keypair(name, alg, dir, format).unwrap();
    (f.private, f.public, f.kid)
}

/// Loads a directory holding exactly one file and returns the problem reported for it.
fn single_problem(content: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("svc.pub");
    std::fs::write(&path, content).unwrap();
    let load = load_dir(dir.path()).unwrap();
    assert!(load.keys.is_empty(), "no key may load from a bad file");
    assert_eq!(load.problems.len(), 1, "{:?}", load.problems);
    assert_eq!(load.problems[0].file, path, "the problem names the file");
    // Through the single-file API the whole error names the file too.
    let err = parse_public_keys(content, &path).unwrap_err().to_string();
    assert!(err.contains("svc.pub"), "{err}");
    load.problems[0].reason.clone()
}

fn assert_reason(reason: &str, expected: &str) {
    assert!(
        reason.contains(expected),
        "reason {reason:?} should mention {expected:?}"
    );
}

#[test]
fn every_public_format_of_one_key_has_the_same_kid() {
    let tmp = tempfile::tempdir().unwrap();
    for alg in [KeyAlg::Es256, KeyAlg::EdDsa, KeyAlg::Rs256] {
        let name = alg.as_str().to_lowercase();
        let (private, pem_pub, kid) = keypair(tmp.path(), &name, alg, OutputFormat::Pem);
        let key = load_signing_key(&private).unwrap();
        assert_eq!(key.kid, kid);
        let jwk = serde_json::to_string(key.public_jwk().unwrap()).unwrap();
        let jwks = format!(r#"{{"keys":[{jwk}]}}"#);
        for (what, bytes) in [
            ("pem", std::fs::read(&pem_pub).unwrap()),
            ("jwk", jwk.clone().into_bytes()),
            ("jwks", jwks.into_bytes()),
        ] {
            let keys = parse_public_keys(&bytes, Path::new("x.pub")).unwrap();
            assert_eq!(keys.len(), 1);
            assert_eq!(keys[0].kid, kid, "{alg} as {what}");
            assert_eq!(keys[0].alg, alg);
        }
    }
}

#[test]
fn directory_loads_identities_from_file_names_and_skips_dotfiles() {
    let tmp = tempfile::tempdir().unwrap();
    let keys_dir = tmp.path().join("authorized_keys");
    let out = tmp.path().join("out");
    std::fs::create_dir(&keys_dir).unwrap();
    let (_, orders_pub, orders_kid) = keypair(&out, "orders", KeyAlg::Es256, OutputFormat::Pem);
    let (_, orders2_pub, orders2_kid) = keypair(&out, "orders2", KeyAlg::EdDsa, OutputFormat::Jwk);
    let (_, billing_pub, billing_kid) = keypair(&out, "billing", KeyAlg::Rs256, OutputFormat::Pem);
    std::fs::copy(&orders_pub, keys_dir.join("orders.pem")).unwrap();
    // orders.2.jwk also trusts a key for `orders`: identity is the name up to the first dot.
    std::fs::copy(&orders2_pub, keys_dir.join("orders.2.jwk")).unwrap();
    // Followed symlink.
    std::os::unix::fs::symlink(&billing_pub, keys_dir.join("billing.pub")).unwrap();
    // Dotfiles and dot-directories are skipped silently (Kubernetes' ..data machinery).
    std::fs::write(keys_dir.join(".hidden.pub"), "junk").unwrap();
    std::fs::create_dir(keys_dir.join("..2026_11_22_10_00_00.1")).unwrap();

    let load = load_dir(&keys_dir).unwrap();
    assert!(load.problems.is_empty(), "{:?}", load.problems);
    let ring = Keyring::new(load.keys, Default::default(), load.problems);
    assert_eq!(ring.len(), 3);
    for (kid, identity) in [
        (&orders_kid, "orders"),
        (&orders2_kid, "orders"),
        (&billing_kid, "billing"),
    ] {
        let key = &ring.get(kid)[0];
        assert_eq!(key.speaks.identity(), Some(identity));
    }
}

#[test]
fn one_bad_file_never_stops_the_others() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let dir = tmp.path().join("keys");
    std::fs::create_dir(&dir).unwrap();
    let (_, good, kid) = keypair(&out, "good", KeyAlg::Es256, OutputFormat::Pem);
    std::fs::copy(good, dir.join("good.pem")).unwrap();
    std::fs::write(dir.join("bad.pem"), "-----BEGIN PUBLIC KEY-----\nMFkw").unwrap();
    std::fs::write(dir.join("empty.pub"), "").unwrap();
    std::fs::create_dir(dir.join("adir")).unwrap();
    std::os::unix::fs::symlink(tmp.path().join("nowhere"), dir.join("gone.pub")).unwrap();
    std::fs::write(dir.join("Bad_Name.pub"), "x").unwrap();

    let load = load_dir(&dir).unwrap();
    assert_eq!(load.keys.len(), 1);
    assert_eq!(load.keys[0].key.kid, kid);
    let reasons: Vec<(String, String)> = load
        .problems
        .iter()
        .map(|p| {
            (
                p.file.file_name().unwrap().to_string_lossy().into_owned(),
                p.reason.clone(),
            )
        })
        .collect();
    let find = |name: &str| {
        reasons
            .iter()
            .find(|(f, _)| f == name)
            .unwrap_or_else(|| panic!("no problem reported for {name}: {reasons:?}"))
            .1
            .clone()
    };
    assert_reason(&find("bad.pem"), "truncated");
    assert_reason(&find("empty.pub"), "empty");
    assert_reason(&find("adir"), "directory");
    assert_reason(&find("gone.pub"), "dangling symlink");
    assert_reason(&find("Bad_Name.pub"), "not a valid identity");
    assert_eq!(reasons.len(), 5);
}

#[test]
fn missing_directory_is_an_error_not_an_empty_keyring() {
    let tmp = tempfile::tempdir().unwrap();
    let err = load_dir(&tmp.path().join("absent"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("absent"), "{err}");
}

#[test]
fn truncated_pem() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, public, _) = keypair(tmp.path(), "t", KeyAlg::Es256, OutputFormat::Pem);
    let text = std::fs::read_to_string(public).unwrap();
    let cut = &text[..text.len() - 30];
    assert_reason(&single_problem(cut.as_bytes()), "truncated");
    // A body cut short but with its END line: the DER inside is incomplete.
    let lines: Vec<&str> = text.lines().collect();
    let short = format!("{}\n{}\n{}\n", lines[0], lines[1], lines[lines.len() - 1]);
    assert_reason(&single_problem(short.as_bytes()), "PEM block 1");
}

#[test]
fn wrong_pem_label() {
    let body = "-----BEGIN CERTIFICATE REQUEST-----\nMAA=\n-----END CERTIFICATE REQUEST-----\n";
    assert_reason(&single_problem(body.as_bytes()), "unexpected PEM label");
    let cert = "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n";
    assert_reason(&single_problem(cert.as_bytes()), "certificate");
}

#[test]
fn private_key_material_is_refused_in_every_format() {
    let tmp = tempfile::tempdir().unwrap();
    let (pem_private, _, _) = keypair(tmp.path(), "p", KeyAlg::Es256, OutputFormat::Pem);
    let (jwk_private, _, _) = keypair(tmp.path(), "j", KeyAlg::EdDsa, OutputFormat::Jwk);
    let pem = std::fs::read(pem_private).unwrap();
    assert_reason(&single_problem(&pem), "private key material");
    let sec1 = std::fs::read(fixture("p384_sec1.key")).unwrap();
    assert_reason(&single_problem(&sec1), "private key material");
    let jwk = std::fs::read_to_string(jwk_private).unwrap();
    assert_reason(&single_problem(jwk.as_bytes()), "private key material");
    let jwks = format!(r#"{{"keys":[{jwk}]}}"#);
    assert_reason(&single_problem(jwks.as_bytes()), "private key material");
    assert_reason(
        &single_problem(br#"{"kty":"oct","k":"c2VjcmV0c2VjcmV0c2VjcmV0"}"#),
        "private key material",
    );
}

#[test]
fn jwk_missing_members() {
    assert_reason(
        &single_problem(br#"{"kty":"EC","crv":"P-256","x":"AAAA"}"#),
        "missing member \"y\"",
    );
    assert_reason(
        &single_problem(br#"{"crv":"P-256"}"#),
        "missing member \"kty\"",
    );
    assert_reason(
        &single_problem(br#"{"kty":"RSA","e":"AQAB"}"#),
        "missing member \"n\"",
    );
    assert_reason(
        &single_problem(br#"{"kty":"OKP","crv":"Ed25519"}"#),
        "missing member \"x\"",
    );
    assert_reason(&single_problem(br#"{"keys":[]}"#), "no keys");
    assert_reason(&single_problem(br#"{"kty":"EC""#), "not valid JSON");
}

/// The same rule for a private JWK (the signing key): its own kid must be its thumbprint.
#[test]
fn private_jwk_with_a_kid_that_is_not_its_thumbprint_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (private, _, kid) = keypair(tmp.path(), "p", KeyAlg::Es256, OutputFormat::Jwk);
    let mut jwk: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&private).unwrap()).unwrap();
    jwk["kid"] = "my-own-name".into();
    std::fs::write(&private, jwk.to_string()).unwrap();
    let err = load_signing_key(&private).unwrap_err().to_string();
    assert!(err.contains("my-own-name") && err.contains(&kid), "{err}");
    jwk["kid"] = kid.clone().into();
    std::fs::write(&private, jwk.to_string()).unwrap();
    assert_eq!(load_signing_key(&private).unwrap().kid, kid);
}

#[test]
fn jwk_with_a_kid_that_is_not_its_thumbprint_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let (private, _, kid) = keypair(tmp.path(), "k", KeyAlg::Es256, OutputFormat::Pem);
    let key = load_signing_key(&private).unwrap();
    let mut jwk = serde_json::to_value(key.public_jwk().unwrap()).unwrap();
    jwk["kid"] = "my-own-name".into();
    let reason = single_problem(jwk.to_string().as_bytes());
    assert_reason(&reason, "my-own-name");
    assert_reason(&reason, &kid);
    // A kid equal to the thumbprint is accepted; so is no kid at all.
    jwk["kid"] = kid.clone().into();
    assert_eq!(
        parse_public_keys(jwk.to_string().as_bytes(), Path::new("k")).unwrap()[0].kid,
        kid
    );
    jwk.as_object_mut().unwrap().remove("kid");
    assert_eq!(
        parse_public_keys(jwk.to_string().as_bytes(), Path::new("k")).unwrap()[0].kid,
        kid
    );
    // alg or use that contradict the key are refused.
    jwk["alg"] = "RS256".into();
    assert_reason(&single_problem(jwk.to_string().as_bytes()), "alg");
    jwk["alg"] = "ES256".into();
    jwk["use"] = "enc".into();
    assert_reason(&single_problem(jwk.to_string().as_bytes()), "use");
}

#[test]
fn unsupported_curves_and_algorithms() {
    for (file, expected) in [
        ("p384.pub", "unsupported curve P-384"),
        ("secp256k1.pub", "unsupported curve secp256k1"),
        ("ed448.pub", "Ed448"),
        ("ssh_p384.pub", "unsupported curve"),
    ] {
        let bytes = std::fs::read(fixture(file)).unwrap();
        assert_reason(&single_problem(&bytes), expected);
    }
    assert_reason(
        &single_problem(br#"{"kty":"EC","crv":"P-384","x":"AAAA","y":"AAAA"}"#),
        "unsupported curve P-384",
    );
    assert_reason(
        &single_problem(br#"{"kty":"OKP","crv":"X25519","x":"AAAA"}"#),
        "unsupported curve X25519",
    );
}

#[test]
fn weak_rsa_is_refused() {
    let bytes = std::fs::read(fixture("rsa1024.pub")).unwrap();
    assert_reason(&single_problem(&bytes), "1024 bits is too weak");
    let err = load_signing_key(&fixture("rsa1024_pkcs8.key"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("rsa1024_pkcs8.key") && err.contains("too weak"),
        "{err}"
    );
}

#[test]
fn point_not_on_the_curve_is_refused() {
    let zero = base64_32(0);
    let jwk = format!(r#"{{"kty":"EC","crv":"P-256","x":"{zero}","y":"{zero}"}}"#);
    assert_reason(&single_problem(jwk.as_bytes()), "not a point on the curve");
}

fn base64_32(byte: u8) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([byte; 32])
}

#[test]
fn openssh_line_with_a_bad_base64_body() {
    assert_reason(
        &single_problem(b"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI!!!notbase64 user@host\n"),
        "line 1: not an OpenSSH public key",
    );
    // A good first line does not save a bad second one: the whole file is refused.
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("k");
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "c", "-f"])
        .arg(&path)
        .status();
    if let Ok(s) = status {
        assert!(s.success());
        let good = std::fs::read_to_string(path.with_extension("pub")).unwrap();
        let both = format!("{good}ssh-rsa AAAAB3Nza==== x\n");
        assert_reason(&single_problem(both.as_bytes()), "line 2");
    }
}

#[test]
fn empty_file_and_binary_junk() {
    assert_reason(&single_problem(b""), "empty");
    assert_reason(&single_problem(b"   \n\n"), "empty");
    let junk: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
    assert_reason(&single_problem(&junk), "binary");
    assert_reason(&single_problem(b"hello\0world"), "binary");
    assert_reason(&single_problem(b"just some text\n"), "line 1");
}

#[test]
fn oversized_file_is_not_read_whole() {
    let big = vec![b'a'; 2 * 1024 * 1024];
    assert_reason(&single_problem(&big), "larger than");
}

/// A kid under two identities is trusted for each (a token's `iss` picks which one it
/// means: one source publishing another's key never takes it from its owner), and
/// reported as shared; not a problem of either file.
#[test]
fn duplicate_kid_under_two_identities_is_kept_for_each_and_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let dir = tmp.path().join("keys");
    std::fs::create_dir(&dir).unwrap();
    let (_, public, kid) = keypair(&out, "x", KeyAlg::Es256, OutputFormat::Pem);
    std::fs::copy(&public, dir.join("orders.pem")).unwrap();
    std::fs::copy(&public, dir.join("billing.pem")).unwrap();
    // The same key twice for the same identity is fine.
    std::fs::copy(&public, dir.join("orders.2.pem")).unwrap();
    let load = load_dir(&dir).unwrap();
    let ring = Keyring::new(load.keys, Default::default(), load.problems);
    let whom: Vec<_> = ring.get(&kid).iter().map(|k| k.speaks.label()).collect();
    assert_eq!(whom, ["billing", "orders"]);
    assert!(ring.problems().is_empty(), "{:?}", ring.problems());
    assert_eq!(ring.shared().len(), 1);
    assert_eq!(ring.shared()[0].kid, kid);
    let pick = |iss: &str| {
        ring.select(&kid, || Some(iss.to_owned())).map(|s| {
            (
                matches!(s, trustgate::keys::Selected::Own(_)),
                s.key().speaks.label().into_owned(),
            )
        })
    };
    assert_eq!(pick("orders"), Some((true, "orders".into())));
    assert_eq!(pick("billing"), Some((true, "billing".into())));
    assert_eq!(
        pick("search").map(|p| p.0),
        Some(false),
        "neither's: refused later as issuer_mismatch"
    );
}

#[test]
fn multi_block_pem_holds_several_keys_for_rotation() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, a, kid_a) = keypair(tmp.path(), "a", KeyAlg::Es256, OutputFormat::Pem);
    let (_, b, kid_b) = keypair(tmp.path(), "b", KeyAlg::EdDsa, OutputFormat::Pem);
    let both = std::fs::read_to_string(a).unwrap() + &std::fs::read_to_string(b).unwrap();
    assert_eq!(both.matches(PEM_P256).count(), 2);
    let keys = parse_public_keys(both.as_bytes(), Path::new("svc.pem")).unwrap();
    let kids: Vec<_> = keys.iter().map(|k| k.kid.clone()).collect();
    assert_eq!(kids, vec![kid_a, kid_b]);
}

#[test]
fn signing_key_formats_and_refusals() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, public, _) = keypair(tmp.path(), "s", KeyAlg::Es256, OutputFormat::Pem);
    let err = load_signing_key(&public).unwrap_err().to_string();
    assert!(err.contains("s.pub") && err.contains("public key"), "{err}");
    let err = load_signing_key(&fixture("p384_pkcs8.key"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("unsupported curve P-384"), "{err}");
    let err = load_signing_key(&fixture("p384_sec1.key"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("unsupported curve P-384"), "{err}");
    let junk = tmp.path().join("junk.key");
    std::fs::write(&junk, [0xffu8, 0x00, 0x13]).unwrap();
    let err = load_signing_key(&junk).unwrap_err().to_string();
    assert!(err.contains("junk.key") && err.contains("binary"), "{err}");
    let missing = load_signing_key(&tmp.path().join("nope.key"))
        .unwrap_err()
        .to_string();
    assert!(missing.contains("nope.key"), "{missing}");
    let encrypted = tmp.path().join("enc.key");
    std::fs::write(
        &encrypted,
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMAA=\n-----END ENCRYPTED PRIVATE KEY-----\n",
    )
    .unwrap();
    let err = load_signing_key(&encrypted).unwrap_err().to_string();
    assert!(err.contains("encrypted"), "{err}");
}

#[test]
fn sec1_private_key_loads() {
    let tmp = tempfile::tempdir().unwrap();
    let (private, _, kid) = keypair(tmp.path(), "s", KeyAlg::Es256, OutputFormat::Pem);
    let sec1 = tmp.path().join("s.sec1");
    let status = std::process::Command::new("openssl")
        .args(["ec", "-in"])
        .arg(&private)
        .arg("-out")
        .arg(&sec1)
        .stderr(std::process::Stdio::null())
        .status();
    match status {
        Ok(s) if s.success() => {
            let text = std::fs::read_to_string(&sec1).unwrap();
            assert!(text.contains("EC PRIVATE KEY"));
            assert_eq!(load_signing_key(&sec1).unwrap().kid, kid);
        }
        _ => eprintln!("openssl not available: SEC1 covered by tests/interop.rs fixtures"),
    }
}

#[test]
fn shared_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let hex = tmp.path().join("join.key");
    std::fs::write(&hex, "00112233445566778899aabbccddeeff\n").unwrap();
    let key = load_shared_key(&hex).unwrap();
    assert_eq!(key.alg, KeyAlg::Hs256);
    assert!(key.public_jwk().is_none(), "a secret is never published");
    let raw = tmp.path().join("raw.key");
    std::fs::write(&raw, b"sixteen raw byt!").unwrap();
    assert_eq!(load_shared_key(&raw).unwrap().alg, KeyAlg::Hs256);
    let short = tmp.path().join("short.key");
    std::fs::write(&short, "00112233445566778899aabbccddee").unwrap();
    let err = load_shared_key(&short).unwrap_err().to_string();
    assert!(
        err.contains("short.key") && err.contains("120 bits"),
        "{err}"
    );
    // Same secret, same kid on both sides.
    std::fs::write(
        tmp.path().join("copy.key"),
        "00112233445566778899AABBCCDDEEFF",
    )
    .unwrap();
    assert_eq!(
        load_shared_key(&tmp.path().join("copy.key")).unwrap().kid,
        key.kid
    );
}

#[test]
fn revocation_list() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("revoked");
    std::fs::write(
        &path,
        "# rotated out 2026-11-01\nabc_DEF-123  # old orders key\n\n  xyz\n",
    )
    .unwrap();
    let kids = load_revoked(&path).unwrap();
    assert_eq!(kids.len(), 2);
    assert!(kids.contains("abc_DEF-123") && kids.contains("xyz"));
    std::fs::write(&path, "abc def\n").unwrap();
    let err = load_revoked(&path).unwrap_err().to_string();
    assert!(err.contains("revoked") && err.contains("line 1"), "{err}");
}

#[test]
fn identity_check_is_shared_with_the_loader() {
    assert!(keys::is_valid_identity("orders"));
    assert!(!keys::is_valid_identity("Orders"));
}

/// `<identity>.url` entries: one https:// URL becomes a source for that identity; every
/// malformed one is a problem naming its file, and the other entries still load.
#[test]
fn url_entries_become_sources_or_named_problems() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &[u8]| std::fs::write(dir.path().join(name), text).unwrap();
    write(
        "orders.url",
        b"# orders publishes here\nhttps://orders.example:8443/.well-known/jwks.json\n",
    );
    write(
        "search.url",
        b"https://a.example/jwks.json\nhttps://b.example/jwks.json\n",
    );
    write("billing.url", b"ftp://billing.example/jwks.json\n");
    write("shipping.url", b"\n# nothing\n");
    write("audit.url", b"not a url at all\n");
    write("Bad.url", b"https://bad.example/jwks.json\n");
    let load = trustgate::keys::load_dir(dir.path()).unwrap();
    assert_eq!(load.sources.len(), 1, "{:?}", load.sources);
    assert_eq!(load.sources[0].identity, "orders");
    assert_eq!(
        load.sources[0].url,
        "https://orders.example:8443/.well-known/jwks.json"
    );
    let reason = |file: &str| {
        load.problems
            .iter()
            .find(|p| p.file.ends_with(file))
            .map(|p| p.reason.clone())
            .unwrap_or_else(|| panic!("no problem for {file}: {:?}", load.problems))
    };
    assert!(reason("search.url").contains("more than one URL"));
    assert!(reason("billing.url").contains("https://"));
    assert!(reason("shipping.url").contains("no URL"));
    assert!(reason("audit.url").contains("not"));
    assert!(reason("Bad.url").contains("not a valid identity"));
    assert_eq!(load.problems.len(), 5, "{:?}", load.problems);
}
