use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    from_toml_str(text, "t.toml", Vec::new())
}

fn parse_env(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    from_toml_str(
        text,
        "t.toml",
        env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
    )
}

fn problems(text: &str) -> Vec<String> {
    parse(text).unwrap_err().problems
}

const MIN: &str = r#"
[identity]
name = "orders"
private_key = "/k/orders.key"
[trust]
authorized_keys = "/k/authorized_keys"
[inbound]
[outbound]
"#;

#[test]
fn defaults() {
    let c = parse(MIN).unwrap();
    assert_eq!(c.identity.token_ttl, Duration::from_secs(60));
    assert_eq!(c.trust.leeway, Duration::from_secs(30));
    assert_eq!(c.trust.max_token_ttl, Duration::from_secs(300));
    assert_eq!(c.trust.rescan_interval, Duration::from_secs(30));
    let i = c.inbound.unwrap();
    assert_eq!(i.listen, "0.0.0.0:8443".parse().unwrap());
    assert_eq!(i.upstream.uri, "http://127.0.0.1:8080");
    assert_eq!(i.upstream.socket, None);
    assert_eq!(i.upstream.tcp_port(), Some(8080));
    assert_eq!(i.app_exposure, AppExposure::Warn);
    assert!(i.pod_ips.is_empty());
    assert_eq!(i.app_exposure_interval, Duration::from_secs(30));
    assert_eq!(i.token_header, "authorization");
    assert_eq!(i.mode, InboundMode::Enforce);
    let o = c.outbound.unwrap();
    assert_eq!(o.listen, "127.0.0.1:15001".parse().unwrap());
    assert_eq!(c.admin.listen, "127.0.0.1:15000".parse().unwrap());
    assert_eq!(c.limits.shutdown_grace, Duration::from_secs(20));
}

#[test]
fn the_contract_example_parses() {
    let text = r#"
[identity]
name = "orders"
private_key = "/etc/trustgate/identity/orders.key"
token_ttl = "60s"

[trust]
authorized_keys = "/etc/trustgate/authorized_keys"
leeway = "30s"

[inbound]
listen = "0.0.0.0:8443"
upstream = "http://127.0.0.1:8080"
public_paths = ["/healthz"]

[[inbound.allow]]
callers = ["billing"]
methods = ["GET", "POST"]
paths = ["/orders", "/orders/*"]

[callers.billing]
roles = ["IMPERSONATION"]

[outbound]
listen = "127.0.0.1:15001"

[[outbound.routes]]
host = "billing"
upstream = "http://billing.default.svc.cluster.local:8443"

[admin]
listen = "127.0.0.1:15000"
"#;
    let c = parse(text).unwrap();
    let rule = &c.inbound.as_ref().unwrap().allow[0];
    let matches = |caller: &str, method: &http::Method, path: &str| {
        let claims = serde_json::from_value(serde_json::json!({
            "iss": caller, "sub": caller, "aud": "orders", "iat": 1, "exp": 2}))
        .unwrap();
        let v = crate::token::Verified::new(caller, "k".into(), crate::keys::KeyAlg::Es256, claims)
            .unwrap();
        let s = crate::policy::Subject::plain(&v, &[], method, path);
        rule.check(&s).is_ok()
    };
    assert!(matches("billing", &http::Method::GET, "/orders/7"));
    assert!(matches("billing", &http::Method::POST, "/orders"));
    assert!(!matches("billing", &http::Method::DELETE, "/orders"));
    assert!(!matches("billing", &http::Method::GET, "/ordersx"));
    assert!(!matches("search", &http::Method::GET, "/orders"));
    assert_eq!(c.callers["billing"].roles, vec!["IMPERSONATION"]);
    assert_eq!(c.outbound.unwrap().routes[0].audience, "billing");
}

