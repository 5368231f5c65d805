//! The pod spec: the sidecar container, its volumes and mounts, the app's socket.
use super::*;

pub(super) fn pairs(y: &Yaml) -> Vec<(String, String)> {
    match y {
        Yaml::Hash(h) => h
            .iter()
            .filter_map(|(k, v)| Some((text(k)?.to_owned(), text(v)?.to_owned())))
            .collect(),
        _ => Vec::new(),
    }
}

pub(super) fn containers(spec: &Yaml, key: &str) -> Vec<Yaml> {
    match get(spec, key) {
        Some(Yaml::Array(a)) => a.clone(),
        _ => Vec::new(),
    }
}

pub(super) fn has_container(spec: &Yaml, name: &str) -> bool {
    ["containers", "initContainers"]
        .iter()
        .flat_map(|k| containers(spec, k))
        .any(|c| get(&c, "name").and_then(text) == Some(name))
}

/// What inject_pod did.
pub(super) struct Injected {
    pub(super) serve: Serve,
    /// The app's declared port, for Services (with a socket too: a Service may name it).
    pub(super) declared_port: Option<i64>,
    /// The names the app containers give that port.
    pub(super) port_names: Vec<String>,
    pub(super) notes: Vec<String>,
}

/// Adds the sidecar to a pod spec.
pub(super) fn inject_pod(spec: &mut Yaml, st: &Settings) -> Result<Injected, String> {
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
    let declared = declared_ports(spec, st, &sidecar_ports)?;
    let declared_port = st.app_port.or(declared.first().map(|d| d.1));
    let serve = match (&st.app_socket, declared_port) {
        _ if st.authz_port.is_some() => Serve::Authz(st.authz_port.unwrap_or(9191)),
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
    no_clash(spec, &app, &volumes)?;

    // The app containers: outbound calls through the sidecar; the socket's volume.
    let mut notes = through_the_sidecar(spec, st, &serve);
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

/// Every port the containers declare, as (container, port, name), the app containers'
/// only; an error if one is the sidecar's.
fn declared_ports(
    spec: &Yaml,
    st: &Settings,
    sidecar_ports: &[i64; 3],
) -> Result<Vec<(String, i64, Option<String>)>, String> {
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
    Ok(declared)
}

/// Nothing of the sidecar's may be in the pod already: volumes, a container's name.
fn no_clash(spec: &Yaml, app: &[Yaml], volumes: &[Yaml]) -> Result<(), String> {
    let existing: Vec<String> = containers(spec, "volumes")
        .iter()
        .filter_map(|v| get(v, "name").and_then(text).map(str::to_owned))
        .collect();
    for v in volumes {
        let n = get(v, "name").and_then(text).unwrap_or_default();
        if existing.iter().any(|e| e == n) {
            return Err(format!("a volume named {n} already exists"));
        }
    }
    for c in app {
        if get(c, "name").and_then(text) == Some(SIDECAR) {
            return Err(format!("a container is already named {SIDECAR}"));
        }
    }
    Ok(())
}

/// The app containers: outbound calls through the sidecar (`HTTP_PROXY`, both
/// spellings), the socket's volume; notes on what the app decided itself.
fn through_the_sidecar(spec: &mut Yaml, st: &Settings, serve: &Serve) -> Vec<String> {
    let proxy = format!("http://127.0.0.1:{}", st.outbound_port);
    let mut notes = Vec::new();
    if let Some(Yaml::Array(app)) = get_mut(spec, "containers") {
        for c in app.iter_mut() {
            let cname = get(c, "name").and_then(text).unwrap_or("?").to_owned();
            if let Serve::Socket(path) = serve {
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
    notes
}

/// The directory of a socket path (validated to have one).
pub(super) fn socket_dir(path: &str) -> &str {
    path.rsplit_once('/').map_or("/", |(d, _)| d)
}

pub(super) fn int_node(n: i64) -> Yaml {
    Yaml::Integer(n)
}

fn sidecar_container(st: &Settings, serve: &Serve) -> Yaml {
    let (env, mounts) = sidecar_env(st, serve);
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
    let ports = sidecar_ports(st, serve);
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

/// The sidecar's environment (its configuration, over the shared ConfigMap's) and the
/// volume mounts that go with it.
fn sidecar_env(st: &Settings, serve: &Serve) -> (Vec<(&'static str, String)>, Vec<Yaml>) {
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
        Serve::OutboundOnly | Serve::Authz(_) => None,
    };
    if let Serve::Authz(port) = serve {
        authz_env(*port, &mut env, &mut mounts);
    }
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
    if *serve != Serve::OutboundOnly {
        let files = inbound_files(st);
        for (_, volume, dir, vars) in files.iter().filter(|f| f.0) {
            env.extend(
                vars.iter()
                    .map(|(var, file)| (*var, format!("{dir}/{file}"))),
            );
            mounts.push(mount(volume, dir));
        }
    }
    mounts.extend(
        super::tokens::mounts(st)
            .into_iter()
            .map(|(name, path)| mount(name, path)),
    );
    (env, mounts)
}

/// Envoy's authorizer: the inbound's rules are the verdict, Envoy the listener in front
/// of the app.
fn authz_env(port: i64, env: &mut Vec<(&'static str, String)>, mounts: &mut Vec<Yaml>) {
    env.extend([
        (
            "TRUSTGATE_TRUST_AUTHORIZED_KEYS",
            "/etc/trustgate/authorized_keys".to_owned(),
        ),
        ("TRUSTGATE_INBOUND_APP_EXPOSURE", "off".to_owned()),
        ("TRUSTGATE_AUTHZ_LISTEN", format!("127.0.0.1:{port}")),
    ]);
    mounts.push(mount(
        "trustgate-authorized-keys",
        "/etc/trustgate/authorized_keys",
    ));
}

/// Variables naming files in a mounted directory.
type Vars = &'static [(&'static str, &'static str)];

/// The inbound side's optional files: (given?, volume, directory, variable → file).
fn inbound_files(st: &Settings) -> [(bool, &'static str, &'static str, Vars); 3] {
    [
        (
            st.tls_secret.is_some(),
            "trustgate-tls",
            "/etc/trustgate/tls",
            &[
                ("TRUSTGATE_INBOUND_TLS_CERT", "tls.crt"),
                ("TRUSTGATE_INBOUND_TLS_KEY", "tls.key"),
            ],
        ),
        (
            st.fetch_ca.is_some(),
            "trustgate-fetch-ca",
            "/etc/trustgate/fetch-ca",
            &[("TRUSTGATE_TRUST_FETCH_CA_FILE", "ca.crt")],
        ),
        (
            st.fleet_secret.is_some(),
            "trustgate-fleet",
            "/etc/trustgate/fleet",
            &[("TRUSTGATE_FLEET_PASSWORD_FILE", "password")],
        ),
    ]
}

/// The sidecar's ports: inbound (unless outbound-only) and admin.
fn sidecar_ports(st: &Settings, serve: &Serve) -> Vec<Yaml> {
    let mut ports = vec![map([
        ("name", s("trustgate-admin")),
        ("containerPort", int_node(st.admin_port)),
    ])];
    if matches!(serve, Serve::Port(_) | Serve::Socket(_)) {
        ports.insert(
            0,
            map([
                ("name", s(INBOUND_PORT_NAME)),
                ("containerPort", int_node(st.inbound_port)),
            ]),
        );
    }
    ports
}

/// An HTTP probe of the admin port.
fn probe(path: &str, extra: Vec<(&str, Yaml)>) -> Yaml {
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
    v.extend(super::tokens::volumes(st));
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
    if let Some(fleet) = &st.fleet_secret {
        v.push(secret("trustgate-fleet", fleet, key_mode));
    }
    v
}
