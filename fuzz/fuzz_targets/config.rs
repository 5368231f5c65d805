//! Arbitrary text as a configuration file, with and without environment overrides:
//! never a panic; a refusal always names at least one problem.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = trustgate::config::from_toml_str(text, "fuzz.toml", Vec::new()) {
        assert!(!e.problems.is_empty());
    }
    let env = vec![
        ("TRUSTGATE_LIMITS_MAX_CONNECTIONS".to_owned(), "7".to_owned()),
        ("TRUSTGATE_INBOUND_PUBLIC_PATHS".to_owned(), "/a,/b".to_owned()),
    ];
    let _ = trustgate::config::from_toml_str(text, "fuzz.toml", env);
});
