//! Canonical request paths: policy and public paths must see the path as the app will
//! route it, so any path an app server could resolve to a *different* path is refused
//! with 400 before anything else looks at it, and what every app server resolves alike is
//! resolved here too, for the rules and in the path the app receives ([`canonical`]).
//!
//! What app servers do to a path before routing, and therefore what is refused here:
//! - bytes outside RFC 3986 in the target: raw non-ASCII (Node reads it as latin-1,
//!   uvicorn as UTF-8, nginx passes the bytes) and controls;
//! - dot segments (`.`, `..`), also once `;parameters` are removed from a segment
//!   (Tomcat, Jetty, Spring: `/a/..;x=1/b` → `/b`), and segments made only of dots and
//!   spaces (Windows/IIS trims trailing dots and spaces: `/a/.. /b`, `/a/.../b`);
//! - the same after percent-decoding, once or repeatedly (`%2e%2e`, `%252e%252e`,
//!   `..%3bx`), since some stacks decode twice; and an encoded escape (`%25` before two
//!   hex digits: `%2564` is `%64` to one decoder and `d` to a stack that decodes twice);
//! - encoded separators `%2f` and `%5c`, and a raw `\` (Windows servers and some
//!   frameworks treat it as `/`);
//! - control bytes, raw or encoded (`%00` truncates paths in C-based servers, `%09` …);
//! - decoded bytes that are not valid UTF-8: this covers overlong forms such as `%c0%ae`
//!   (a `.` to lenient decoders) and `%c0%af` (a `/`);
//! - Unicode characters that NFKC folds into `.`, `/` or `\` (fullwidth `．`, `／`, `＼`,
//!   one-dot leader `․` …), which some frameworks normalise;
//! - percent-encoding that is malformed (`%zz`, `%4`) or nested deeper than
//!   [`MAX_DECODE_DEPTH`];
//! - an empty segment (`//`): Python's http.server and Tomcat merge it (`//debug/vars` is
//!   `/debug/vars`), Node and uvicorn keep it, Java's `HttpServer` reads `//debug` as an
//!   authority and routes `/vars`. Refused, or merged here when `inbound.merge_slashes`
//!   says so (then the app receives the merged path).
//!
//! Resolved here, because app servers resolve them alike (RFC 3986 §6.2.2):
//! - percent-encoded unreserved characters (letters, digits, `-`, `.`, `_`, `~`) are
//!   decoded, in the path the rules match *and* the one the app receives (`/%64ebug` is
//!   `/debug` to uvicorn, Werkzeug, Java, Go and Spring; Node and nginx route it as
//!   written: decoded, every one of them routes `/debug`);
//! - the hex digits of the other escapes are upper-cased (`%c3%a9` is `%C3%A9`).
//!
//! The rules see the path further decoded, every escape but those of `/`, `\`, `%`, `;`,
//! `?` and `#` (a decoding app routes `/users/%40me` as `/users/@me`); patterns in the
//! configuration are read the same way ([`rule_form`]). A path with `;parameters` is read
//! two ways, and the rules must hold for both: as written (Node, uvicorn, nginx, Java's
//! `HttpServer` route `/debug;x/vars` as a segment named `debug;x`) and with them removed
//! (Tomcat, Jetty and Spring route it as `/debug/vars`) — public only if both are, allowed
//! only if both are, denied if either is.
//!
//! Left alone, because no app server turns them into a path the rules would treat
//! differently: case and `+`.
//!
//! The property the fuzz target `path_policy` checks: a path this module accepts and the
//! allow rules accept is still accepted by the same rules after any of the
//! normalisations above ([`normalisations`]).
use std::borrow::Cow;

use http::uri::PathAndQuery;
use http::Request;

/// The paths the rules match, where they are not the request's own: decoded, and for a
/// path with `;parameters` also with them removed.
#[derive(Clone, Debug)]
pub struct RulePath {
    read: Box<str>,
    stripped: Option<Box<str>>,
}

/// The target (path and query) as the caller sent it, where the canonical one differs.
#[derive(Clone, Debug)]
pub struct ArrivedTarget(Box<str>);

