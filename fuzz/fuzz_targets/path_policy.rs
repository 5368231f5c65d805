//! The path properties (issues 9 and 39).
//! 1. A path trustgate forwards under a rule must still fall under that rule after anything
//!    a common app server does to it before routing (`;params` removed, percent-decoded once
//!    or twice, backslash as slash, trailing dots and spaces trimmed, dot segments
//!    resolved). Otherwise `/invoices/..;/admin` passes a rule for `/invoices/*` and the app
//!    serves `/admin`.
//! 2. For a path made canonical (as the inbound does, slashes merged or not), every app
//!    server of the differential test routes what the rules read: a prefix that every
//!    reading of the rules matches holds each server's route (an allow rule cannot be
//!    walked out of), and one that no reading matches holds none (a deny rule cannot be
//!    walked past: `//debug`, `/%64ebug`).
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
    let rule = PathPattern::Prefix("/invoices".into());
    if path::check(&candidate).is_ok() {
        assert!(rule.matches(&candidate));
        for routed in path::normalisations(&candidate) {
            let routed = routed.split(';').next().unwrap_or_default();
            assert!(
                rule.matches(routed),
                "{candidate} passes the check and the rule, but an app server routes it to {routed}"
            );
        }
    }
    // 2: the input as a whole path, against a deny-like and an allow-like prefix.
    let whole = format!("/{tail}");
    let rules = [PathPattern::Prefix("/debug".into()), rule];
    for merge in [false, true] {
        let Ok(canon) = path::canonical(&whole, merge) else {
            continue;
        };
        let mut readings = vec![canon.rules.to_string()];
        readings.extend(canon.stripped.clone());
        for rule in &rules {
            let all = readings.iter().all(|r| rule.matches(r));
            let any = readings.iter().any(|r| rule.matches(r));
            for (server, routed) in path::routings(&canon.forward) {
                let hit = rule.matches(&routed);
                assert!(!all || hit, "{whole}: {server} routes {routed} outside {rule:?}");
                assert!(any || !hit, "{whole}: {server} routes {routed} into {rule:?}");
            }
        }
    }
});