/// The annotated example says "every key is shown with its default (or a realistic
/// example where there is none)": parsed as written and parsed with every setting of a
/// section's own keys taken out (but the examples), each section is the same.
#[test]
fn the_annotated_example_shows_the_defaults() {
    let text = include_str!("../../config/trustgate.toml");
    let written = parse(text).unwrap();
    // The settings that are examples, not defaults.
    let examples = [
        "name",
        "private_key",
        "authorized_keys",
        "upstream",
        "public_paths",
        "listen",
    ];
    let mut section = String::new();
    let defaults: String = text
        .lines()
        .filter(|l| {
            if l.starts_with('[') {
                section = l.to_string();
            }
            let key = l.split(" = ").next().unwrap_or_default();
            let setting = !l.starts_with('#') && l.contains(" = ");
            let own = !section.starts_with("[[")
                && !section.contains(".claim_headers")
                && !section.starts_with("[callers");
            !(setting && own && !examples.contains(&key))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let defaulted = parse(&defaults).unwrap();
    let debug = |c: &Config| {
        [
            format!("{:?}", c.identity),
            format!("{:?}", c.trust),
            format!("{:?}", c.inbound),
            format!("{:?}", c.outbound),
            format!("{:?}", c.admin),
            format!("{:?}", c.limits),
            format!("{:?}", c.log),
        ]
    };
    for (w, d) in debug(&written).iter().zip(debug(&defaulted).iter()) {
        assert_eq!(w, d, "a value in config/trustgate.toml is not the default");
    }
    // And it says something: rules, claim headers, callers, routes, issuers' comments.
    let inbound = written.inbound.as_ref().unwrap();
    assert_eq!((inbound.allow.len(), inbound.deny.len()), (3, 2));
    assert_eq!(
        inbound.claim_headers.len(),
        0,
        "claim headers are commented out"
    );
    assert_eq!(written.callers["billing"].roles, ["IMPERSONATION"]);
    assert_eq!(
        written.outbound.as_ref().unwrap().routes[0].audience,
        "billing"
    );
}

#[test]
fn every_unknown_key_is_reported() {
    let p = problems(&format!(
        "{MIN}\nlisten_addr = 1\n[limits]\ntimeout = \"1s\"\n"
    ));
    assert!(
        p.iter().any(|p| p.contains("limits.timeout: unknown key")),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|p| p.contains("outbound.listen_addr: unknown key")),
        "{p:?}"
    );
    assert_eq!(p.len(), 2, "{p:?}");
}

#[test]
fn bad_values_name_their_key() {
    let text = MIN.replace(
        "[inbound]",
        "[inbound]\nlisten = \"0.0.0.0\"\nmode = \"lenient\"",
    ) + "[limits]\nrequest_timeout = \"soon\"\n";
    let p = problems(&text);
    assert!(
        p.iter().any(|p| p.starts_with("t.toml: inbound.listen:")),
        "{p:?}"
    );
    assert!(
        p.iter().any(|p| p.starts_with("t.toml: inbound.mode:")),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|p| p.starts_with("t.toml: limits.request_timeout:")),
        "{p:?}"
    );
    assert_eq!(p.len(), 3);
}

#[test]
fn protocols_and_audiences() {
    let c = parse(MIN).unwrap();
    assert_eq!(c.inbound.unwrap().upstream_protocol, UpstreamProtocol::Auto);
    assert!(!c.trust.allow_multi_audience, "refused by default");
    let text = MIN.replace("[inbound]", "[inbound]\nupstream_protocol = \"http2\"")
        + "[[outbound.routes]]\nhost = \"billing\"\nupstream = \"http://b:1\"\nupstream_protocol = \"http1\"\n";
    let c = parse_env(&text, &[("TRUSTGATE_TRUST_ALLOW_MULTI_AUDIENCE", "true")]).unwrap();
    assert_eq!(
        c.inbound.unwrap().upstream_protocol,
        UpstreamProtocol::Http2
    );
    assert_eq!(
        c.outbound.unwrap().routes[0].upstream_protocol,
        UpstreamProtocol::Http1
    );
    assert!(c.trust.allow_multi_audience);

    let text = MIN.replace("[inbound]", "[inbound]\nupstream_protocol = \"h2c\"")
        + "[[outbound.routes]]\nhost = \"billing\"\nupstream = \"http://b:1\"\nupstream_protocol = \"HTTP/1.1\"\n";
    let p = problems(&text);
    assert!(
        p.iter()
            .any(|p| p.starts_with("t.toml: inbound.upstream_protocol:")),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|p| p.starts_with("t.toml: outbound.routes[0].upstream_protocol:")),
        "{p:?}"
    );
    assert_eq!(p.len(), 2, "{p:?}");
}

