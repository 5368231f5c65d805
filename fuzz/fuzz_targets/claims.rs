//! Claim lookup and claim header emission (issue 30): for any pointer and any claims, a
//! lookup never panics and agrees with serde_json's where both are defined; and a header
//! trustgate sends is read by an app (split on commas, each element trimmed, as list
//! parsers do) as exactly the values a rule compared: every element an app reads matches
//! the claim under the rules' own comparison, with nothing trimmed away.
#![no_main]
use libfuzzer_sys::fuzz_target;
use trustgate::config::ClaimPointer;
use trustgate::policy::{claim_header_value, claim_matches};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (pointer, json) = text.split_once('\n').unwrap_or(("/a", text));
    let Ok(claims) = serde_json::from_str::<serde_json::Value>(json) else {
        return;
    };
    if let Ok(p) = ClaimPointer::parse(pointer) {
        let found = p.lookup(&claims);
        // serde_json's pointer is RFC 6901 too (it also accepts leading-zero indices,
        // which RFC 6901 does not: only where ours finds something must they agree).
        if let Some(v) = found {
            assert_eq!(Some(v), claims.pointer(pointer), "{pointer}");
        }
    }
    let Some(header) = claim_header_value(&claims) else {
        return;
    };
    let header = header.to_str().expect("visible ASCII");
    assert!(!header.is_empty());
    if let serde_json::Value::String(s) = &claims {
        assert_eq!(header, s, "a string is sent as itself");
    }
    for element in header.split(',') {
        assert_eq!(element, element.trim(), "{header:?}: an app would trim {element:?}");
        assert!(!element.is_empty(), "{header:?}: an empty element");
        assert!(
            claim_matches(&claims, &[element.to_owned()]),
            "{header:?}: the app reads {element:?}, which the rules do not match in {claims}"
        );
    }
});
