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
mod yaml;

use yaml_rust2::Yaml;

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
}

impl Default for Options {
    fn default() -> Self {
        Options {
            image: format!("ghcr.io/example/trustgate:{}", env!("CARGO_PKG_VERSION")),
            inbound_port: 8443,
            outbound_port: 15001,
            admin_port: 15000,
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
    for (i, doc) in parsed.iter_mut().enumerate() {
        let Some(doc) = doc else { continue };
        for object in objects(doc) {
            let mut policy = None;
            let done = inject_object(object, opts, &mut pods, &mut policy).map_err(|reason| {
                InjectError {
                    doc: i + 1,
                    what: describe(object),
                    reason,
                }
            })?;
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
    Ok(Injection { output, report })
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

/// The NetworkPolicies a stream already holds, by (namespace, name): inject adds none
/// twice (an injected workload is skipped anyway; this covers a policy written by hand).
fn existing_policies(parsed: &[Option<Yaml>]) -> Vec<(Option<String>, String)> {
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
    /// `trustgate.dev/app-socket`: the app listens on this Unix socket path.
    app_socket: Option<String>,
    network_policy: bool,
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
    match ann("inject").as_deref() {
        None | Some("enabled" | "true") => {}
        Some("disabled" | "false") => {
            return Ok(Some((false, format!("{what}: skipped (annotation)"))))
        }
        Some(other) => {
            return Err(format!(
                "{ANNOTATION}inject is \"{other}\"; use enabled or disabled"
            ))
        }
    }
    let Some(spec) = get_mut(template, "spec") else {
        return Err("has no pod spec".into());
    };
    if has_container(spec, SIDECAR) {
        return Ok(Some((false, format!("{what}: already injected"))));
    }

    let port = |key: &str, default: u16| -> Result<i64, String> {
        match ann(key) {
            None => Ok(i64::from(default)),
            Some(v) => v
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .map(i64::from)
                .ok_or_else(|| format!("{ANNOTATION}{key} is \"{v}\", not a port number")),
        }
    };
    let identity = ann("identity").unwrap_or_else(|| name.clone());
    if !crate::keys::is_valid_identity(&identity) {
        return Err(format!(
            "identity \"{identity}\" is not a valid identity name (set {ANNOTATION}identity)"
        ));
    }
    let settings = Settings {
        app_port: ann("app-port")
            .map(|v| {
                v.parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .map(i64::from)
                    .ok_or_else(|| format!("{ANNOTATION}app-port is \"{v}\", not a port number"))
            })
            .transpose()?,
        inbound_port: port("inbound-port", opts.inbound_port)?,
        outbound_port: port("outbound-port", opts.outbound_port)?,
        admin_port: port("admin-port", opts.admin_port)?,
        image: ann("image").unwrap_or_else(|| opts.image.clone()),
        config_map: ann("config").unwrap_or_else(|| "trustgate-config".into()),
        identity_secret: ann("identity-secret").unwrap_or_else(|| "trustgate-identity".into()),
        authorized_keys: match (
            ann("authorized-keys-secret"),
            ann("authorized-keys-configmap"),
        ) {
            (Some(_), Some(_)) => {
                return Err(format!(
                    "{ANNOTATION}authorized-keys-secret and -configmap both set; choose one"
                ))
            }
            (_, Some(c)) => Source::ConfigMap(c),
            (Some(sec), None) => Source::Secret(sec),
            (None, None) => Source::Secret("trustgate-authorized-keys".into()),
        },
        tls_secret: ann("tls-secret"),
        fetch_ca: match (ann("fetch-ca-secret"), ann("fetch-ca-configmap")) {
            (Some(_), Some(_)) => {
                return Err(format!(
                    "{ANNOTATION}fetch-ca-secret and -configmap both set; choose one"
                ))
            }
            (Some(sec), None) => Some(Source::Secret(sec)),
            (None, Some(c)) => Some(Source::ConfigMap(c)),
            (None, None) => None,
        },
        app_socket: match ann("app-socket") {
            None => None,
            Some(p) => {
                let dir = p.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
                if !p.starts_with('/') || dir.is_empty() || p.ends_with('/') || p.len() > 107 {
                    return Err(format!(
                        "{ANNOTATION}app-socket is \"{p}\", not an absolute socket path in a \
                         directory of its own (e.g. /run/app/app.sock)"
                    ));
                }
                Some(p)
            }
        },
        network_policy: match ann("network-policy").as_deref() {
            None | Some("true" | "enabled") => true,
            Some("false" | "disabled") => false,
            Some(other) => {
                return Err(format!(
                    "{ANNOTATION}network-policy is \"{other}\"; use true or false"
                ))
            }
        },
        identity,
    };
    let mut labels = pod_meta
        .as_ref()
        .and_then(|m| get(m, "labels"))
        .map(pairs)
        .unwrap_or_default();
    let injected = inject_pod(spec, &settings)?;
    let mut line = match &injected.serve {
        Serve::Port(port) => format!(
            "{what}: injected (identity {}, app port {port} behind inbound {})",
            settings.identity, settings.inbound_port
        ),
        Serve::Socket(path) => format!(
            "{what}: injected (identity {}, app socket {path} behind inbound {})",
            settings.identity, settings.inbound_port
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
    for note in injected.notes {
        line.push_str(&format!("\n  note: {note}"));
    }
    if settings.network_policy {
        if labels.is_empty() {
            // A selector needs a label: an empty one would select every pod around.
            labels.push((format!("{ANNOTATION}workload"), name.clone()));
            let meta = entry(template, "metadata", Yaml::Hash(Default::default()));
            let l = entry(meta, "labels", Yaml::Hash(Default::default()));
            if let Yaml::Hash(h) = l {
                h.insert(s(&labels[0].0), s(&labels[0].1));
            }
        }
        *policy = Some(network_policy(
            &name,
            namespace.as_deref(),
            &labels,
            &settings,
            &injected.serve,
        ));
    }
    let app_port = match injected.serve {
        Serve::Port(p) => Some(p),
        _ => None,
    };
    if injected.serve != Serve::OutboundOnly {
        pods.push(InjectedPod {
            namespace,
            labels,
            app_port: app_port.or(injected.declared_port),
            app_port_names: injected.port_names,
        });
    }
    Ok(Some((true, line)))
}

/// `<workload>-trustgate`: ingress to the pods only on the sidecar's inbound and admin
/// ports (none at all for an outbound-only workload). Egress is left alone: the app's
/// calls go out through its own sidecar, to wherever they went before.
fn network_policy(
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

fn pairs(y: &Yaml) -> Vec<(String, String)> {
    match y {
        Yaml::Hash(h) => h
            .iter()
            .filter_map(|(k, v)| Some((text(k)?.to_owned(), text(v)?.to_owned())))
            .collect(),
        _ => Vec::new(),
    }
}

fn containers(spec: &Yaml, key: &str) -> Vec<Yaml> {
    match get(spec, key) {
        Some(Yaml::Array(a)) => a.clone(),
        _ => Vec::new(),
    }
}

fn has_container(spec: &Yaml, name: &str) -> bool {
    ["containers", "initContainers"]
        .iter()
        .flat_map(|k| containers(spec, k))
        .any(|c| get(&c, "name").and_then(text) == Some(name))
}

/// What inject_pod did.
struct Injected {
    serve: Serve,
    /// The app's declared port, for Services (with a socket too: a Service may name it).
    declared_port: Option<i64>,
    /// The names the app containers give that port.
    port_names: Vec<String>,
    notes: Vec<String>,
}

/// Adds the sidecar to a pod spec.
fn inject_pod(spec: &mut Yaml, st: &Settings) -> Result<Injected, String> {
    if get(spec, "hostNetwork").and_then(text) == Some("true") {
        return Err(
            "uses hostNetwork: the sidecar's ports would be the node's and its loopback \
             shared with every host-network pod; inject it by hand if you must"
                .into(),
        );
    }
    let sidecar_ports = [st.inbound_port, st.outbound_port, st.admin_port];
    if sidecar_ports[0] == sidecar_ports[1]
        || sidecar_ports[0] == sidecar_ports[2]
        || sidecar_ports[1] == sidecar_ports[2]
    {
        return Err(format!(
            "the sidecar's ports must differ (inbound {}, outbound {}, admin {})",
            st.inbound_port, st.outbound_port, st.admin_port
        ));
    }
    let app = containers(spec, "containers");
    if app.is_empty() {
        return Err("has no containers".into());
    }
    let mut declared = Vec::new(); // (container, port, name)
    for key in ["containers", "initContainers"] {
        for c in containers(spec, key) {
            let cname = get(&c, "name").and_then(text).unwrap_or("?").to_owned();
            if let Some(Yaml::Array(ports)) = get(&c, "ports") {
                for p in ports {
                    let Some(n) = get(p, "containerPort").and_then(int) else {
                        continue;
                    };
                    if sidecar_ports.contains(&n) {
                        return Err(format!(
                            "container {cname} already uses port {n}, one of the sidecar's \
                             (inbound {}, outbound {}, admin {}); choose others with the \
                             {ANNOTATION}inbound-port / outbound-port / admin-port annotations",
                            st.inbound_port, st.outbound_port, st.admin_port
                        ));
                    }
                    let pname = get(p, "name").and_then(text).map(str::to_owned);
                    if key == "containers" {
                        declared.push((cname.clone(), n, pname));
                    }
                }
            }
        }
    }
    let declared_port = st.app_port.or(declared.first().map(|d| d.1));
    let serve = match (&st.app_socket, declared_port) {
        (Some(path), _) => Serve::Socket(path.clone()),
        (None, Some(port)) => Serve::Port(port),
        (None, None) => Serve::OutboundOnly,
    };
    if let Some(port) = declared_port.filter(|p| sidecar_ports.contains(p)) {
        return Err(format!(
            "the app port {port} is one of the sidecar's ports; choose others with the \
             {ANNOTATION}inbound-port / outbound-port / admin-port annotations"
        ));
    }
    let port_names = declared
        .iter()
        .filter(|d| Some(d.1) == declared_port)
        .filter_map(|d| d.2.clone())
        .collect();

    let volumes = sidecar_volumes(spec, st, &serve);
    let existing: Vec<String> = containers(spec, "volumes")
        .iter()
        .filter_map(|v| get(v, "name").and_then(text).map(str::to_owned))
        .collect();
    for v in &volumes {
        let n = get(v, "name").and_then(text).unwrap_or_default();
        if existing.iter().any(|e| e == n) {
            return Err(format!("a volume named {n} already exists"));
        }
    }
    for c in &app {
        if get(c, "name").and_then(text) == Some(SIDECAR) {
            return Err(format!("a container is already named {SIDECAR}"));
        }
    }

    // The app containers: outbound calls through the sidecar; the socket's volume.
    let proxy = format!("http://127.0.0.1:{}", st.outbound_port);
    let mut notes = Vec::new();
    if let Some(Yaml::Array(app)) = get_mut(spec, "containers") {
        for c in app.iter_mut() {
            let cname = get(c, "name").and_then(text).unwrap_or("?").to_owned();
            if let Serve::Socket(path) = &serve {
                if let Yaml::Array(mounts) = entry(c, "volumeMounts", Yaml::Array(Vec::new())) {
                    mounts.push(map([
                        ("name", s(SOCKET_VOLUME)),
                        ("mountPath", s(socket_dir(path))),
                    ]));
                }
            }
            let env = entry(c, "env", Yaml::Array(Vec::new()));
            if let Yaml::Array(env) = env {
                // Each variable pair is set both ways (curl reads only the lower-case
                // one, others the upper-case one); a pair the app sets itself (either
                // spelling) is its own decision: kept, and said.
                for (upper, lower, ours) in [
                    ("HTTP_PROXY", "http_proxy", proxy.as_str()),
                    ("NO_PROXY", "no_proxy", "127.0.0.1,localhost"),
                ] {
                    let own: Vec<(String, String)> = env
                        .iter()
                        .filter_map(|e| {
                            let n = get(e, "name").and_then(text)?;
                            (n == upper || n == lower).then(|| {
                                let v = get(e, "value").and_then(text).unwrap_or("");
                                (n.to_owned(), v.to_owned())
                            })
                        })
                        .collect();
                    if own.is_empty() {
                        for k in [upper, lower] {
                            env.push(map([("name", s(k)), ("value", s(ours))]));
                        }
                    } else if upper == "HTTP_PROXY" {
                        for (k, v) in own.iter().filter(|(_, v)| v != ours) {
                            notes.push(format!(
                                "container {cname} sets {k}={v} itself; kept (its calls \
                                 through that proxy do not get a token)"
                            ));
                        }
                    }
                }
            }
        }
    }
    if serve == Serve::OutboundOnly && st.app_port.is_none() {
        notes.push(format!(
            "no containerPort, {ANNOTATION}app-port or {ANNOTATION}app-socket: if the app \
             does serve, say on which port"
        ));
    }
    let sidecar = sidecar_container(st, &serve);
    if let Yaml::Array(init) = entry(spec, "initContainers", Yaml::Array(Vec::new())) {
        // First: the other init containers (and the app) start with the sidecar ready.
        init.insert(0, sidecar);
    }
    if let Yaml::Array(v) = entry(spec, "volumes", Yaml::Array(Vec::new())) {
        v.extend(volumes);
    }
    Ok(Injected {
        serve,
        declared_port,
        port_names,
        notes,
    })
}

/// The directory of a socket path (validated to have one).
fn socket_dir(path: &str) -> &str {
    path.rsplit_once('/').map_or("/", |(d, _)| d)
}

fn int_node(n: i64) -> Yaml {
    Yaml::Integer(n)
}

fn sidecar_container(st: &Settings, serve: &Serve) -> Yaml {
    let mut env = vec![
        ("TRUSTGATE_LOG_FORMAT", "json".to_owned()),
        ("TRUSTGATE_IDENTITY_NAME", st.identity.clone()),
        (
            "TRUSTGATE_IDENTITY_PRIVATE_KEY",
            format!("/etc/trustgate/identity/{}.key", st.identity),
        ),
    ];
    let mut mounts = vec![
        mount("trustgate-config", "/etc/trustgate/config"),
        mount("trustgate-identity", "/etc/trustgate/identity"),
    ];
    let upstream = match serve {
        Serve::Port(port) => Some(format!("http://127.0.0.1:{port}")),
        Serve::Socket(path) => Some(format!("unix://{path}")),
        Serve::OutboundOnly => None,
    };
    match upstream {
        Some(upstream) => {
            env.push((
                "TRUSTGATE_TRUST_AUTHORIZED_KEYS",
                "/etc/trustgate/authorized_keys".to_owned(),
            ));
            env.push((
                "TRUSTGATE_INBOUND_LISTEN",
                format!("0.0.0.0:{}", st.inbound_port),
            ));
            env.push(("TRUSTGATE_INBOUND_UPSTREAM", upstream));
            mounts.push(mount(
                "trustgate-authorized-keys",
                "/etc/trustgate/authorized_keys",
            ));
        }
        // Whatever [inbound] the shared ConfigMap has: not for this workload.
        None => env.push(("TRUSTGATE_INBOUND_ENABLED", "false".to_owned())),
    }
    env.push((
        "TRUSTGATE_OUTBOUND_LISTEN",
        format!("127.0.0.1:{}", st.outbound_port),
    ));
    env.push((
        "TRUSTGATE_ADMIN_LISTEN",
        format!("0.0.0.0:{}", st.admin_port),
    ));
    if let Serve::Socket(path) = serve {
        mounts.push(map([
            ("name", s(SOCKET_VOLUME)),
            ("mountPath", s(socket_dir(path))),
        ]));
    }
    if st.tls_secret.is_some() && *serve != Serve::OutboundOnly {
        env.push((
            "TRUSTGATE_INBOUND_TLS_CERT",
            "/etc/trustgate/tls/tls.crt".into(),
        ));
        env.push((
            "TRUSTGATE_INBOUND_TLS_KEY",
            "/etc/trustgate/tls/tls.key".into(),
        ));
        mounts.push(mount("trustgate-tls", "/etc/trustgate/tls"));
    }
    if st.fetch_ca.is_some() && *serve != Serve::OutboundOnly {
        env.push((
            "TRUSTGATE_TRUST_FETCH_CA_FILE",
            "/etc/trustgate/fetch-ca/ca.crt".into(),
        ));
        mounts.push(mount("trustgate-fetch-ca", "/etc/trustgate/fetch-ca"));
    }
    let mut env: Vec<Yaml> = env
        .into_iter()
        .map(|(k, v)| map([("name", s(k)), ("value", s(&v))]))
        .collect();
    if matches!(serve, Serve::Port(_)) {
        // The exposure check tries the app's port on the pod's own addresses.
        env.push(map([
            ("name", s("TRUSTGATE_INBOUND_POD_IPS")),
            (
                "valueFrom",
                map([("fieldRef", map([("fieldPath", s("status.podIPs"))]))]),
            ),
        ]));
    }
    let mut ports = vec![map([
        ("name", s("trustgate-admin")),
        ("containerPort", int_node(st.admin_port)),
    ])];
    if *serve != Serve::OutboundOnly {
        ports.insert(
            0,
            map([
                ("name", s(INBOUND_PORT_NAME)),
                ("containerPort", int_node(st.inbound_port)),
            ]),
        );
    }
    let probe = |path: &str, extra: Vec<(&str, Yaml)>| {
        let mut p = map([(
            "httpGet",
            map([("path", s(path)), ("port", s("trustgate-admin"))]),
        )]);
        if let Yaml::Hash(h) = &mut p {
            for (k, v) in extra {
                h.insert(s(k), v);
            }
        }
        p
    };
    map([
        ("name", s(SIDECAR)),
        ("image", s(&st.image)),
        // Native sidecar: started before the app, stopped after it.
        ("restartPolicy", s("Always")),
        (
            "command",
            Yaml::Array(vec![
                s("/usr/local/bin/trustgate"),
                s("run"),
                s("--config"),
                s("/etc/trustgate/config/trustgate.toml"),
            ]),
        ),
        ("env", Yaml::Array(env)),
        ("ports", Yaml::Array(ports)),
        (
            "startupProbe",
            probe(
                "/readyz",
                vec![
                    ("periodSeconds", int_node(1)),
                    ("failureThreshold", int_node(30)),
                ],
            ),
        ),
        (
            "livenessProbe",
            probe("/healthz", vec![("periodSeconds", int_node(10))]),
        ),
        (
            "readinessProbe",
            probe("/readyz", vec![("periodSeconds", int_node(5))]),
        ),
        (
            "resources",
            map([
                ("requests", map([("cpu", s("50m")), ("memory", s("32Mi"))])),
                ("limits", map([("memory", s("128Mi"))])),
            ]),
        ),
        (
            "securityContext",
            map([
                ("runAsUser", int_node(65532)),
                ("runAsGroup", int_node(65532)),
                ("runAsNonRoot", Yaml::Boolean(true)),
                ("allowPrivilegeEscalation", Yaml::Boolean(false)),
                ("readOnlyRootFilesystem", Yaml::Boolean(true)),
                ("capabilities", map([("drop", Yaml::Array(vec![s("ALL")]))])),
            ]),
        ),
        ("volumeMounts", Yaml::Array(mounts)),
    ])
}

fn mount(name: &str, path: &str) -> Yaml {
    map([
        ("name", s(name)),
        ("mountPath", s(path)),
        ("readOnly", Yaml::Boolean(true)),
    ])
}

fn sidecar_volumes(spec: &Yaml, st: &Settings, serve: &Serve) -> Vec<Yaml> {
    // Secret files are root's; with a pod fsGroup the kubelet gives them to that group
    // (which the sidecar is in), so the private key can be 0440. Without one, 0444: only
    // the sidecar mounts this volume, so no other container sees the file.
    let has_fs_group = get(spec, "securityContext")
        .and_then(|sc| get(sc, "fsGroup"))
        .is_some_and(|g| !yaml::is_null(g));
    let key_mode = if has_fs_group { 0o440 } else { 0o444 };
    let secret = |name: &str, secret: &str, mode: i64| {
        map([
            ("name", s(name)),
            (
                "secret",
                map([
                    ("secretName", s(secret)),
                    ("defaultMode", Yaml::Integer(mode)),
                ]),
            ),
        ])
    };
    let config_map =
        |name: &str, cm: &str| map([("name", s(name)), ("configMap", map([("name", s(cm))]))]);
    let source = |name: &str, src: &Source| match src {
        Source::Secret(n) => secret(name, n, 0o444),
        Source::ConfigMap(n) => config_map(name, n),
    };
    let mut v = vec![
        config_map("trustgate-config", &st.config_map),
        secret("trustgate-identity", &st.identity_secret, key_mode),
    ];
    if *serve == Serve::OutboundOnly {
        // Nothing to verify, nothing to serve TLS on: no trust, key-URL CA or
        // certificate volumes (and no Secrets that must exist for the pod to start).
        return v;
    }
    v.push(source("trustgate-authorized-keys", &st.authorized_keys));
    if let Serve::Socket(_) = serve {
        // Pod-private: only this pod's containers see the socket.
        v.push(map([
            ("name", s(SOCKET_VOLUME)),
            ("emptyDir", Yaml::Hash(Default::default())),
        ]));
    }
    if let Some(tls) = &st.tls_secret {
        v.push(secret("trustgate-tls", tls, key_mode));
    }
    if let Some(ca) = &st.fetch_ca {
        v.push(source("trustgate-fetch-ca", ca));
    }
    v
}

/// Points a Service that selects an injected pod at the sidecar's inbound port, for each
/// of its ports that targets the app's port (by number or by the app's port name).
fn retarget_service(object: &mut Yaml, pods: &[InjectedPod]) -> Option<String> {
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