#[test]
fn signed_headers_may_not_fold_onto_reserved_names() {
    for name in [
        "x_service_caller",
        "X.Service-Caller-Roles",
        "Authorization",
    ] {
        let text = MIN.replace(
            "[inbound]",
            &format!("[inbound]\nsigned_headers = [\"{name}\"]"),
        );
        let p = problems(&text);
        assert!(
            p.iter()
                .any(|p| p.contains("inbound.signed_headers") && p.contains("reserved")),
            "{name}: {p:?}"
        );
    }
}

#[test]
fn wrong_types_are_reported() {
    let p = problems("[identity]\nname = 5\n");
    assert_eq!(
        p[0], "t.toml: identity.name: invalid type: integer `5`, expected a string",
        "{p:?}"
    );
    let p = problems(&format!("{MIN}[limits]\nmax_connections = \"many\"\n"));
    assert_eq!(
        p,
        ["t.toml: limits.max_connections: invalid type: string \"many\", expected usize"]
    );
}

#[test]
fn identity_rules() {
    let p = problems(&MIN.replace("name = \"orders\"", "name = \"Orders\""));
    assert!(p[0].contains("identity.name"), "{p:?}");
    let p = problems(&MIN.replace(
        "private_key = \"/k/orders.key\"",
        "private_key = \"/a\"\nshared_key = \"/b\"",
    ));
    assert!(p[0].contains("not both"), "{p:?}");
    let p = problems(&MIN.replace("private_key = \"/k/orders.key\"", ""));
    assert!(
        p[0].contains("identity.private_key: is required with [outbound]"),
        "{p:?}"
    );
    let p = problems(&MIN.replace("[identity]", "[identity]\ntoken_ttl = \"10m\""));
    assert!(p[0].contains("identity.token_ttl"), "{p:?}");
}

#[test]
fn routes_are_unique_and_need_upstreams() {
    let text = format!(
        "{MIN}[[outbound.routes]]\nhost = \"billing\"\nupstream = \"http://b:1\"\n\
         [[outbound.routes]]\nhost = \"Billing\"\nupstream = \"http://b:2\"\n\
         [[outbound.routes]]\nhost = \"x\"\nupstream = \"ftp://x\"\n\
         [[outbound.routes]]\nhost = \"y\"\n"
    );
    let p = problems(&text);
    assert!(
        p.iter()
            .any(|p| p.contains("outbound.routes[1].host") && p.contains("two routes")),
        "{p:?}"
    );
    assert!(
        p.iter().any(|p| p.contains("outbound.routes[2].upstream")),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|p| p.contains("outbound.routes[3].upstream: is required")),
        "{p:?}"
    );
}

#[test]
fn allow_rules_are_checked() {
    let text = format!(
        "{MIN}[[inbound.allow]]\n[[inbound.allow]]\nmethods = [\"FETCH\"]\npaths = [\"orders\", \"/a/*/b\"]\ncallers = [\"Bad\"]\n"
    );
    let p = problems(&text);
    assert!(
        p.iter()
            .any(|p| p.contains("inbound.allow[0]") && p.contains("empty rule")),
        "{p:?}"
    );
    assert!(
        p.iter().any(|p| p.contains("inbound.allow[1].methods")),
        "{p:?}"
    );
    assert_eq!(
        p.iter()
            .filter(|p| p.contains("inbound.allow[1].paths"))
            .count(),
        2,
        "{p:?}"
    );
    assert!(
        p.iter().any(|p| p.contains("inbound.allow[1].callers")),
        "{p:?}"
    );
}

#[test]
fn tls_pairs_and_headers() {
    let text = MIN.replace(
        "[inbound]",
        "[inbound]\ntls_cert = \"/c\"\ntoken_header = \"bad header\"",
    );
    let p = problems(&text);
    assert!(
        p.iter().any(|p| p.contains("inbound.tls_key: is required")),
        "{p:?}"
    );
    assert!(
        p.iter().any(|p| p.contains("inbound.token_header")),
        "{p:?}"
    );
    let text = MIN.replace(
        "[inbound]",
        "[inbound]\nsigned_headers = [\"X-Service-Caller\"]",
    );
    assert!(problems(&text)[0].contains("reserved"));
}

