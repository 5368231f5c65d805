//! Services that select an injected pod, re-targeted at the sidecar's inbound port.
use super::*;

/// Points a Service that selects an injected pod at the sidecar's inbound port, for each
/// of its ports that targets the app's port (by number or by the app's port name).
pub(super) fn retarget_service(object: &mut Yaml, pods: &[InjectedPod]) -> Option<String> {
    if get(object, "kind").and_then(text) != Some("Service") {
        return None;
    }
    let namespace = get(object, "metadata")
        .and_then(|m| get(m, "namespace"))
        .and_then(text)
        .map(str::to_owned);
    let name = get(object, "metadata")
        .and_then(|m| get(m, "name"))
        .and_then(text)
        .unwrap_or("")
        .to_owned();
    let selector = get(object, "spec")
        .and_then(|sp| get(sp, "selector"))
        .map(pairs)
        .unwrap_or_default();
    if selector.is_empty() {
        return None;
    }
    let pod = pods
        .iter()
        .find(|p| p.namespace == namespace && selector.iter().all(|kv| p.labels.contains(kv)))?;
    let Some(Yaml::Array(ports)) = get_mut(object, "spec").and_then(|sp| get_mut(sp, "ports"))
    else {
        return None;
    };
    let mut moved = Vec::new();
    for port in ports.iter_mut() {
        let target = get(port, "targetPort")
            .or_else(|| get(port, "port"))
            .cloned();
        let Some(target) = target else { continue };
        let hits = match int(&target) {
            Some(n) => Some(n) == pod.app_port,
            None => text(&target).is_some_and(|t| pod.app_port_names.iter().any(|n| n == t)),
        };
        if hits {
            let label = get(port, "port").and_then(int).unwrap_or_default();
            if let Yaml::Hash(h) = port {
                let key = h
                    .keys()
                    .find(|k| text(k) == Some("targetPort"))
                    .cloned()
                    .unwrap_or_else(|| s("targetPort"));
                h.insert(key, s(INBOUND_PORT_NAME));
            }
            moved.push(label.to_string());
        }
    }
    (!moved.is_empty()).then(|| {
        format!(
            "Service/{name}: port {} now targets {INBOUND_PORT_NAME} (was the app's {})",
            moved.join(", "),
            pod.app_port.unwrap_or_default()
        )
    })
}
