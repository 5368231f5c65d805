//! The NetworkPolicy inject adds per workload, and the ones a stream already holds.
use super::*;

/// The NetworkPolicies a stream already holds, by (namespace, name): inject adds none
/// twice (an injected workload is skipped anyway; this covers a policy written by hand).
pub(super) fn existing_policies(parsed: &[Option<Yaml>]) -> Vec<(Option<String>, String)> {
    let mut found = Vec::new();
    for doc in parsed.iter().flatten() {
        let items: Vec<&Yaml> = match get(doc, "items") {
            Some(Yaml::Array(items)) if get(doc, "kind").and_then(text) == Some("List") => {
                items.iter().collect()
            }
            _ => vec![doc],
        };
        for object in items {
            if get(object, "kind").and_then(text) == Some("NetworkPolicy") {
                found.push((namespace_of(object), name_of(object)));
            }
        }
    }
    found
}

/// `<workload>-trustgate`: ingress to the pods only on the sidecar's inbound and admin
/// ports (none at all for an outbound-only workload). Egress is left alone: the app's
/// calls go out through its own sidecar, to wherever they went before.
pub(super) fn network_policy(
    workload: &str,
    namespace: Option<&str>,
    labels: &[(String, String)],
    st: &Settings,
    serve: &Serve,
) -> Yaml {
    let mut meta = vec![("name", s(&format!("{workload}-trustgate")))];
    if let Some(ns) = namespace {
        meta.push(("namespace", s(ns)));
    }
    meta.push((
        "labels",
        map([("app.kubernetes.io/managed-by", s("trustgate-inject"))]),
    ));
    let selector = Yaml::Hash(labels.iter().map(|(k, v)| (s(k), s(v))).collect());
    let port = |p: i64| map([("protocol", s("TCP")), ("port", int_node(p))]);
    let mut spec = vec![
        ("podSelector", map([("matchLabels", selector)])),
        ("policyTypes", Yaml::Array(vec![s("Ingress")])),
    ];
    if *serve != Serve::OutboundOnly {
        spec.push((
            "ingress",
            Yaml::Array(vec![map([(
                "ports",
                Yaml::Array(vec![port(st.inbound_port), port(st.admin_port)]),
            )])]),
        ));
    }
    let mut doc = yaml_rust2::yaml::Hash::new();
    doc.insert(s("apiVersion"), s("networking.k8s.io/v1"));
    doc.insert(s("kind"), s("NetworkPolicy"));
    doc.insert(
        s("metadata"),
        Yaml::Hash(meta.into_iter().map(|(k, v)| (s(k), v)).collect()),
    );
    doc.insert(
        s("spec"),
        Yaml::Hash(spec.into_iter().map(|(k, v)| (s(k), v)).collect()),
    );
    Yaml::Hash(doc)
}
