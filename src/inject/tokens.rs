//! Platform tokens in the pod: projected service-account tokens the sidecar presents on
//! outbound routes (`trustgate.dev/projected-audiences`), and this pod's own token and
//! the cluster CA where a `kubernetes:///` issuer reads them
//! (`trustgate.dev/kubernetes-issuer: "true"`).
use super::*;

/// Where projected tokens are mounted: `<dir>/<audience>`, a route's `token_file`.
pub(super) const TOKENS_DIR: &str = "/var/run/secrets/tokens";
const TOKENS_VOLUME: &str = "trustgate-tokens";
const POD_SA_VOLUME: &str = "trustgate-service-account";
/// An hour: the kubelet renews at 80 % of it.
const TOKEN_SECONDS: i64 = 3600;

/// `trustgate.dev/projected-audiences: "billing,ledger"`: each a valid identity.
pub(super) fn projected_audiences(
    ann: &impl Fn(&str) -> Option<String>,
) -> Result<Vec<String>, String> {
    let Some(list) = ann("projected-audiences") else {
        return Ok(Vec::new());
    };
    let mut out: Vec<String> = Vec::new();
    for aud in list.split(',').map(str::trim).filter(|a| !a.is_empty()) {
        if !crate::keys::is_valid_identity(aud) {
            return Err(format!(
                "{ANNOTATION}projected-audiences: \"{aud}\" is not a valid identity"
            ));
        }
        if !out.iter().any(|a| a == aud) {
            out.push(aud.to_owned());
        }
    }
    Ok(out)
}

/// `trustgate.dev/kubernetes-issuer`: `true` mounts this pod's token and the cluster CA
/// into the sidecar at the standard path (also when the pod does not automount them).
pub(super) fn pod_token(ann: &impl Fn(&str) -> Option<String>) -> Result<bool, String> {
    match ann("kubernetes-issuer").as_deref() {
        None | Some("false" | "disabled") => Ok(false),
        Some("true" | "enabled") => Ok(true),
        Some(other) => Err(format!(
            "{ANNOTATION}kubernetes-issuer is \"{other}\"; use true or false"
        )),
    }
}

/// The sidecar's volumes for them.
pub(super) fn volumes(st: &Settings) -> Vec<Yaml> {
    let mut v = Vec::new();
    if !st.projected_audiences.is_empty() {
        let sources = st
            .projected_audiences
            .iter()
            .map(|aud| {
                map([(
                    "serviceAccountToken",
                    map([
                        ("audience", s(aud)),
                        ("expirationSeconds", Yaml::Integer(TOKEN_SECONDS)),
                        ("path", s(aud)),
                    ]),
                )])
            })
            .collect();
        v.push(projected(TOKENS_VOLUME, sources));
    }
    if st.pod_token {
        // What the ServiceAccount admission plugin would mount, for the sidecar alone.
        let sources = vec![
            map([(
                "serviceAccountToken",
                map([
                    ("expirationSeconds", Yaml::Integer(TOKEN_SECONDS)),
                    ("path", s("token")),
                ]),
            )]),
            map([(
                "configMap",
                map([
                    ("name", s("kube-root-ca.crt")),
                    (
                        "items",
                        Yaml::Array(vec![map([("key", s("ca.crt")), ("path", s("ca.crt"))])]),
                    ),
                ]),
            )]),
        ];
        v.push(projected(POD_SA_VOLUME, sources));
    }
    v
}

/// The sidecar's mounts for them: (volume, path), read-only.
pub(super) fn mounts(st: &Settings) -> Vec<(&'static str, &'static str)> {
    let mut m = Vec::new();
    if !st.projected_audiences.is_empty() {
        m.push((TOKENS_VOLUME, TOKENS_DIR));
    }
    if st.pod_token {
        m.push((POD_SA_VOLUME, crate::config::POD_SA_DIR));
    }
    m
}

fn projected(name: &str, sources: Vec<Yaml>) -> Yaml {
    map([
        ("name", s(name)),
        (
            "projected",
            map([
                ("sources", Yaml::Array(sources)),
                ("defaultMode", Yaml::Integer(0o444)),
            ]),
        ),
    ])
}
