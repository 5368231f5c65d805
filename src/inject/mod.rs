//! `trustgate inject`: adds the trustgate sidecar to every workload of a Kubernetes YAML
//! stream, as `linkerd inject` and `istioctl kube-inject` do for their proxies.
//!
//! - Workloads (Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob, Pod, and
//!   the items of a `List`) get the native sidecar (an init container with
//!   `restartPolicy: Always`, Kubernetes ≥ 1.29) with a startup probe on `/readyz`, its
//!   volumes as whole-directory mounts (never `subPath`, which never sees a rotation),
//!   and `HTTP_PROXY`/`NO_PROXY` in the app containers.
//! - A Service in the same stream that selects an injected pod and targets the app's
//!   port is re-targeted to the sidecar's inbound port.
//! - Nobody around the sidecar: a NetworkPolicy per workload (`<workload>-trustgate`)
//!   lets ingress reach its pods only on the sidecar's inbound and admin ports; the
//!   sidecar learns the pod's addresses (`status.podIPs`) for its exposure check; an app
//!   can be wired to a Unix socket in a shared `emptyDir` (`trustgate.dev/app-socket`),
//!   so it listens on no TCP port at all.
//! - A workload with no port to serve (a CronJob that only calls out) gets an
//!   outbound-only sidecar: no inbound listener, all ingress denied.
//! - Every other document is copied byte for byte; a workload already injected (it has
//!   a `trustgate` container) or annotated `trustgate.dev/inject: disabled` too, so
//!   injecting twice gives what injecting once did.
//! - Per-workload settings come from `trustgate.dev/*` annotations on the pod template
//!   (or, second, on the workload).
//! - What cannot be injected safely is refused with the document and the reason:
//!   `hostNetwork` (the sidecar's ports would be the node's), a container already on a
//!   sidecar port, an app port that cannot be told, names already taken.
//!
//! The sidecar's configuration file comes from a ConfigMap (policy: allow rules, public
//! paths, routes); the ports, paths and identity inject wires are set by environment
//! variables (`TRUSTGATE_<SECTION>_<KEY>`), which override the file, so the mounts and
//! ports always agree with what inject wrote.
mod config;
mod pod;
mod policy;
mod service;
mod tokens;
mod yaml;

use yaml_rust2::Yaml;

use self::config::{config_notes, sidecar_configs};
use self::pod::{has_container, inject_pod, int_node, pairs, Injected};
use self::policy::{existing_policies, network_policy};
use self::service::retarget_service;
use self::yaml::{entry, get, get_mut, int, map, s, text};

/// The annotations' prefix.
pub const ANNOTATION: &str = "trustgate.dev/";

/// The sidecar container's name (also how an injected workload is recognised).
pub const SIDECAR: &str = "trustgate";

/// The inbound port's name on the sidecar, which re-targeted Services point at.
pub const INBOUND_PORT_NAME: &str = "trustgate-in";

/// Defaults for every workload, from the command line; annotations override them.
#[derive(Clone, Debug)]
pub struct Options {
    pub image: String,
    pub inbound_port: u16,
    pub outbound_port: u16,
    pub admin_port: u16,
    /// `--authz`: beside an Envoy or Istio sidecar, as its external authorizer on this
    /// loopback port, instead of in front of the app.
    pub authz_port: Option<u16>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            image: format!("ghcr.io/example/trustgate:{}", env!("CARGO_PKG_VERSION")),
            inbound_port: 8443,
            outbound_port: 15001,
            admin_port: 15000,
            authz_port: None,
        }
    }
}

/// What inject did: the output stream and one line per workload or Service touched.
#[derive(Debug)]
pub struct Injection {
    pub output: String,
    pub report: Vec<String>,
}

/// Why a stream cannot be injected: the document (1-based), what it is, and the reason.
#[derive(Debug, thiserror::Error)]
#[error("document {doc}{what}: {reason}")]
pub struct InjectError {
    pub doc: usize,
    pub what: String,
    pub reason: String,
}

