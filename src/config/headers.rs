//! Every header trustgate sets for the app, as one table (DESIGN.md "End users": one set
//! of names): signed headers, claim headers and the person's context headers, checked by
//! one rule — beside trustgate's own (`x-service-caller*`, the person's, `txn-token`) and
//! the credentials' headers. No two fold alike (case, `-`/`_`: how app servers read
//! names), none is a framing, routing or hop-by-hop name, none is trustgate's own.
use super::parse::Problems;
use super::Inbound;
use crate::http::{name_starts_alike, names_alike};

/// Names no configured header may take (DESIGN.md "Policy", claims to the app): framing and
/// routing are the proxy's, hop-by-hop fields never reach the app, and a header the
/// request must carry as the client sent it is nobody's to set — as Envoy refuses
/// system headers in header mutations. Compared as app servers fold names.
const SYSTEM: [&str; 16] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "proxy-authenticate",
    "proxy-authorization",
    "expect",
    "content-encoding",
    "content-type",
    "forwarded",
    "x-forwarded-for",
];

/// trustgate's own names for the person and the transaction.
const OWN: [&str; 4] = [
    "x-user-subject",
    "x-user-issuer",
    "x-transaction-id",
    "txn-token",
];

/// What kind of header a configured name is, and where it is configured.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Signed,
    Claim,
    Context,
}

impl Kind {
    fn word(self) -> &'static str {
        match self {
            Kind::Signed => "a signed header",
            Kind::Claim => "a claim header",
            Kind::Context => "a context header",
        }
    }
}

/// One configured header: its kind, its name and the key a problem is reported at.
struct Named {
    kind: Kind,
    name: String,
    at: String,
}

/// The rule for every header the app is told (see the module's comment).
pub(super) fn check(i: &Inbound, p: &mut Problems) {
    let mut all: Vec<Named> = Vec::new();
    for h in &i.signed_headers {
        all.push(Named {
            kind: Kind::Signed,
            name: h.to_string(),
            at: "inbound.signed_headers".into(),
        });
    }
    for h in &i.claim_headers {
        all.push(Named {
            kind: Kind::Claim,
            name: h.name.to_string(),
            at: format!("inbound.claim_headers.\"{}\"", h.name),
        });
    }
    for (h, _) in i.users.iter().flat_map(|u| &u.context_headers) {
        all.push(Named {
            kind: Kind::Context,
            name: h.to_string(),
            at: format!("inbound.users.context_headers.\"{h}\""),
        });
    }
    let credentials: Vec<&str> = std::iter::once(i.token_header.as_str())
        .chain(i.users.iter().map(|u| u.token_header.as_str()))
        .collect();
    for (n, h) in all.iter().enumerate() {
        let name = h.name.as_bytes();
        let own = name_starts_alike(name, b"x-service-caller")
            || OWN.iter().any(|o| names_alike(name, o.as_bytes()))
            || (h.kind == Kind::Context && name_starts_alike(name, b"x-user-"))
            || credentials.iter().any(|c| names_alike(name, c.as_bytes()));
        let prefix = match h.kind {
            Kind::Signed => format!("\"{}\" ", h.name),
            _ => String::new(),
        };
        if own {
            p.add(
                &h.at,
                format!("{prefix}is reserved for trustgate's own headers"),
            );
        }
        if let Some(system) = SYSTEM.iter().find(|s| names_alike(name, s.as_bytes())) {
            p.add(
                &h.at,
                format!("{prefix}\"{system}\" frames, routes or is hop-by-hop: it is the proxy's, never set for the app"),
            );
        }
        for other in &all[n + 1..] {
            if !names_alike(name, other.name.as_bytes()) {
                continue;
            }
            let why = match other.kind == h.kind {
                true => format!(
                    "app servers read it as \"{}\" (case, '-' and '_' fold alike): one header, one value",
                    h.name
                ),
                false => format!(
                    "\"{}\" is also {} (\"{}\"): one source per header",
                    other.name,
                    h.kind.word(),
                    h.name
                ),
            };
            p.add(&other.at, why);
        }
    }
}

#[cfg(test)]
mod tests {
    fn problems(inbound: &str) -> Vec<String> {
        let text = format!(
            "[identity]\nname = \"billing\"\n[trust]\nauthorized_keys = \"/k\"\n[inbound]\n{inbound}"
        );
        let mut cfg = crate::config::from_toml_str(&text, "t.toml", Vec::new())
            .map(|_| Vec::new())
            .unwrap_or_else(|e| e.to_string().lines().map(str::to_owned).collect());
        cfg.retain(|l| !l.is_empty());
        cfg
    }

    #[test]
    fn one_rule_for_every_header_the_app_is_told() {
        let cases = [
            (
                "[inbound.users.context_headers]\n\"x-tenant\" = \"a\"\n\"x_tenant\" = \"b\"\n",
                "inbound.users.context_headers.\"x_tenant\": app servers read it as \"x-tenant\"",
            ),
            (
                "signed_headers = [\"x-role\"]\n[inbound.users.context_headers]\n\"X-Role\" = \"role\"\n",
                "inbound.users.context_headers.\"x-role\": \"x-role\" is also a signed header",
            ),
            (
                "signed_headers = [\"x-tenant\"]\nclaim_headers = { \"x_tenant\" = \"/t\" }\n",
                "inbound.claim_headers.\"x_tenant\": \"x_tenant\" is also a signed header",
            ),
            (
                "signed_headers = [\"x-user-subject\"]\n",
                "inbound.signed_headers: \"x-user-subject\" is reserved",
            ),
            (
                "claim_headers = { \"Txn_Token\" = \"/t\" }\n",
                "inbound.claim_headers.\"txn_token\": is reserved",
            ),
            (
                "signed_headers = [\"transfer-encoding\"]\n",
                "inbound.signed_headers: \"transfer-encoding\" \"transfer-encoding\" frames",
            ),
            (
                "[inbound.users]\ntoken_header = \"x-person\"\n[inbound.users.context_headers]\n\"x_person\" = \"t\"\n",
                "inbound.users.context_headers.\"x_person\": is reserved",
            ),
            (
                "[inbound.users.context_headers]\n\"Connection\" = \"t\"\n",
                "inbound.users.context_headers.\"connection\": \"connection\" frames",
            ),
        ];
        for (inbound, expected) in cases {
            let p = problems(inbound).join("\n");
            assert!(
                p.contains(expected),
                "{inbound}\nmissing «{expected}» in:\n{p}"
            );
        }
        assert!(problems(
            "signed_headers = [\"x-user-id\"]\nclaim_headers = { \"x-ns\" = \"/ns\" }\n\
             [inbound.users.context_headers]\n\"x-tenant\" = \"t\"\n"
        )
        .is_empty());
    }
}