#[test]
fn env_overrides() {
    let c = parse_env(
        MIN,
        &[
            ("TRUSTGATE_INBOUND_LISTEN", "127.0.0.1:9443"),
            ("TRUSTGATE_INBOUND_REQUIRE_REQUEST_BINDING", "true"),
            ("TRUSTGATE_INBOUND_PUBLIC_PATHS", "/healthz, /ready"),
            ("TRUSTGATE_OUTBOUND_SIGNED_HEADERS", r#"["x-user-id"]"#),
            ("TRUSTGATE_TRUST_MAX_TOKEN_TTL", "10m"),
            ("TRUSTGATE_LIMITS_MAX_CONNECTIONS", "5"),
            ("TRUSTGATE_CONFIG", "/ignored"),
        ],
    )
    .unwrap();
    let i = c.inbound.unwrap();
    assert_eq!(i.listen, "127.0.0.1:9443".parse().unwrap());
    assert!(i.require_request_binding);
    assert_eq!(
        i.public_paths,
        vec![
            PathPattern::Exact("/healthz".into()),
            PathPattern::Exact("/ready".into())
        ]
    );
    assert_eq!(c.outbound.unwrap().signed_headers, vec!["x-user-id"]);
    assert_eq!(c.trust.max_token_ttl, Duration::from_secs(600));
    assert_eq!(c.limits.max_connections, 5);
}

#[test]
fn env_creates_sections_and_rejects_unknown_names() {
    let c = parse_env(
        "[identity]\nname = \"a\"\n[trust]\nauthorized_keys = \"/k\"\n",
        &[("TRUSTGATE_INBOUND_UPSTREAM", "http://127.0.0.1:9000")],
    )
    .unwrap();
    assert_eq!(c.inbound.unwrap().upstream.uri, "http://127.0.0.1:9000");
    let p = parse_env(
        MIN,
        &[
            ("TRUSTGATE_INBOUND_LISTN", "x"),
            ("TRUSTGATE_OUTBOUND_BIND_REQUEST", "maybe"),
        ],
    )
    .unwrap_err()
    .problems;
    assert!(
        p.iter().any(|p| p.contains("TRUSTGATE_INBOUND_LISTN")),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|p| p.contains("TRUSTGATE_OUTBOUND_BIND_REQUEST")),
        "{p:?}"
    );
}

#[test]
fn nothing_to_do_is_an_error() {
    let p = problems("[identity]\nname = \"a\"\n");
    assert!(p[0].contains("nothing to do"), "{p:?}");
}

#[test]
fn load_resolves_relative_paths_and_names_missing_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trustgate.toml");
    std::fs::write(&path, MIN.replace("/k/", "keys/")).unwrap();
    let c = load(&path, Vec::new()).unwrap();
    assert_eq!(
        c.trust.authorized_keys.unwrap().to_path_buf(),
        dir.path().join("keys/authorized_keys")
    );
    // From the environment: relative to the working directory, as on a command line.
    let env = vec![(
        "TRUSTGATE_TRUST_AUTHORIZED_KEYS".to_owned(),
        "mounted/keys".to_owned(),
    )];
    let c = load(&path, env).unwrap();
    assert_eq!(
        c.trust.authorized_keys.unwrap().to_path_buf(),
        std::env::current_dir().unwrap().join("mounted/keys")
    );
    let err = load(&dir.path().join("nope.toml"), Vec::new()).unwrap_err();
    assert!(err.problems[0].contains("nope.toml"));
}

#[cfg(unix)]
#[test]
fn loose_key_permissions_are_warned_about() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k");
    std::fs::write(&key, "x").unwrap();
    let mode = |m| std::fs::set_permissions(&key, std::fs::Permissions::from_mode(m)).unwrap();
    mode(0o600);
    assert!(crate::trust::files::loose_permissions(&key).is_none());
    // Group-readable by our own group: the Kubernetes fsGroup layout.
    mode(0o640);
    assert!(crate::trust::files::loose_permissions(&key).is_none());
    mode(0o644);
    assert!(crate::trust::files::loose_permissions(&key)
        .unwrap()
        .contains("others"));
}

