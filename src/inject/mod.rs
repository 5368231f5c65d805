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
    app_port: i64,
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
    for (i, doc) in parsed.iter_mut().enumerate() {
        let Some(doc) = doc else { continue };
        for object in objects(doc) {
            if let Some(line) =
                inject_object(object, opts, &mut pods).map_err(|reason| InjectError {
                    doc: i + 1,
                    what: describe(object),
                    reason,
                })?
            {
                changed[i] |= line.0;
                report.push(line.1);
            }
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
    }
    Ok(Injection { output, report })
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
}

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
        identity,
    };
    let labels = pod_meta
        .as_ref()
        .and_then(|m| get(m, "labels"))
        .map(pairs)
        .unwrap_or_default();
    let injected = inject_pod(spec, &settings)?;
    let mut line = format!(
        "{what}: injected (identity {}, app port {} behind inbound {})",
        settings.identity, injected.0, settings.inbound_port
    );
    for note in injected.2 {
        line.push_str(&format!("\n  note: {note}"));
    }
    pods.push(InjectedPod {
        namespace,
        labels,
        app_port: injected.0,
        app_port_names: injected.1,
    });
    Ok(Some((true, line)))
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

/// Adds the sidecar to a pod spec; returns the app port and the names the app
/// containers give it.
fn inject_pod(spec: &mut Yaml, st: &Settings) -> Result<(i64, Vec<String>, Vec<String>), String> {
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
    let app_port = match st.app_port {
        Some(p) => p,
        None => declared.first().map(|d| d.1).ok_or_else(|| {
            format!(
                "the app's port cannot be told (no containerPort declared): set \
                 {ANNOTATION}app-port"
            )
        })?,
    };
    if sidecar_ports.contains(&app_port) {
        return Err(format!(
            "the app port {app_port} is one of the sidecar's ports; choose others with the \
             {ANNOTATION}inbound-port / outbound-port / admin-port annotations"
        ));
    }
    let app_port_names = declared
        .iter()
        .filter(|d| d.1 == app_port)
        .filter_map(|d| d.2.clone())
        .collect();

    let volumes = sidecar_volumes(spec, st);
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

    // The app containers: outbound calls through the sidecar.
    let proxy = format!("http://127.0.0.1:{}", st.outbound_port);
    let mut notes = Vec::new();
    if let Some(Yaml::Array(app)) = get_mut(spec, "containers") {
        for c in app.iter_mut() {
            let cname = get(c, "name").and_then(text).unwrap_or("?").to_owned();
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
    let sidecar = sidecar_container(st, app_port);
    if let Yaml::Array(init) = entry(spec, "initContainers", Yaml::Array(Vec::new())) {
        // First: the other init containers (and the app) start with the sidecar ready.
        init.insert(0, sidecar);
    }
    if let Yaml::Array(v) = entry(spec, "volumes", Yaml::Array(Vec::new())) {
        v.extend(volumes);
    }
    Ok((app_port, app_port_names, notes))
}

fn int_node(n: i64) -> Yaml {
    Yaml::Integer(n)
}

fn sidecar_container(st: &Settings, app_port: i64) -> Yaml {
    let mut env = vec![
        ("TRUSTGATE_LOG_FORMAT", "json".to_owned()),
        ("TRUSTGATE_IDENTITY_NAME", st.identity.clone()),
        (
            "TRUSTGATE_IDENTITY_PRIVATE_KEY",
            format!("/etc/trustgate/identity/{}.key", st.identity),
        ),
        (
            "TRUSTGATE_TRUST_AUTHORIZED_KEYS",
            "/etc/trustgate/authorized_keys".to_owned(),
        ),
        (
            "TRUSTGATE_INBOUND_LISTEN",
            format!("0.0.0.0:{}", st.inbound_port),
        ),
        (
            "TRUSTGATE_INBOUND_UPSTREAM",
            format!("http://127.0.0.1:{app_port}"),
        ),
        (
            "TRUSTGATE_OUTBOUND_LISTEN",
            format!("127.0.0.1:{}", st.outbound_port),
        ),
        (
            "TRUSTGATE_ADMIN_LISTEN",
            format!("0.0.0.0:{}", st.admin_port),
        ),
    ];
    let mut mounts = vec![
        mount("trustgate-config", "/etc/trustgate/config"),
        mount("trustgate-identity", "/etc/trustgate/identity"),
        mount(
            "trustgate-authorized-keys",
            "/etc/trustgate/authorized_keys",
        ),
    ];
    if st.tls_secret.is_some() {
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
    if st.fetch_ca.is_some() {
        env.push((
            "TRUSTGATE_TRUST_FETCH_CA_FILE",
            "/etc/trustgate/fetch-ca/ca.crt".into(),
        ));
        mounts.push(mount("trustgate-fetch-ca", "/etc/trustgate/fetch-ca"));
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
        (
            "env",
            Yaml::Array(
                env.into_iter()
                    .map(|(k, v)| map([("name", s(k)), ("value", s(&v))]))
                    .collect(),
            ),
        ),
        (
            "ports",
            Yaml::Array(vec![
                map([
                    ("name", s(INBOUND_PORT_NAME)),
                    ("containerPort", int_node(st.inbound_port)),
                ]),
                map([
                    ("name", s("trustgate-admin")),
                    ("containerPort", int_node(st.admin_port)),
                ]),
            ]),
        ),
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

fn sidecar_volumes(spec: &Yaml, st: &Settings) -> Vec<Yaml> {
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
        source("trustgate-authorized-keys", &st.authorized_keys),
    ];
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
            Some(n) => n == pod.app_port,
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
            pod.app_port
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
