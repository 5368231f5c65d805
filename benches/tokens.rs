//! Criterion benches of the key and token core.
//!
//! - `sign/<alg>` and `verify/<alg>`: one token, signed and fully verified (header,
//!   signature, claims) per algorithm, through trustgate's own code.
//! - `es256_backend/*`: the raw ES256 verification of aws-lc (our backend) against the
//!   pure-Rust `p256` crate, to confirm the choice of backend on this machine.
//! - `keyring_verify/<n>`: full verification against a keyring of n trusted keys.
//! - `verified_cache_hit`: what a caller reusing its token costs instead.
//! - `load_dir/<n>`: reading an authorized_keys directory of n PEM files.
//!
//! Run: `cargo bench --bench tokens` (add `-- --quick` for a fast pass).
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use trustgate::keys::{self, KeyAlg, Keyring, TrustedKey};
use trustgate::token::{self, TokenSigner, VerifiedCache, VerifyPolicy};

const NOW: u64 = 1_900_000_000;

fn trusted(identity: &str, key: &keys::SigningKey) -> TrustedKey {
    TrustedKey {
        speaks: keys::Speaks::Identity(identity.to_owned()),
        key: key.verifying_key().clone(),
        source: format!("{identity}.pub").into(),
    }
}

fn signer(alg: KeyAlg) -> TokenSigner {
    let key = match alg {
        KeyAlg::Hs256 => {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("join.key");
            std::fs::write(&path, "00112233445566778899aabbccddeeff").expect("write");
            keys::load_shared_key(&path).expect("shared key")
        }
        alg => keys::generate(alg).expect("keygen"),
    };
    TokenSigner::new("orders".into(), Arc::new(key), Duration::from_secs(60))
}

fn sign_and_verify(c: &mut Criterion) {
    let policy = VerifyPolicy::new("billing".into());
    for alg in [KeyAlg::Es256, KeyAlg::EdDsa, KeyAlg::Rs256, KeyAlg::Hs256] {
        let s = signer(alg);
        let key = s.key();
        let mut t = trusted("orders", key);
        if alg == KeyAlg::Hs256 {
            t.speaks = keys::Speaks::Anyone;
        }
        let ring = Keyring::new(vec![t], Default::default(), vec![]);
        let tok = s.sign("billing", None, None, NOW).expect("sign");
        token::verify(&tok, &ring, &policy, NOW).expect("a valid token");
        c.bench_function(&format!("sign/{alg}"), |b| {
            b.iter(|| s.sign(black_box("billing"), None, None, NOW).expect("sign"))
        });
        c.bench_function(&format!("verify/{alg}"), |b| {
            b.iter(|| token::verify(black_box(&tok), &ring, &policy, NOW).expect("verify"))
        });
    }
}

fn es256_backends(c: &mut Criterion) {
    use aws_lc_rs::signature::{
        EcdsaKeyPair, KeyPair as _, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED,
        ECDSA_P256_SHA256_FIXED_SIGNING,
    };
    use p256::ecdsa::signature::Verifier as _;
    let msg = b"eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJvcmRlcnMifQ";
    let kp = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("keygen");
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let sig = kp.sign(&rng, msg).expect("sign");
    let public = kp.public_key().as_ref().to_vec();
    let aws = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, public.clone());
    let parsed = aws_lc_rs::signature::ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &public)
        .expect("valid point");
    let rc_key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&public).expect("p256 key");
    let rc_sig = p256::ecdsa::Signature::from_slice(sig.as_ref()).expect("p256 sig");
    rc_key
        .verify(msg, &rc_sig)
        .expect("p256 verifies aws-lc's signature");
    let mut g = c.benchmark_group("es256_backend");
    g.bench_function("aws_lc_rs", |b| {
        b.iter(|| aws.verify(black_box(msg), sig.as_ref()).expect("verify"))
    });
    g.bench_function("aws_lc_rs_preparsed_key", |b| {
        b.iter(|| {
            parsed
                .verify_sig(black_box(msg), sig.as_ref())
                .expect("verify")
        })
    });
    g.bench_function("p256_rustcrypto", |b| {
        b.iter(|| rc_key.verify(black_box(msg), &rc_sig).expect("verify"))
    });
    g.finish();
}

/// n trusted ES256 keys under n identities, and a token signed by the last of them.
fn big_keyring(n: usize) -> (Keyring, String) {
    let mut signing: Vec<_> = (0..n)
        .map(|_| keys::generate(KeyAlg::Es256).expect("keygen"))
        .collect();
    let trusted_keys = signing
        .iter()
        .enumerate()
        .map(|(i, k)| trusted(&format!("svc{i}"), k))
        .collect();
    let ring = Keyring::new(trusted_keys, Default::default(), vec![]);
    let key = signing.pop().expect("n > 0");
    let s = TokenSigner::new(
        format!("svc{}", n - 1),
        Arc::new(key),
        Duration::from_secs(60),
    );
    let tok = s.sign("billing", None, None, NOW).expect("sign");
    (ring, tok)
}

fn keyring_sizes(c: &mut Criterion) {
    let policy = VerifyPolicy::new("billing".into());
    let mut g = c.benchmark_group("keyring_verify");
    for n in [10usize, 1_000, 10_000] {
        let (ring, tok) = big_keyring(n);
        token::verify(&tok, &ring, &policy, NOW).expect("valid");
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| token::verify(black_box(&tok), &ring, &policy, NOW).expect("verify"))
        });
    }
    g.finish();

    let (ring, tok) = big_keyring(10);
    let verified = Arc::new(token::verify(&tok, &ring, &policy, NOW).expect("valid"));
    let cache = VerifiedCache::new(10_000);
    cache.insert(&tok, verified, 1, NOW);
    c.bench_function("verified_cache_hit", |b| {
        b.iter(|| cache.get(black_box(tok.as_bytes()), 1, NOW).expect("hit"))
    });
}

fn load_dirs(c: &mut Criterion) {
    let mut g = c.benchmark_group("load_dir");
    g.sample_size(10);
    for n in [10usize, 1_000, 10_000] {
        let out = tempfile::tempdir().expect("tempdir");
        let dir = tempfile::tempdir().expect("tempdir");
        for i in 0..n {
            let name = format!("svc{i}");
            let files =
                keys::write_keypair(&name, KeyAlg::Es256, out.path(), keys::OutputFormat::Pem)
                    .expect("keygen");
            std::fs::rename(&files.public, dir.path().join(format!("{name}.pem"))).expect("move");
            std::fs::remove_file(&files.private).expect("rm");
        }
        let load = keys::load_dir(dir.path()).expect("load");
        assert_eq!(load.keys.len(), n);
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                let load = keys::load_dir(dir.path()).expect("load");
                Keyring::new(load.keys, Default::default(), load.problems)
            })
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    sign_and_verify,
    es256_backends,
    keyring_sizes,
    load_dirs
);
criterion_main!(benches);