#[test]
fn path_patterns() {
    let p = PathPattern::parse("/api/*").unwrap();
    assert!(p.matches("/api") && p.matches("/api/x/y") && !p.matches("/apix"));
    assert!(PathPattern::parse("*").unwrap().matches("/anything"));
    assert!(PathPattern::parse("/a/*/b").is_err());
}

#[test]
fn every_bad_value_is_reported_with_the_users_numbering() {
    let text = format!(
        "{MIN}[[outbound.routes]]\nhost = \"a\"\n\
         [[outbound.routes]]\nhost = \"b\"\nupstream = \"ftp://b\"\nupstream_protocol = \"http3\"\n\
         [[outbound.routes]]\nhost = \"a\"\nupstream = \"http://a:1\"\n\
         [[outbound.routes]]\nhost = \"A\"\nupstream = \"http://a:2\"\n\
         [limits]\nconnect_timeout = \"soon\"\nmax_connections = \"many\"\nidle_timeout = 5\n\
         [log]\nformat = \"xml\"\n"
    );
    let p = problems(&text);
    for expected in [
        "t.toml: outbound.routes[0].upstream: is required",
        "t.toml: outbound.routes[1].upstream: \"ftp://b\" is not an http:// or https:// URL",
        "t.toml: outbound.routes[1].upstream_protocol: unknown variant `http3`",
        // The fourth route is still numbered [3] though [0] and [1] could not be read.
        "t.toml: outbound.routes[3].host: \"a\" has two routes",
        "t.toml: limits.connect_timeout:",
        "t.toml: limits.max_connections:",
        "t.toml: limits.idle_timeout:",
        "t.toml: log.format: unknown variant `xml`, expected `text` or `json`",
    ] {
        assert!(
            p.iter().any(|p| p.starts_with(expected)),
            "{expected}\n{}",
            p.join("\n")
        );
    }
    // Nothing reported twice: a refused value is not also "required".
    assert_eq!(p.len(), 8, "{}", p.join("\n"));
}

#[test]
fn the_kubernetes_examples_parse() {
    for text in [
        include_str!("../../deploy/kubernetes/example/orders/trustgate.toml"),
        include_str!("../../deploy/kubernetes/example/billing/trustgate.toml"),
        include_str!("../../deploy/kubernetes/example/web/trustgate.toml"),
    ] {
        parse(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    }
}

#[test]
fn plain_http_key_urls_are_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("authorized_keys");
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::write(
        keys.join("orders.url"),
        "http://orders:8443/.well-known/jwks.json",
    )
    .unwrap();
    let text = format!(
        "[identity]\nname = \"billing\"\n[trust]\nauthorized_keys = \"{}\"\n[inbound]\n",
        keys.display()
    );
    let warned = |extra: &str| {
        let c = parse(&text.replace("[inbound]", &format!("{extra}[inbound]"))).unwrap();
        crate::trust::files::load_checked(&c)
            .1
            .warnings
            .iter()
            .any(|w| w.contains("orders.url") && w.contains("allow_http_fetch"))
    };
    assert!(warned(""));
    assert!(!warned("allow_http_fetch = true\n"));
}

#[test]
fn fetch_settings_are_checked() {
    let with = |lines: &str| problems(&MIN.replace("[trust]", &format!("[trust]\n{lines}")));
    let p = with("fetch_timeout = \"0s\"");
    assert!(
        p.iter()
            .any(|p| p.contains("trust.fetch_timeout: must be greater than zero")),
        "{p:?}"
    );
    let p = with("fetch_cooldown = \"0s\"");
    assert!(
        p.iter()
            .any(|p| p.contains("trust.fetch_cooldown: must be greater than zero")),
        "{p:?}"
    );
    let p = with("fetch_interval = \"5s\"\nfetch_cooldown = \"10s\"");
    assert!(
        p.iter().any(|p| p.contains("trust.fetch_interval")
            && p.contains("shorter than trust.fetch_cooldown")),
        "{p:?}"
    );
    let p = with("max_stale = \"soon\"");
    assert!(
        p.iter().any(|p| p.starts_with("t.toml: trust.max_stale:")),
        "{p:?}"
    );
    let c = parse_env(
        MIN,
        &[
            ("TRUSTGATE_TRUST_ALLOW_HTTP_FETCH", "true"),
            ("TRUSTGATE_LIMITS_WORKER_THREADS", "1"),
        ],
    )
    .unwrap();
    assert!(c.trust.allow_http_fetch);
    assert_eq!(c.limits.worker_threads, 1);
}