/// The path rules and public paths match: the canonical path with escapes decoded
/// ([`rule_form`]). Before the inbound's request-line step: the request's path.
pub fn rule_path<B>(req: &Request<B>) -> &str {
    req.extensions()
        .get::<RulePath>()
        .map_or_else(|| req.uri().path(), |p| &p.read)
}

/// The second path the rules must hold for: [`rule_path`] with `;parameters` removed from
/// every segment, as servlet containers route it (`None`: the path has none).
pub fn stripped_rule_path<B>(req: &Request<B>) -> Option<&str> {
    req.extensions().get::<RulePath>()?.stripped.as_deref()
}

/// The path and query as the caller sent them (request binding compares the caller's
/// `htu` with these, not with the canonical form).
pub fn arrived_target<B>(req: &Request<B>) -> &str {
    match req.extensions().get::<ArrivedTarget>() {
        Some(t) => &t.0,
        None => req.uri().path_and_query().map_or("/", PathAndQuery::as_str),
    }
}

/// The path as the caller sent it.
pub fn arrived_path<B>(req: &Request<B>) -> &str {
    let target = arrived_target(req);
    target.split('?').next().unwrap_or(target)
}

impl RulePath {
    pub fn new(read: &str, stripped: Option<&str>) -> Self {
        RulePath {
            read: read.into(),
            stripped: stripped.map(Into::into),
        }
    }
}

impl ArrivedTarget {
    pub fn new(target: String) -> Self {
        ArrivedTarget(target.into_boxed_str())
    }
}

/// How many rounds of percent-decoding are inspected; a path still changing after that
/// is refused.
pub const MAX_DECODE_DEPTH: usize = 3;

/// `Ok` for a path that every common app server routes as written; otherwise a short
/// description of the problem (for the log; the client's reason is `non_canonical_path`).
pub fn check(path: &str) -> Result<(), &'static str> {
    if path == "*" {
        return Ok(()); // OPTIONS *
    }
    if !path.starts_with('/') {
        return Err("not an absolute path");
    }
    // Borrowed until there is something to decode: most paths are checked without a copy.
    let mut current = std::borrow::Cow::Borrowed(path.as_bytes());
    for depth in 0..=MAX_DECODE_DEPTH {
        check_bytes(&current)?;
        if !current.contains(&b'%') {
            return check_unicode(&current);
        }
        if depth == MAX_DECODE_DEPTH {
            break;
        }
        current = std::borrow::Cow::Owned(percent_decode(&current)?);
    }
    Err("percent-encoding nested too deeply")
}

/// A path as the rules match it and as the app receives it ([`canonical`]).
#[derive(Debug, PartialEq, Eq)]
pub struct Canonical<'a> {
    /// What the app receives: slashes merged (`inbound.merge_slashes`), escapes of
    /// unreserved characters decoded, the other escapes' hex digits upper-cased.
    pub forward: Cow<'a, str>,
    /// What the rules and public paths match: `forward` with every escape decoded but
    /// those of `/`, `\`, `%`, `;`, `?` and `#` ([`rule_form`]).
    pub rules: Cow<'a, str>,
    /// `rules` with `;parameters` removed from every segment, when it has any: the rules
    /// must hold for this reading too.
    pub stripped: Option<String>,
}

