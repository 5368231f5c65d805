//! Arbitrary bytes as an authorized_keys file (PEM, JWK, JWKS, OpenSSH lines), as an
//! issuer's JWKS (kids as published) and as a private key / shared key: never a panic,
//! and every key accepted has a kid.
#![no_main]
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use trustgate::keys;

fuzz_target!(|data: &[u8]| {
    if let Ok(found) = keys::parse_public_keys(data, Path::new("fuzz.pub")) {
        for k in found {
            assert!(!k.kid.is_empty());
        }
    }
    for kind in [keys::IssuerKind::Kubernetes, keys::IssuerKind::Spiffe, keys::IssuerKind::Oidc] {
        if let Ok((found, _skipped)) = keys::parse_issuer_jwks(data, kind) {
            for k in found {
                assert!(!k.kid.is_empty());
            }
        }
    }
    let dir = std::env::temp_dir().join(format!("tg-fuzz-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("key");
    if std::fs::write(&path, data).is_ok() {
        let _ = keys::load_signing_key(&path);
        let _ = keys::load_shared_key(&path);
    }
});