#[test]
fn the_app_on_a_unix_socket() {
    let c = parse(
        &format!("{MIN}upstream = \"unix:///run/app/app.sock\"\n").replace(
            "[inbound]\n[outbound]\nupstream",
            "[outbound]\n[inbound]\nupstream",
        ),
    )
    .unwrap();
    let up = c.inbound.unwrap().upstream;
    assert_eq!(up.socket.as_deref(), Some(Path::new("/run/app/app.sock")));
    assert_eq!(up.tcp_port(), None, "no TCP port to check for exposure");
    assert_eq!(up.to_string(), "unix:///run/app/app.sock");
    // From the environment too (inject wires it so).
    let c = parse_env(
        MIN,
        &[(
            "TRUSTGATE_INBOUND_UPSTREAM",
            "unix:///run/trustgate-app/app.sock",
        )],
    )
    .unwrap();
    assert_eq!(
        c.inbound.unwrap().upstream.socket.as_deref(),
        Some(Path::new("/run/trustgate-app/app.sock"))
    );
    let long = format!("unix:///{}", "a".repeat(120));
    for (bad, says) in [
        ("unix://run/app.sock", "absolute socket path"),
        ("unix:///", "absolute socket path"),
        ("unix:///run/app.sock?x=1", "absolute socket path"),
        (long.as_str(), "at most 107 bytes"),
        ("ftp://a", "nor unix:///path"),
    ] {
        let p = parse_env(MIN, &[("TRUSTGATE_INBOUND_UPSTREAM", bad)])
            .unwrap_err()
            .problems;
        assert!(
            p.iter()
                .any(|p| p.contains("inbound.upstream") && p.contains(says)),
            "{bad}: {p:?}"
        );
    }
}

#[test]
fn exposure_check_keys() {
    let c = parse_env(
        MIN,
        &[
            ("TRUSTGATE_INBOUND_POD_IPS", "10.1.2.3, fd00::7"),
            ("TRUSTGATE_INBOUND_APP_EXPOSURE", "refuse"),
            ("TRUSTGATE_INBOUND_APP_EXPOSURE_INTERVAL", "5s"),
        ],
    )
    .unwrap();
    let i = c.inbound.unwrap();
    assert_eq!(
        i.pod_ips,
        vec![
            "10.1.2.3".parse::<IpAddr>().unwrap(),
            "fd00::7".parse().unwrap()
        ]
    );
    assert_eq!(i.app_exposure, AppExposure::Refuse);
    assert_eq!(i.app_exposure_interval, Duration::from_secs(5));
    let p = parse_env(
        MIN,
        &[
            ("TRUSTGATE_INBOUND_POD_IPS", "10.1.2.3,pod"),
            ("TRUSTGATE_INBOUND_APP_EXPOSURE", "loud"),
        ],
    )
    .unwrap_err()
    .problems;
    assert!(
        p.iter().any(|p| p.contains("\"pod\" is not an IP address")),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|p| p.contains(
                "environment variable TRUSTGATE_INBOUND_APP_EXPOSURE (inbound.app_exposure): unknown variant `loud`"
            )),
        "{p:?}"
    );
    let p = problems(
        &format!("{MIN}app_exposure_interval = \"0s\"\n")
            .replace("[inbound]\n[outbound]\napp", "[outbound]\n[inbound]\napp"),
    );
    assert!(
        p.iter()
            .any(|p| p.contains("inbound.app_exposure_interval")),
        "{p:?}"
    );
}

#[test]
fn an_inbound_section_can_be_switched_off() {
    // An outbound-only workload whose ConfigMap also serves others: no inbound listener.
    let c = parse_env(MIN, &[("TRUSTGATE_INBOUND_ENABLED", "false")]).unwrap();
    assert!(c.inbound.is_none());
    assert!(c.outbound.is_some());
    let c = parse(MIN).unwrap();
    assert!(c.inbound.is_some());
}
