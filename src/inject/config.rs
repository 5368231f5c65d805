//! The sidecar's configuration as inject sees it: the `trustgate.toml` of a ConfigMap in
//! the same stream, read for what it needs mounted that no annotation mounts.
use std::collections::HashMap;

use yaml_rust2::Yaml;

use super::yaml::{get, text};
use super::{Settings, ANNOTATION};

/// The `trustgate.toml` of every ConfigMap in the stream, by name: what the sidecar a
/// workload names with `trustgate.dev/config` will read, when it comes in the same stream.
pub(super) fn sidecar_configs(parsed: &[Option<Yaml>]) -> HashMap<String, String> {
    let mut found = HashMap::new();
    for doc in parsed.iter().flatten() {
        let items: Vec<&Yaml> = match get(doc, "items") {
            Some(Yaml::Array(items)) => items.iter().collect(),
            _ => vec![doc],
        };
        for object in items {
            if get(object, "kind").and_then(text) != Some("ConfigMap") {
                continue;
            }
            let name = get(object, "metadata")
                .and_then(|m| get(m, "name"))
                .and_then(text);
            let toml = get(object, "data")
                .and_then(|d| get(d, "trustgate.toml"))
                .and_then(text);
            if let (Some(name), Some(toml)) = (name, toml) {
                found.insert(name.to_owned(), toml.to_owned());
            }
        }
    }
    found
}

/// What the configuration needs that the annotations do not mount: the fleet store's
/// password file without `trustgate.dev/fleet-secret` (the sidecar would not start), or
/// the Secret mounted for a configuration without `[fleet]`.
pub(super) fn config_notes(config: &str, st: &Settings) -> Vec<String> {
    let Ok(table) = config.parse::<toml::Table>() else {
        return vec![format!(
            "ConfigMap {}: trustgate.toml is not valid TOML (`trustgate check` says where)",
            st.config_map
        )];
    };
    let fleet = table.get("fleet").and_then(toml::Value::as_table);
    let password = fleet.is_some_and(|f| f.contains_key("password_file"));
    match (password, &st.fleet_secret) {
        (true, None) => vec![format!(
            "ConfigMap {} sets fleet.password_file, which no {ANNOTATION}fleet-secret mounts: \
             the sidecar will not start (name the Secret holding the store's password)",
            st.config_map
        )],
        (false, Some(secret)) if fleet.is_none() => vec![format!(
            "{ANNOTATION}fleet-secret mounts {secret}, but ConfigMap {} has no [fleet]",
            st.config_map
        )],
        _ => Vec::new(),
    }
}
