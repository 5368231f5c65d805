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

#[cfg(test)]
mod tests {
    use super::super::{inject, Options};
    use yaml_rust2::{Yaml, YamlLoader};

    #[test]
    fn projected_tokens_and_the_pods_own_token_are_mounted_into_the_sidecar() {
        let deploy = "kind: Deployment\nmetadata:\n  name: orders\nspec:\n  template:\n    \
            metadata:\n      labels: {app: orders}\n      annotations:\n        \
            trustgate.dev/projected-audiences: \"billing, ledger,billing\"\n        \
            trustgate.dev/kubernetes-issuer: \"true\"\n    spec:\n      containers:\n        \
            - {name: a, image: x, ports: [{containerPort: 7000}]}\n";
        let out = inject(deploy, &Options::default()).unwrap().output;
        let doc = &YamlLoader::load_from_str(&out).unwrap()[0];
        let spec = &doc["spec"]["template"]["spec"];
        let named = |list: &Yaml, name: &str| {
            list.as_vec()
                .into_iter()
                .flatten()
                .find(|v| v["name"].as_str() == Some(name))
                .cloned()
        };
        let tokens = named(&spec["volumes"], "trustgate-tokens").expect("tokens volume");
        let sources = tokens["projected"]["sources"].as_vec().unwrap();
        let auds: Vec<_> = sources
            .iter()
            .map(|s| s["serviceAccountToken"]["audience"].as_str().unwrap())
            .collect();
        assert_eq!(auds, ["billing", "ledger"], "each audience once");
        assert_eq!(
            sources[0]["serviceAccountToken"]["path"].as_str(),
            Some("billing")
        );
        let sa = named(&spec["volumes"], "trustgate-service-account").expect("pod token volume");
        assert_eq!(
            sa["projected"]["sources"][1]["configMap"]["name"].as_str(),
            Some("kube-root-ca.crt")
        );
        let sidecar = named(&spec["initContainers"], "trustgate")
            .or_else(|| named(&spec["containers"], "trustgate"))
            .expect("the sidecar");
        let mounts: Vec<_> = sidecar["volumeMounts"]
            .as_vec()
            .unwrap()
            .iter()
            .filter_map(|m| m["mountPath"].as_str())
            .collect();
        assert!(mounts.contains(&"/var/run/secrets/tokens"), "{mounts:?}");
        assert!(mounts.contains(&crate::config::POD_SA_DIR), "{mounts:?}");
        let app = named(&spec["containers"], "a").unwrap();
        assert!(
            !format!("{app:?}").contains("trustgate-tokens"),
            "the app gets neither"
        );

        let bad = deploy.replace("billing, ledger,billing", "Billing");
        assert!(inject(&bad, &Options::default()).is_err());
    }
}