/// A pod inject added the sidecar to, for the Services that select it.
struct InjectedPod {
    namespace: Option<String>,
    labels: Vec<(String, String)>,
    app_port: Option<i64>,
    app_port_names: Vec<String>,
}

const WORKLOADS: [&str; 7] = [
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "ReplicaSet",
    "Job",
    "CronJob",
    "Pod",
];

/// Injects every workload of `input` (a YAML stream of one or more documents).
pub fn inject(input: &str, opts: &Options) -> Result<Injection, InjectError> {
    let docs = yaml::split(input);
    let mut parsed = Vec::with_capacity(docs.len());
    for (i, d) in docs.iter().enumerate() {
        let doc = yaml::load(d.body).map_err(|reason| InjectError {
            doc: i + 1,
            what: String::new(),
            reason: format!("not valid YAML: {reason}"),
        })?;
        parsed.push(doc);
    }

    let mut changed = vec![false; docs.len()];
    let mut pods = Vec::new();
    let mut report = Vec::new();
    // NetworkPolicies to add, by document: after it, or into its items for a List.
    let mut policies: Vec<Vec<Yaml>> = vec![Vec::new(); docs.len()];
    let existing = existing_policies(&parsed);
    let configs = sidecar_configs(&parsed);
    for (i, doc) in parsed.iter_mut().enumerate() {
        let Some(doc) = doc else { continue };
        for object in objects(doc) {
            let mut policy = None;
            let done = inject_object(object, opts, &configs, &mut pods, &mut policy).map_err(
                |reason| InjectError {
                    doc: i + 1,
                    what: describe(object),
                    reason,
                },
            )?;
            if let Some(line) = done {
                changed[i] |= line.0;
                report.push(line.1);
            }
            if let Some(policy) = policy {
                let key = (namespace_of(&policy), name_of(&policy));
                if existing.contains(&key) {
                    report.push(format!(
                        "NetworkPolicy/{}: already in the stream, kept as it is",
                        key.1
                    ));
                } else {
                    report.push(format!("NetworkPolicy/{}: added", key.1));
                    policies[i].push(policy);
                }
            }
        }
    }
    for (i, doc) in parsed.iter_mut().enumerate() {
        let Some(doc) = doc else { continue };
        if policies[i].is_empty() || get(doc, "kind").and_then(text) != Some("List") {
            continue;
        }
        if let Some(Yaml::Array(items)) = get_mut(doc, "items") {
            items.append(&mut policies[i]);
        }
    }
    for (i, doc) in parsed.iter_mut().enumerate() {
        let Some(doc) = doc else { continue };
        for object in objects(doc) {
            if let Some(line) = retarget_service(object, &pods) {
                changed[i] = true;
                report.push(line);
            }
        }
    }

    let output = write_stream(input, &docs, &parsed, &changed, &policies)?;
    Ok(Injection { output, report })
}

/// The stream again: untouched documents verbatim, changed ones re-emitted under their
/// leading comments, each followed by the NetworkPolicies it brought.
fn write_stream(
    input: &str,
    docs: &[yaml::Document],
    parsed: &[Option<Yaml>],
    changed: &[bool],
    policies: &[Vec<Yaml>],
) -> Result<String, InjectError> {
    let mut output = String::with_capacity(input.len() * 2);
    for (i, d) in docs.iter().enumerate() {
        output.push_str(d.separator);
        match (&parsed[i], changed[i]) {
            (Some(doc), true) => {
                output.push_str(leading_comments(d.body));
                let text = yaml::emit(doc).map_err(|reason| InjectError {
                    doc: i + 1,
                    what: describe(doc),
                    reason: format!("cannot be written back: {reason}"),
                })?;
                output.push_str(&text);
            }
            _ => output.push_str(d.body),
        }
        for policy in &policies[i] {
            let text = yaml::emit(policy).map_err(|reason| InjectError {
                doc: i + 1,
                what: describe(policy),
                reason: format!("cannot be written: {reason}"),
            })?;
            if !output.is_empty() && !output.ends_with('\n') {
                output.push('\n');
            }
            output.push_str("---\n");
            output.push_str(&text);
        }
    }
    Ok(output)
}

