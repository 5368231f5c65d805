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

/// End users: a user issuer's shape, and what minting and requiring a person need.
#[test]
fn end_user_settings_are_checked() {
    let base = "[identity]\nname = \"web\"\nprivate_key = \"/k/w.key\"\n[trust]\nauthorized_keys = \"/a\"\n";
    let people = "[[trust.issuers]]\nname = \"people\"\nkind = \"oidc\"\nusers = true\n\
                  issuer = \"https://id.example\"\naudiences = [\"web\"]\n";
    let good = format!(
        "{base}{people}[inbound]\n[inbound.users]\ncallers = \"optional\"\nmint_transaction_token = true\n\
         context = {{ tenant = \"/tenant\" }}\n[inbound.users.context_headers]\n\"x-tenant\" = \"tenant\"\n"
    );
    let c = parse(&good).unwrap();
    let u = c.inbound.as_ref().unwrap().users.as_ref().unwrap();
    assert_eq!(
        (u.mode, u.callers),
        (UsersMode::Optional, UsersMode::Optional)
    );
    assert_eq!(u.token_header, "x-user-token");
    assert_eq!(u.transaction_ttl, Duration::from_secs(300));
    assert_eq!(c.identity.trust_domain, "cluster.local");
    assert_eq!(c.trust.max_transaction_ttl, Duration::from_secs(600));
    assert_eq!(u.context[0].0, "tenant");

    let cases = [
        (
            format!("{base}[inbound]\n[inbound.users]\nmint_transaction_token = true\n"),
            "inbound.users.mint_transaction_token: needs a user issuer",
        ),
        (
            format!("{base}[inbound]\n[inbound.users]\nmode = \"required\"\n"),
            "inbound.users.mode: \"required\" needs a user issuer or trust.transaction_token_issuers",
        ),
        (
            format!("{base}{}[inbound]\n", people.replace("users = true\n", "users = true\ncallers = { \"a\" = \"b\" }\n")),
            "trust.issuers[0].callers: a user issuer's tokens are people's, never a caller's",
        ),
        (
            format!("{base}{}[inbound]\n", people.replace("kind = \"oidc\"", "kind = \"kubernetes\"")),
            "trust.issuers[0].users: people's tokens come from an oidc issuer",
        ),
        (
            format!("{base}{}[inbound]\n", people.replace("audiences = [\"web\"]\n", "")),
            "trust.issuers[0].audiences: is required for a user issuer",
        ),
        (
            format!("{base}{people}[inbound]\n[inbound.users]\ntransaction_ttl = \"1h\"\n"),
            "inbound.users.transaction_ttl: must be greater than zero and at most trust.max_transaction_ttl",
        ),
        (
            format!("{base}{people}[inbound]\n[inbound.users.context_headers]\n\"X_User_Subject\" = \"tenant\"\n"),
            "inbound.users.context_headers.\"x_user_subject\": is reserved",
        ),
        (
            format!("{base}[inbound]\n[inbound.users]\ncontext = {{ tenant = \"tenant\" }}\n"),
            "inbound.users.context: \"tenant\" is not a JSON Pointer",
        ),
        (
            base.replace("[trust]\n", "[trust]\ntransaction_token_issuers = [\"Web\"]\n") + "[inbound]\n",
            "trust.transaction_token_issuers: \"Web\" is not a valid identity",
        ),
        (
            format!("{base}{people}[inbound]\n[inbound.users]\ntoken_header = \"Authorization\"\n"),
            "inbound.users.token_header: is also inbound.token_header",
        ),
        (
            format!("{base}[inbound]\n[[inbound.allow]]\ncontext = {{ tenant = [] }}\n"),
            "inbound.allow[0].context: \"tenant\": an empty list matches nothing",
        ),
        (
            format!("{base}[inbound]\n[[inbound.allow]]\nusers = [\"\"]\n"),
            "inbound.allow[0].users: an empty subject names nobody",
        ),
    ];
    for (text, expected) in cases {
        let p = problems(&text).join("\n");
        assert!(p.contains(expected), "missing «{expected}» in:\n{p}");
    }
}