/// The canonical forms of a request's path (without its query), or why it is refused
/// (for the log; the client's reason is `non_canonical_path`). A path that needs nothing
/// is borrowed, not copied.
pub fn canonical(path: &str, merge_slashes: bool) -> Result<Canonical<'_>, &'static str> {
    if path == "*" {
        let star = Cow::Borrowed(path);
        return Ok(Canonical {
            forward: star.clone(),
            rules: star,
            stripped: None,
        });
    }
    // One pass over the bytes; most paths (letters, digits, '/', '-', '_' …) are done
    // after it: nothing to decode, no dot, no parameter, no empty segment.
    let (mut plain, mut previous) = (path.starts_with('/'), 0u8);
    for b in path.bytes() {
        if !b.is_ascii() || b <= b' ' || b == 0x7f {
            return Err("a byte outside RFC 3986 (raw non-ASCII, space or control)");
        }
        let empty_segment = b == b'/' && previous == b'/';
        plain &= !(empty_segment || matches!(b, b'%' | b'.' | b';' | b'\\'));
        previous = b;
    }
    if plain {
        let path = Cow::Borrowed(path);
        return Ok(Canonical {
            forward: path.clone(),
            rules: path,
            stripped: None,
        });
    }
    check(path)?;
    let mut forward = Cow::Borrowed(path);
    if path.contains("//") {
        if !merge_slashes {
            return Err("empty segment (//): app servers merge it, keep it or read an authority");
        }
        forward = Cow::Owned(merge_slashes_in(path));
    }
    if forward.contains('%') {
        forward = Cow::Owned(decode_escapes(&forward, is_unreserved));
    }
    let rules = match rule_form(&forward) {
        Some(rules) => Cow::Owned(rules),
        None => forward.clone(),
    };
    let stripped = rules.contains(';').then(|| {
        let segments: Vec<&str> = rules
            .split('/')
            .map(|segment| segment.split(';').next().unwrap_or_default())
            .collect();
        segments.join("/")
    });
    Ok(Canonical {
        forward,
        rules,
        stripped,
    })
}

/// The path the rules match, when it differs from `path` (a canonical path, or a
/// configured pattern): escapes decoded but for those that would change the segments or
/// the target (`/`, `\`, `%`, `;`, `?`, `#`).
pub fn rule_form(path: &str) -> Option<String> {
    if !path.contains('%') {
        return None;
    }
    Some(decode_escapes(path, |b| {
        !b"/\\%;?#".contains(&b) && b > b' ' && b != 0x7f
    }))
}

/// RFC 3986 §2.3.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// `path` with the escapes of bytes `decode` selects decoded, the others kept with their
/// hex digits upper-cased (RFC 3986 §6.2.2.1). A malformed escape is kept as it is
/// ([`check`] refuses those first). Decoded bytes that are not UTF-8 are replaced.
fn decode_escapes(path: &str, decode: impl Fn(u8) -> bool) -> String {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escape = match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) => hex(h).zip(hex(l)).map(|(h, l)| h << 4 | l),
            _ => None,
        };
        match escape {
            Some(b) if decode(b) => out.push(b),
            Some(_) => {
                out.push(b'%');
                out.push(bytes[i + 1].to_ascii_uppercase());
                out.push(bytes[i + 2].to_ascii_uppercase());
            }
            None => {
                out.push(bytes[i]);
                i += 1;
                continue;
            }
        }
        i += 3;
    }
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Runs of `/` merged into one.
fn merge_slashes_in(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if c == '/' && out.ends_with('/') {
            continue;
        }
        out.push(c);
    }
    out
}

/// One level of the path (raw or decoded `depth` times).
fn check_bytes(bytes: &[u8]) -> Result<(), &'static str> {
    if bytes.contains(&b'\\') {
        return Err("backslash");
    }
    if bytes.iter().any(|&b| b < 0x20 || b == 0x7f) {
        return Err("control character");
    }
    if bytes.contains(&b'%') {
        check_escapes(bytes)?;
    }
    for segment in bytes.split(|&b| b == b'/') {
        // `;parameters` are removed before routing by servlet containers.
        let name = match segment.iter().position(|&b| b == b';') {
            Some(i) => &segment[..i],
            None => segment,
        };
        if !name.is_empty() && name.contains(&b'.') && name.iter().all(|&b| b == b'.' || b == b' ')
        {
            return Err("dot segment");
        }
    }
    Ok(())
}

/// The escapes of one level: no encoded separator, no encoded escape.
fn check_escapes(bytes: &[u8]) -> Result<(), &'static str> {
    // Encoded separators (at any depth: `%252f` is `%2f` to a server that decodes
    // once more) change the segment structure for some servers and not for others:
    // the rules cannot know which one the app is.
    if bytes
        .windows(3)
        .any(|w| w.eq_ignore_ascii_case(b"%2f") || w.eq_ignore_ascii_case(b"%5c"))
    {
        return Err("encoded slash or backslash");
    }
    // `%25` before two hex digits is an escape once decoded: a stack that decodes twice
    // routes `%2564ebug` as `debug`, one that decodes once as `%64ebug`.
    if bytes
        .windows(5)
        .any(|w| w[..3].eq_ignore_ascii_case(b"%25") && hex(w[3]).is_some() && hex(w[4]).is_some())
    {
        return Err("encoded escape (%25 before two hex digits)");
    }
    Ok(())
}