fn name_of(object: &Yaml) -> String {
    get(object, "metadata")
        .and_then(|m| get(m, "name"))
        .and_then(text)
        .unwrap_or("")
        .to_owned()
}

fn namespace_of(object: &Yaml) -> Option<String> {
    get(object, "metadata")
        .and_then(|m| get(m, "namespace"))
        .and_then(text)
        .map(str::to_owned)
}

/// The Kubernetes objects of a document: itself, or the items of a `List`.
fn objects(doc: &mut Yaml) -> Vec<&mut Yaml> {
    let is_list = get(doc, "kind").and_then(text) == Some("List");
    if is_list {
        if let Some(Yaml::Array(items)) = get_mut(doc, "items") {
            return items.iter_mut().collect();
        }
        return Vec::new();
    }
    vec![doc]
}

fn describe(object: &Yaml) -> String {
    let kind = get(object, "kind").and_then(text).unwrap_or("?");
    let name = get(object, "metadata")
        .and_then(|m| get(m, "name"))
        .and_then(text)
        .unwrap_or("?");
    format!(" ({kind} {name})")
}

/// The comment lines at the top of a document, kept when it is rewritten.
fn leading_comments(body: &str) -> &str {
    let mut end = 0;
    for line in body.split_inclusive('\n') {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            end += line.len();
        } else {
            break;
        }
    }
    &body[..end]
}

/// The path from a workload to its pod template (empty for a Pod: the object is one).
fn template_path(kind: &str) -> &'static [&'static str] {
    match kind {
        "Pod" => &[],
        "CronJob" => &["spec", "jobTemplate", "spec", "template"],
        _ => &["spec", "template"],
    }
}

fn walk_mut<'a>(mut y: &'a mut Yaml, path: &[&str]) -> Option<&'a mut Yaml> {
    for key in path {
        y = get_mut(y, key)?;
    }
    Some(y)
}

/// The settings of one workload: annotations over the command line's defaults.
struct Settings {
    identity: String,
    app_port: Option<i64>,
    inbound_port: i64,
    outbound_port: i64,
    admin_port: i64,
    image: String,
    config_map: String,
    identity_secret: String,
    authorized_keys: Source,
    tls_secret: Option<String>,
    fetch_ca: Option<Source>,
    /// `trustgate.dev/fleet-secret`: the fleet store's password (`password`), for
    /// `fleet.password_file` ([fleet] itself is in the ConfigMap).
    fleet_secret: Option<String>,
    /// `trustgate.dev/app-socket`: the app listens on this Unix socket path.
    app_socket: Option<String>,
    network_policy: bool,
    /// `trustgate.dev/projected-audiences`: projected tokens for outbound `token_file`s.
    projected_audiences: Vec<String>,
    /// `trustgate.dev/kubernetes-issuer`: this pod's token and CA in the sidecar.
    pod_token: bool,
    /// `--authz` / `trustgate.dev/authz-port`: Envoy's authorizer on this port.
    authz_port: Option<i64>,
}

/// What the sidecar serves in front of the app.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Serve {
    /// The app's TCP port (on loopback, behind the inbound listener).
    Port(i64),
    /// The app's Unix socket, in the `trustgate-app-socket` emptyDir.
    Socket(String),
    /// Nothing: no port to serve, no inbound listener.
    OutboundOnly,
    /// Envoy's external authorizer on this loopback port: Envoy (Istio's) serves the app.
    Authz(i64),
}

/// The volume an app socket lives in, shared by the app containers and the sidecar.
const SOCKET_VOLUME: &str = "trustgate-app-socket";

enum Source {
    Secret(String),
    ConfigMap(String),
}

fn annotation<'a>(
    pod_meta: Option<&'a Yaml>,
    meta: Option<&'a Yaml>,
    key: &str,
) -> Option<&'a str> {
    let full = format!("{ANNOTATION}{key}");
    [pod_meta, meta].into_iter().flatten().find_map(|m| {
        get(m, "annotations")
            .and_then(|a| get(a, &full))
            .and_then(text)
    })
}

