//! The path property of issue 9: a path trustgate forwards under a rule must still fall
//! under that rule after anything a common app server does to it before routing
//! (`;params` removed, percent-decoded once or twice, backslash as slash, trailing dots
//! and spaces trimmed, dot segments resolved). Otherwise `/invoices/..;/admin` passes a
//! rule for `/invoices/*` and the app serves `/admin`.
#![no_main]
use libfuzzer_sys::fuzz_target;
use trustgate::config::PathPattern;
use trustgate::http::path;

fuzz_target!(|data: &[u8]| {
    let Ok(tail) = std::str::from_utf8(data) else {
        return;
    };
    // Paths under a prefix rule, as an attacker would aim them.
    let candidate = format!("/invoices/{tail}");
    if candidate.bytes().any(|b| b <= b' ' || b >= 0x7f || b == b'?' || b == b'#') {
        return; // not a request-target path hyper would hand over
    }
    if path::check(&candidate).is_err() {
        return;
    }
    let rule = PathPattern::Prefix("/invoices".into());
    assert!(rule.matches(&candidate));
    for routed in path::normalisations(&candidate) {
        let routed = routed.split(';').next().unwrap_or_default();
        assert!(
            rule.matches(routed),
            "{candidate} passes the check and the rule, but an app server routes it to {routed}"
        );
    }
});
