//! Arbitrary bytes as a DPoP proof (RFC 9449) for a bound token: never a panic, and never
//! accepted (a proof that passes would need a signature by the bound key, which random
//! bytes never carry, and an `iat` at the fuzzer's fixed time).
#![no_main]
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use trustgate::token::dpop::{verify_proof, ProofKeys, ProofPolicy};

fn keys() -> &'static ProofKeys {
    static KEYS: OnceLock<ProofKeys> = OnceLock::new();
    KEYS.get_or_init(|| ProofKeys::new(64))
}

fuzz_target!(|data: &[u8]| {
    if let Ok(proof) = std::str::from_utf8(data) {
        let origins = ["https://api.example.com".to_owned()];
        let policy = ProofPolicy {
            origins: &origins,
            max_age: 60,
            leeway: 30,
        };
        let jkt = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I";
        let checked = verify_proof(proof, ("GET", "/x"), "tok", jkt, &policy, keys(), 1_900_000_000);
        assert!(checked.is_err());
    }
});