/// Injects one object if it is a workload. `Ok(None)`: not a workload.
/// `Ok(Some((changed, line)))`: what happened to it.
fn inject_object(
    object: &mut Yaml,
    opts: &Options,
    configs: &std::collections::HashMap<String, String>,
    pods: &mut Vec<InjectedPod>,
    policy: &mut Option<Yaml>,
) -> Result<Option<(bool, String)>, String> {
    let Some(kind) = get(object, "kind").and_then(text).map(str::to_owned) else {
        return Ok(None);
    };
    if !WORKLOADS.contains(&kind.as_str()) {
        return Ok(None);
    }
    let path = template_path(&kind);
    let meta = get(object, "metadata").cloned();
    let name = meta
        .as_ref()
        .and_then(|m| get(m, "name"))
        .and_then(text)
        .unwrap_or("")
        .to_owned();
    let namespace = meta
        .as_ref()
        .and_then(|m| get(m, "namespace"))
        .and_then(text)
        .map(str::to_owned);
    let Some(template) = walk_mut(object, path) else {
        return Err(format!("has no pod template at {}", path.join(".")));
    };
    let pod_meta = get(template, "metadata").cloned();
    let ann = |key: &str| annotation(pod_meta.as_ref(), meta.as_ref(), key).map(str::to_owned);

    let what = format!("{kind}/{name}");
    if !wanted(&ann)? {
        return Ok(Some((false, format!("{what}: skipped (annotation)"))));
    }
    let Some(spec) = get_mut(template, "spec") else {
        return Err("has no pod spec".into());
    };
    if has_container(spec, SIDECAR) {
        return Ok(Some((false, format!("{what}: already injected"))));
    }

    let settings = settings(&ann, opts, &name)?;
    let mut labels = pod_meta
        .as_ref()
        .and_then(|m| get(m, "labels"))
        .map(pairs)
        .unwrap_or_default();
    let mut injected = inject_pod(spec, &settings)?;
    if let Some(text) = configs.get(&settings.config_map) {
        injected.notes.extend(config_notes(text, &settings));
    }
    let line = report_line(&what, &settings, &injected);
    // Behind Envoy the mesh decides who reaches the pod: no policy of inject's.
    if settings.network_policy && !matches!(injected.serve, Serve::Authz(_)) {
        *policy = Some(policy_for(
            template,
            &name,
            namespace.as_deref(),
            &mut labels,
            &settings,
            &injected.serve,
        ));
    }
    let app_port = match injected.serve {
        Serve::Port(p) => Some(p),
        _ => None,
    };
    if matches!(injected.serve, Serve::Port(_) | Serve::Socket(_)) {
        pods.push(InjectedPod {
            namespace,
            labels,
            app_port: app_port.or(injected.declared_port),
            app_port_names: injected.port_names,
        });
    }
    Ok(Some((true, line)))
}

/// `inject`: enabled (the default) or disabled.
fn wanted(ann: &impl Fn(&str) -> Option<String>) -> Result<bool, String> {
    match ann("inject").as_deref() {
        None | Some("enabled" | "true") => Ok(true),
        Some("disabled" | "false") => Ok(false),
        Some(other) => Err(format!(
            "{ANNOTATION}inject is \"{other}\"; use enabled or disabled"
        )),
    }
}

/// The workload's NetworkPolicy; a pod template without labels gets one
/// (`trustgate.dev/workload`), since a selector needs a label: an empty one would select
/// every pod around.
fn policy_for(
    template: &mut Yaml,
    name: &str,
    namespace: Option<&str>,
    labels: &mut Vec<(String, String)>,
    settings: &Settings,
    serve: &Serve,
) -> Yaml {
    if labels.is_empty() {
        labels.push((format!("{ANNOTATION}workload"), name.to_owned()));
        let meta = entry(template, "metadata", Yaml::Hash(Default::default()));
        let l = entry(meta, "labels", Yaml::Hash(Default::default()));
        if let Yaml::Hash(h) = l {
            h.insert(s(&labels[0].0), s(&labels[0].1));
        }
    }
    network_policy(name, namespace, labels, settings, serve)
}

