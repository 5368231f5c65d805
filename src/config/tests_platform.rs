//! Configuration tests of platform identity and policy: issuers, token files, claim
//! pointers.
use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    from_toml_str(text, "t.toml", Vec::new())
}

fn problems(text: &str) -> Vec<String> {
    parse(text).unwrap_err().problems
}

#[test]
fn issuers_are_checked_and_every_problem_named() {
    let base = "[identity]\nname = \"billing\"\nprivate_key = \"/k/b.key\"\n[inbound]\n";
    let good = format!(
        "{base}[[trust.issuers]]\nname = \"cluster\"\nkind = \"kubernetes\"\n\
         issuer = \"kubernetes:///\"\ncallers = {{ \"shop/orders\" = \"orders\" }}\n"
    );
    let c = parse(&good).unwrap();
    let i = &c.trust.issuers[0];
    assert_eq!(i.audiences, ["billing"], "default: this identity");
    assert_eq!(i.max_token_ttl, Duration::from_secs(86400));
    assert_eq!(i.ca_path(&c.trust), Some(Path::new(POD_CA_FILE)));
    assert_eq!(i.bearer_path(), Some(Path::new(POD_TOKEN_FILE)));
    let bad = format!(
        "{base}[[trust.issuers]]\nname = \"a\"\nkind = \"oidc\"\n\
         callers = {{ \"x\" = \"Not-An-Identity\" }}\n\
         [[trust.issuers]]\nname = \"a\"\nkind = \"spiffe\"\n\
         callers = {{ \"spiffe://other.org/x\" = \"orders\" }}\n\
         [[trust.issuers]]\nname = \"k\"\nkind = \"kubernetes\"\nissuer = \"http://plain\"\n\
         callers = {{ \"shop\" = \"reports\", \"shop/a\" = \"orders\" }}\n\
         [[trust.issuers]]\nname = \"z\"\nkind = \"kerberos\"\n"
    );
    let p = problems(&bad).join("\n");
    for expected in [
        "trust.issuers[0].issuer: is required",
        "trust.issuers[0].callers.\"x\": \"Not-An-Identity\" is not a valid identity",
        "trust.issuers[1].name: \"a\" names two issuers",
        "trust.issuers[1].jwks_url: is required for a spiffe issuer",
        "trust.issuers[1].trust_domain: is required",
        "trust.issuers[1].callers.\"spiffe://other.org/x\": \"spiffe://other.org/x\" is not a SPIFFE ID",
        "trust.issuers[2].issuer: \"http://plain\" is not an https:// URL",
        "trust.issuers[2].callers.\"shop\": \"shop\" is not \"<namespace>/<serviceaccount>\"",
        "trust.issuers[3].kind: unknown variant `kerberos`",
    ] {
        assert!(p.contains(expected), "missing «{expected}» in:\n{p}");
    }
}

#[test]
fn a_route_with_a_token_file_signs_nothing() {
    let text =
        "[identity]\nname = \"orders\"\n[outbound]\n[[outbound.routes]]\nhost = \"billing\"\n\
                upstream = \"http://b:8443\"\ntoken_file = \"/var/run/secrets/tokens/billing\"\n";
    let c = parse(text).unwrap();
    let route = &c.outbound.unwrap().routes[0];
    assert_eq!(
        route.token_file.as_deref(),
        Some(Path::new("/var/run/secrets/tokens/billing"))
    );
    let signs = text.replace("token_file = \"/var/run/secrets/tokens/billing\"\n", "");
    assert!(problems(&signs)
        .join("\n")
        .contains("identity.private_key: is required"));
}

#[test]
fn claim_pointers_follow_rfc_6901() {
    let doc = serde_json::json!({
        "kubernetes.io": {"namespace": "shop"}, "a/b": 1, "m~n": 2, "groups": ["x", "y"],
        "": {"": 3}
    });
    let at = |p: &str| ClaimPointer::parse(p).unwrap().lookup(&doc).cloned();
    assert_eq!(
        at("/kubernetes.io/namespace"),
        Some(serde_json::json!("shop"))
    );
    assert_eq!(at("/a~1b"), Some(serde_json::json!(1)));
    assert_eq!(at("/m~0n"), Some(serde_json::json!(2)));
    assert_eq!(at("/groups/1"), Some(serde_json::json!("y")));
    assert_eq!(at("/groups/01"), None, "no leading zeros");
    assert_eq!(at("/groups/-"), None);
    assert_eq!(at("//"), Some(serde_json::json!(3)));
    assert_eq!(at("/nope"), None);
    // The same answers as serde_json's own pointer, where both are defined.
    for p in [
        "/kubernetes.io/namespace",
        "/a~1b",
        "/m~0n",
        "/groups/1",
        "//",
        "/nope",
    ] {
        assert_eq!(at(p).as_ref(), doc.pointer(p), "{p}");
    }
    for bad in ["kubernetes.io", "", "/a~2", "/a~"] {
        assert!(ClaimPointer::parse(bad).is_err(), "{bad}");
    }
}