/// The fully decoded path must be UTF-8 (no overlong forms) without look-alikes of the
/// separators.
fn check_unicode(bytes: &[u8]) -> Result<(), &'static str> {
    if bytes.is_ascii() {
        return Ok(()); // every look-alike is outside ASCII
    }
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8 once decoded")?;
    const LOOK_ALIKES: [char; 9] = [
        '\u{2024}', // ONE DOT LEADER → '.'
        '\u{2025}', // TWO DOT LEADER → '..'
        '\u{2026}', // HORIZONTAL ELLIPSIS → '...'
        '\u{FE52}', // SMALL FULL STOP → '.'
        '\u{FF0E}', // FULLWIDTH FULL STOP → '.'
        '\u{FF0F}', // FULLWIDTH SOLIDUS → '/'
        '\u{FF3C}', // FULLWIDTH REVERSE SOLIDUS → '\'
        '\u{FE68}', // SMALL REVERSE SOLIDUS → '\'
        '\u{2215}', // DIVISION SLASH (folded to '/' by some normalisers)
    ];
    if text.chars().any(|c| LOOK_ALIKES.contains(&c)) {
        return Err("look-alike of '.', '/' or '\\'");
    }
    Ok(())
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// One round of percent-decoding; a `%` not followed by two hex digits is refused
/// (servers disagree on what it means).
pub fn percent_decode(bytes: &[u8]) -> Result<Vec<u8>, &'static str> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) else {
                return Err("malformed percent-encoding");
            };
            out.push(h << 4 | l);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(out)
}

/// What common app servers do to a path before routing it, as separate steps (each a
/// string, lossy where bytes are not UTF-8). Used by tests and the fuzz target to check
/// that [`check`] refuses every path that some step would move to another route.
pub fn normalisations(path: &str) -> Vec<String> {
    let decoded = |p: &str| {
        percent_decode(p.as_bytes())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_else(|_| p.to_owned())
    };
    let strip_params = |p: &str| {
        p.split('/')
            .map(|s| s.split(';').next().unwrap_or_default())
            .collect::<Vec<_>>()
            .join("/")
    };
    let trim_windows = |p: &str| {
        p.split('/')
            .map(|s| s.trim_end_matches(['.', ' ']))
            .collect::<Vec<_>>()
            .join("/")
    };
    let once = decoded(path);
    let twice = decoded(&once);
    let mut out = vec![
        remove_dot_segments(path),
        remove_dot_segments(&strip_params(path)),
        remove_dot_segments(&once),
        remove_dot_segments(&strip_params(&once)),
        remove_dot_segments(&twice),
        remove_dot_segments(&strip_params(&twice)),
        remove_dot_segments(&once.replace('\\', "/")),
        remove_dot_segments(&trim_windows(&strip_params(&once))),
    ];
    out.dedup();
    out
}

/// How each app server of the differential test (`conformance/differential.py`) routes a
/// path it receives, plus a servlet container: (server, routed path, decoded). Used by the
/// tests and the fuzz target `path_policy` to hold [`canonical`]'s promise — a path it
/// forwards is routed by every one of them as the rules read it.
pub fn routings(forwarded: &str) -> Vec<(&'static str, String)> {
    let decoded = |p: &str| {
        percent_decode(p.as_bytes())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_else(|_| p.to_owned())
    };
    let merged = merge_slashes_in(forwarded);
    // Java's URI: "//host/rest" is an authority and a path.
    let java = match forwarded.strip_prefix("//") {
        Some(rest) => format!("/{}", rest.split_once('/').map_or("", |(_, p)| p)),
        None => forwarded.to_owned(),
    };
    let python = match forwarded.starts_with("//") {
        true => format!("/{}", forwarded.trim_start_matches('/')),
        false => forwarded.to_owned(),
    };
    let servlet: Vec<&str> = forwarded
        .split('/')
        .map(|s| s.split(';').next().unwrap_or_default())
        .collect();
    vec![
        ("python http.server", decoded(&python)),
        ("uvicorn", decoded(forwarded)),
        ("node", decoded(forwarded)),
        ("nginx", remove_dot_segments(&decoded(&merged))),
        ("java HttpServer", decoded(&java)),
        (
            "servlet container",
            remove_dot_segments(&decoded(&servlet.join("/"))),
        ),
    ]
}