/// The workload's settings: its annotations (`ann`) over the command line's defaults.
fn settings(
    ann: &impl Fn(&str) -> Option<String>,
    opts: &Options,
    name: &str,
) -> Result<Settings, String> {
    let identity = ann("identity").unwrap_or_else(|| name.to_owned());
    if !crate::keys::is_valid_identity(&identity) {
        return Err(format!(
            "identity \"{identity}\" is not a valid identity name (set {ANNOTATION}identity)"
        ));
    }
    let port = |key: &str, default: u16| {
        Ok::<_, String>(port_annotation(ann, key)?.unwrap_or(i64::from(default)))
    };
    let authorized_keys = one_source(ann, "authorized-keys")?
        .unwrap_or_else(|| Source::Secret("trustgate-authorized-keys".into()));
    Ok(Settings {
        app_port: port_annotation(ann, "app-port")?,
        inbound_port: port("inbound-port", opts.inbound_port)?,
        outbound_port: port("outbound-port", opts.outbound_port)?,
        admin_port: port("admin-port", opts.admin_port)?,
        image: ann("image").unwrap_or_else(|| opts.image.clone()),
        config_map: ann("config").unwrap_or_else(|| "trustgate-config".into()),
        identity_secret: ann("identity-secret").unwrap_or_else(|| "trustgate-identity".into()),
        authorized_keys,
        tls_secret: ann("tls-secret"),
        fetch_ca: one_source(ann, "fetch-ca")?,
        fleet_secret: ann("fleet-secret"),
        app_socket: app_socket(ann)?,
        network_policy: match ann("network-policy").as_deref() {
            None | Some("true" | "enabled") => true,
            Some("false" | "disabled") => false,
            Some(other) => {
                return Err(format!(
                    "{ANNOTATION}network-policy is \"{other}\"; use true or false"
                ))
            }
        },
        projected_audiences: tokens::projected_audiences(ann)?,
        pod_token: tokens::pod_token(ann)?,
        authz_port: match ann("authz").as_deref() {
            Some("disabled" | "false") => None,
            on => port_annotation(ann, "authz-port")?
                .or(opts.authz_port.map(i64::from))
                .or(on.map(|_| 9191)),
        },
        identity,
    })
}

/// A port annotation, if set.
fn port_annotation(
    ann: &impl Fn(&str) -> Option<String>,
    key: &str,
) -> Result<Option<i64>, String> {
    ann(key)
        .map(|v| {
            v.parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .map(i64::from)
                .ok_or_else(|| format!("{ANNOTATION}{key} is \"{v}\", not a port number"))
        })
        .transpose()
}

/// `<what>-secret` or `<what>-configmap`, at most one of them.
fn one_source(ann: &impl Fn(&str) -> Option<String>, what: &str) -> Result<Option<Source>, String> {
    match (
        ann(&format!("{what}-secret")),
        ann(&format!("{what}-configmap")),
    ) {
        (Some(_), Some(_)) => Err(format!(
            "{ANNOTATION}{what}-secret and -configmap both set; choose one"
        )),
        (Some(sec), None) => Ok(Some(Source::Secret(sec))),
        (None, Some(c)) => Ok(Some(Source::ConfigMap(c))),
        (None, None) => Ok(None),
    }
}

/// `app-socket`: an absolute socket path in a directory of its own.
fn app_socket(ann: &impl Fn(&str) -> Option<String>) -> Result<Option<String>, String> {
    let Some(p) = ann("app-socket") else {
        return Ok(None);
    };
    let dir = p.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
    if !p.starts_with('/') || dir.is_empty() || p.ends_with('/') || p.len() > 107 {
        return Err(format!(
            "{ANNOTATION}app-socket is \"{p}\", not an absolute socket path in a \
             directory of its own (e.g. /run/app/app.sock)"
        ));
    }
    Ok(Some(p))
}

