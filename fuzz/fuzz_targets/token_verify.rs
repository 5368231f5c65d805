//! Arbitrary bytes as a token against a keyring of every algorithm: never a panic, and
//! nothing verifies that was not signed by a trusted key (a forged token that passes
//! would have to carry a valid signature, which random bytes never do).
#![no_main]
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use trustgate::keys::{self, KeyAlg, Keyring, TrustedKey};
use trustgate::token::{verify, VerifyPolicy};

fn ring() -> &'static Keyring {
    static RING: OnceLock<Keyring> = OnceLock::new();
    RING.get_or_init(|| {
        let mut trusted = Vec::new();
        for (name, alg) in [("orders", KeyAlg::Es256), ("search", KeyAlg::EdDsa), ("pay", KeyAlg::Rs256)] {
            let k = Arc::new(keys::generate(alg).expect("keygen"));
            trusted.push(TrustedKey {
                speaks: keys::Speaks::Identity(name.into()),
                key: k.verifying_key().clone(),
                source: "fuzz".into(),
            });
        }
        Keyring::new(trusted, Default::default(), vec![])
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(token) = std::str::from_utf8(data) {
        let policy = VerifyPolicy::new("billing".into());
        assert!(verify(token, ring(), &policy, 1_900_000_000).is_err());
    }
});