/// RFC 3986 §5.2.4, as every server applies it.
pub fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').collect();
    let last = segments.len().saturating_sub(1);
    for (i, seg) in segments.iter().enumerate() {
        match *seg {
            "." => {
                if i == last {
                    out.push("");
                }
            }
            ".." => {
                if out.len() > 1 {
                    out.pop();
                }
                if i == last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    let joined = out.join("/");
    if joined.starts_with('/') {
        joined
    } else {
        format!("/{joined}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_paths_pass() {
        for ok in [
            "/",
            "*",
            "/invoices",
            "/invoices/7",
            "/a.b/c..d",
            "/.well-known/x",
            "/invoices/7;jsessionid=abc",
            "/files/%20name",
            "/caf%C3%A9",
            "//double",
            "/a+b",
            "/.hidden",
            "/v1.2/x",
        ] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn confusable_paths_are_refused() {
        for bad in [
            "relative",
            "/invoices/../admin",
            "/invoices/..",
            "/./admin",
            "/invoices/..;/admin",
            "/invoices/..;jsessionid=x/admin",
            "/invoices/.;/admin",
            "/invoices/%2e%2e/admin",
            "/invoices/%2E%2e/admin",
            "/invoices/.%2e/admin",
            "/invoices/%252e%252e/admin",
            "/invoices/%25252e%25252e/admin",
            "/invoices/..%3b/admin",
            "/invoices/..%253bx/admin",
            "/invoices%2fadmin",
            "/invoices%2Fadmin",
            "/invoices%252fadmin",
            "/invoices%5cadmin",
            "/invoices\\..\\admin",
            "/invoices/%00/admin",
            "/invoices%00.json",
            "/invoices/%c0%ae%c0%ae/admin",
            "/invoices/%c0%af",
            "/invoices/%e0%80%ae",
            "/invoices/...",
            "/invoices/.. /admin",
            "/invoices/..%20/admin",
            "/invoices/%ef%bc%8e%ef%bc%8e/admin",
            "/invoices%ef%bc%8fadmin",
            "/invoices/%zz",
            "/invoices/%4",
            "/invoices/%09",
            "/invoices/%2525252e%2525252e/admin",
        ] {
            assert!(check(bad).is_err(), "{bad} should be refused");
        }
    }

    /// An accepted path is what every app server makes of it: each normalisation of it
    /// (parameters stripped, as routers do) is one of the spellings of *that* path — the
    /// path itself, or itself decoded where decoding changes no route.
    #[test]
    fn accepted_paths_are_fixed_points_of_every_normalisation() {
        let cases: [(&str, &[&str]); 6] = [
            ("/invoices/7", &["/invoices/7"]),
            ("/invoices/7;jsessionid=abc", &["/invoices/7"]),
            ("/a.b/c..d", &["/a.b/c..d"]),
            ("/files/%20name", &["/files/%20name", "/files/ name"]),
            ("/caf%C3%A9/x", &["/caf%C3%A9/x", "/caf\u{e9}/x"]),
            ("/v1.2/x;v=1/y", &["/v1.2/x/y"]),
        ];
        for (p, spellings) in cases {
            assert!(check(p).is_ok(), "{p}");
            for n in normalisations(p) {
                let routed: String = n
                    .split('/')
                    .map(|s| s.split(';').next().unwrap_or_default())
                    .collect::<Vec<_>>()
                    .join("/");
                assert!(spellings.contains(&routed.as_str()), "{p} → {n}");
            }
        }
    }

    #[test]
    fn canonical_forms() {
        let c = |p| canonical(p, false).map(|c| (c.forward.into_owned(), c.rules.into_owned()));
        let same = |p: &str| Ok((p.to_owned(), p.to_owned()));
        assert_eq!(c("/invoices/7"), same("/invoices/7"));
        assert_eq!(c("/%64ebug/vars"), same("/debug/vars"));
        assert_eq!(c("/%7Euser/%2D%5F%2E"), same("/~user/-_."));
        assert_eq!(
            c("/caf%c3%a9"),
            Ok(("/caf%C3%A9".into(), "/caf\u{e9}".into()))
        );
        assert_eq!(
            c("/users/%40me"),
            Ok(("/users/%40me".into(), "/users/@me".into()))
        );
        assert_eq!(c("/a%3bb/c"), Ok(("/a%3Bb/c".into(), "/a%3Bb/c".into())));
        assert_eq!(c("/debug;x=1/vars;y"), same("/debug;x=1/vars;y"));
        let stripped = |p| canonical(p, false).unwrap().stripped;
        assert_eq!(
            stripped("/debug;x=1/vars;y").as_deref(),
            Some("/debug/vars")
        );
        assert_eq!(stripped("/de%62ug;x/v").as_deref(), Some("/debug/v"));
        assert_eq!(
            stripped("/debug%3Bx/v"),
            None,
            "an encoded ';' is part of the name"
        );
        assert_eq!(c("/files/%20x"), same("/files/%20x"));
        assert_eq!(c("*"), same("*"));
        for bad in [
            "//debug",
            "/a//b",
            "/a/%2564ebug",
            "/caf\u{e9}",
            "/a b",
            "/a\x01",
        ] {
            assert!(c(bad).is_err(), "{bad}");
        }
        let merged = canonical("//debug//vars/", true).unwrap();
        assert_eq!(merged.forward, "/debug/vars/");
        assert!(matches!(
            canonical("/plain/path", false).unwrap().forward,
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn patterns_are_read_as_paths_are() {
        use crate::config::PathPattern;
        let p = |s: &str| PathPattern::parse(s);
        assert_eq!(
            p("/caf%c3%a9/*"),
            Ok(PathPattern::Prefix("/caf\u{e9}".into()))
        );
        assert_eq!(p("/%64ebug"), Ok(PathPattern::Exact("/debug".into())));
        for never in ["/a//b", "/a/../b", "/a;x", "/a b", "/a?b", "/a/%zz"] {
            assert!(p(never).is_err(), "{never}");
        }
    }

    /// The promise, on a deterministic sample (the fuzz target `path_policy` searches
    /// further): for a path made canonical, a prefix every reading of the rules matches
    /// holds every app server's route, and one no reading matches holds none.
    #[test]
    fn every_server_routes_what_the_rules_read() {
        use crate::config::PathPattern;
        let pieces = [
            "", "/", "//", "a", "debug", "%64ebug", "%2e", ".", "..", ";x", ";", "%3b", "%2f",
            "%25", "%40", "@", "%c3%a9", "%7e", "\\", "%20",
        ];
        let rules = [
            PathPattern::parse("/debug/*").unwrap(),
            PathPattern::parse("/a").unwrap(),
        ];
        let mut checked = 0;
        for a in pieces {
            for b in pieces {
                for c in pieces {
                    for merge in [false, true] {
                        let p = format!("/{a}{b}/{c}");
                        let Ok(canon) = canonical(&p, merge) else {
                            continue;
                        };
                        checked += 1;
                        let mut readings = vec![canon.rules.to_string()];
                        readings.extend(canon.stripped.clone());
                        for rule in &rules {
                            let all = readings.iter().all(|r| rule.matches(r));
                            let any = readings.iter().any(|r| rule.matches(r));
                            for (server, routed) in routings(&canon.forward) {
                                let hit = rule.matches(&routed);
                                assert!(
                                    !all || hit,
                                    "{p}: {server} routes {routed} outside {rule:?}"
                                );
                                assert!(any || !hit, "{p}: {server} routes {routed} into {rule:?}");
                            }
                        }
                    }
                }
            }
        }
        assert!(checked > 1000, "{checked}");
    }

    #[test]
    fn dot_segment_removal() {
        assert_eq!(remove_dot_segments("/a/b/../c"), "/a/c");
        assert_eq!(remove_dot_segments("/a/./b/."), "/a/b/");
        assert_eq!(remove_dot_segments("/../../x"), "/x");
    }
}