/// The report's line for an injected workload, with its notes.
fn report_line(what: &str, settings: &Settings, injected: &Injected) -> String {
    let mut line = match &injected.serve {
        Serve::Port(port) => format!(
            "{what}: injected (identity {}, app port {port} behind inbound {})",
            settings.identity, settings.inbound_port
        ),
        Serve::Socket(path) => format!(
            "{what}: injected (identity {}, app socket {path} behind inbound {})",
            settings.identity, settings.inbound_port
        ),
        Serve::Authz(port) => format!(
            "{what}: injected as Envoy's external authorizer (identity {}, 127.0.0.1:{port}); \
             point the mesh's extension provider and a CUSTOM AuthorizationPolicy at it \
             (deploy/kubernetes/authz/istio.yaml)",
            settings.identity
        ),
        Serve::OutboundOnly => format!(
            "{what}: injected outbound-only (identity {}): it declares no port to serve, so \
             the sidecar has no inbound listener{}",
            settings.identity,
            if settings.network_policy {
                " and its NetworkPolicy denies all ingress"
            } else {
                ""
            }
        ),
    };
    for note in &injected.notes {
        line.push_str(&format!("\n  note: {note}"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEPLOY: &str = "kind: Deployment\nmetadata:\n  name: w\n  annotations:\n    \
        trustgate.dev/identity: from-workload\n    trustgate.dev/app-port: \"7000\"\nspec:\n  \
        template:\n    metadata:\n      labels: {app: w}\n      annotations:\n        \
        trustgate.dev/identity: from-template\n    spec:\n      containers:\n        \
        - {name: a, image: x, ports: [{name: web, containerPort: 7000}]}\n";

    #[test]
    fn template_annotations_win_over_the_workloads() {
        let done = inject(DEPLOY, &Options::default()).unwrap();
        assert!(
            done.output.contains("value: from-template\n"),
            "{}",
            done.output
        );
        assert!(done.output.contains("value: \"http://127.0.0.1:7000\""));
        assert!(done.report[0].contains("identity from-template, app port 7000"));
    }

    #[test]
    fn services_are_retargeted_by_port_number_or_app_port_name_only() {
        let svc = |ns: &str, target: &str| {
            format!(
                "---\nkind: Service\nmetadata: {{name: s{ns}}}\nspec:\n  selector: {{app: w}}\n  \
                 ports:\n    - {{port: 80, targetPort: {target}}}\n"
            )
        };
        for (target, moved) in [
            ("7000", true),
            ("web", true),
            ("8000", false),
            ("other", false),
        ] {
            let input = format!("{DEPLOY}{}", svc("", target));
            let done = inject(&input, &Options::default()).unwrap();
            let service = done.output.split("kind: Service").nth(1).unwrap();
            assert_eq!(
                service.contains("targetPort: trustgate-in"),
                moved,
                "{target}: {service}"
            );
            if !moved {
                // Not ours to touch: the document is copied as it was.
                assert!(done.output.ends_with(&svc("", target)), "{}", done.output);
            }
        }
        // A Service that selects nothing, or other labels, is left alone.
        let input = format!(
            "{DEPLOY}---\nkind: Service\nmetadata: {{name: s}}\nspec:\n  selector: {{app: other}}\n  \
             ports: [{{port: 7000}}]\n"
        );
        let done = inject(&input, &Options::default()).unwrap();
        assert!(done.output.ends_with("ports: [{port: 7000}]\n"));
    }

    #[test]
    fn the_sidecar_ports_come_from_the_options() {
        let opts = Options {
            inbound_port: 9443,
            outbound_port: 9001,
            admin_port: 9000,
            image: "img:1".into(),
            authz_port: None,
        };
        let done = inject(DEPLOY, &opts).unwrap();
        for want in [
            "containerPort: 9443",
            "containerPort: 9000",
            "value: \"127.0.0.1:9001\"",
            "value: \"http://127.0.0.1:9001\"",
            "image: \"img:1\"",
        ] {
            assert!(done.output.contains(want), "{want}: {}", done.output);
        }
    }
}
