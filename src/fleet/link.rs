//! The fleet's connection: the URL, the password file and the CA, made into one
//! redis-rs `ConnectionManager` (multiplexed, reconnecting with backoff), and the upkeep
//! task that probes a store that went away and reconnects when the password changes.
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, ConnectionInfo, IntoConnectionInfo as _};

use super::{Fleet, UP};
use crate::config;

/// How often the upkeep looks (a store down is probed this often; a password file
/// re-read this often).
const UPKEEP: Duration = Duration::from_millis(500);
/// A (re)connection's own bound: TCP, TLS, `AUTH`, `HELLO`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// What every connection is made from.
pub(super) struct Settings {
    info: ConnectionInfo,
    tls: bool,
    password_file: Option<PathBuf>,
    ca: Option<Vec<u8>>,
}

impl Settings {
    pub(super) fn new(cfg: &config::Fleet) -> Result<Settings, String> {
        let info = cfg
            .redis
            .as_str()
            .into_connection_info()
            .map_err(|e| format!("fleet.redis: {e}"))?;
        let ca = match &cfg.ca_file {
            Some(path) => {
                let at = || format!("fleet.ca_file: {}", path.display());
                let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", at()))?;
                use rustls_pki_types::pem::PemObject as _;
                let certs = rustls_pki_types::CertificateDer::pem_slice_iter(&pem)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("{}: {e}", at()))?;
                if certs.is_empty() {
                    return Err(format!("{}: no PEM certificate in it", at()));
                }
                Some(pem)
            }
            None => None,
        };
        let tls = matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. });
        Ok(Settings {
            tls,
            info,
            password_file: cfg.password_file.as_ref().map(|p| p.to_path_buf()),
            ca,
        })
    }

    /// The password file's content, without its trailing newline (`None`: no file).
    pub(super) fn password(&self) -> Result<Option<String>, String> {
        let Some(path) = &self.password_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("fleet.password_file: {}: {e}", path.display()))?;
        let password = text.trim_end_matches(['\r', '\n']);
        if password.is_empty() {
            return Err(format!("fleet.password_file: {} is empty", path.display()));
        }
        Ok(Some(password.to_owned()))
    }
}

/// One connection manager, and the password it authenticates with (compared with the
/// file's; never logged — `Link` has no `Debug`).
pub(super) struct Link {
    pub(super) conn: ConnectionManager,
    password: Option<String>,
}

impl Link {
    /// A lazy manager: it dials on the first command.
    pub(super) fn new(s: &Settings, password: Option<String>) -> Result<Link, String> {
        let mut redis = s.info.redis_settings().clone();
        if let Some(p) = &password {
            redis = redis.set_password(p);
        }
        let info = s.info.clone().set_redis_settings(redis);
        if s.tls {
            // redis-rs builds its rustls config on the process's default provider: make it
            // the project's (aws-lc-rs), whatever else the dependency tree enables.
            let _ = (*crate::tls::provider()).clone().install_default();
        }
        let client = match &s.ca {
            Some(ca) => Client::build_with_tls(
                info,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(ca.clone()),
                },
            ),
            None => Client::open(info),
        }
        .map_err(|e| format!("fleet.redis: {e}"))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            // Each operation has the fleet's own timeout around it.
            .set_response_timeout(None)
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_secs(1));
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| format!("fleet.redis: {e}"))?;
        Ok(Link { conn, password })
    }
}

/// A store's error as a log line says it: what failed, never a credential (redis-rs's
/// messages carry the server's words and the address, not the `AUTH` arguments).
pub(super) fn describe(e: &redis::RedisError) -> String {
    e.to_string()
}

/// The upkeep: the password file re-read (a new one: a new connection with it), and a
/// store that is down (or not yet reached) probed, then marked up when it answers.
pub(super) async fn upkeep(fleet: Weak<Fleet>) {
    let mut password_problem = false;
    loop {
        let Some(f) = fleet.upgrade() else { return };
        match f.settings.password() {
            Ok(p) if p != f.link.load().password => match Link::new(&f.settings, p) {
                Ok(link) => {
                    tracing::info!(
                        "fleet.password_file changed: reconnecting with the new password"
                    );
                    password_problem = false;
                    f.link.store(Arc::new(link));
                    probe(&f).await;
                }
                Err(e) => tracing::warn!(error = e, "fleet: cannot make a new connection"),
            },
            Ok(_) => password_problem = false,
            Err(e) if !password_problem => {
                password_problem = true;
                tracing::warn!(error = e, "fleet: the password file cannot be read; the connection keeps the password it has");
            }
            Err(_) => {}
        }
        if f.state.load(std::sync::atomic::Ordering::Acquire) != UP {
            probe(&f).await;
        }
        drop(f);
        tokio::time::sleep(UPKEEP).await;
    }
}

/// `PING`, once to (re)connect (within the connection's own bound), then within
/// `fleet.timeout`: a store that connects but answers slower than an operation may wait
/// stays down, instead of coming up to fail the next request. A failed probe leaves a
/// fresh connection for the next: redis-rs retries a dropped connection by itself, not
/// one whose handshake was refused (a wrong password).
async fn probe(f: &Fleet) {
    let link = f.link.load_full();
    let ping = |mut c: ConnectionManager| async move {
        redis::cmd("PING").query_async::<String>(&mut c).await
    };
    let result = match tokio::time::timeout(CONNECT_TIMEOUT, ping(link.conn.clone())).await {
        Ok(Ok(_)) => tokio::time::timeout(f.timeout, ping(link.conn.clone()))
            .await
            .map_err(|_| "no answer within fleet.timeout".to_owned())
            .and_then(|r| r.map_err(|e| describe(&e))),
        Ok(Err(e)) => Err(describe(&e)),
        Err(_) => Err(format!("could not connect within {CONNECT_TIMEOUT:?}")),
    };
    match result {
        Ok(_) => f.mark_up(),
        Err(why) => {
            f.mark_down(&why);
            if let Ok(fresh) = Link::new(&f.settings, link.password.clone()) {
                // Unless the password changed meanwhile (then the upkeep made one).
                f.link.compare_and_swap(&link, Arc::new(fresh));
            }
        }
    }
}
