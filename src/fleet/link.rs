//! The fleet's connection: the URL, the password file and the CA, made into one
//! redis-rs `ConnectionManager` (multiplexed, reconnecting with backoff), and the upkeep
//! task that probes a store that went away and reconnects when the password changes.
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, ConnectionInfo, IntoConnectionInfo as _};

use super::{Fleet, Trouble, UP};
use crate::config;

/// How often the upkeep looks (a store down is probed this often; a password file
/// re-read this often).
const UPKEEP: Duration = Duration::from_millis(500);
/// A (re)connection's own bound: TCP, TLS, `AUTH`, `HELLO`.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

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
/// A server's refusal is named by its code, as the server says it (`NOPERM …`,
/// `WRONGPASS …`), which is what an operator searches for.
pub(super) fn describe(e: &redis::RedisError) -> String {
    if e.kind() == redis::ErrorKind::AuthenticationFailed {
        // redis-rs's word for the store's WRONGPASS at AUTH.
        return "the password was refused (WRONGPASS: a wrong password, or a user the store \
                does not have — lost in a restart?)"
            .into();
    }
    match (e.code(), e.detail()) {
        (Some(code), Some(detail)) => format!("{code} {detail}"),
        _ => e.to_string(),
    }
}

/// The upkeep: the password file re-read (a new one: a new connection with it); a store
/// that is down (or not yet reached) probed, then marked up when trustgate's operations
/// succeed on it; and a store that is up pinged, so that a connection the store dropped
/// (a restart while this sidecar was idle) is replaced before a request needs it.
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
        match f.state.load(std::sync::atomic::Ordering::Acquire) {
            UP => keepalive(&f).await,
            _ => probe(&f).await,
        }
        drop(f);
        tokio::time::sleep(UPKEEP).await;
    }
}

/// `PING` on the connection requests use; one that finds it dropped pings again on the
/// connection the manager dials instead. Only a store that cannot be reached that way
/// is marked down (the next request would have failed).
async fn keepalive(f: &Fleet) {
    let conn = f.link.load().conn.clone();
    let ping = |mut c: ConnectionManager| async move {
        redis::cmd("PING").query_async::<String>(&mut c).await
    };
    let twice = async {
        match ping(conn.clone()).await {
            Err(e) if super::dropped(&e) => ping(conn).await,
            other => other,
        }
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, twice).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => f.mark_down(&describe(&e), Trouble::of(&e)),
        Err(_) => f.mark_down(
            &format!("no answer to a ping within {CONNECT_TIMEOUT:?}"),
            Trouble::Unreachable,
        ),
    }
}

/// `PING`, once to (re)connect (within the connection's own bound), then trustgate's own
/// operations on a probe key within `fleet.timeout` — a store that answers `PING` but
/// refuses them (`NOPERM` on the key prefix or a command) stays down, and so does one
/// that connects but answers slower than an operation may wait. Then the single-use
/// tokens accepted alone meanwhile are written, and only then is the store up. A failed
/// probe leaves a fresh connection for the next: redis-rs retries a dropped connection by
/// itself, not one whose handshake was refused (a wrong password).
async fn probe(f: &Fleet) {
    let link = f.link.load_full();
    let ping = |mut c: ConnectionManager| async move {
        redis::cmd("PING").query_async::<String>(&mut c).await
    };
    let result = match tokio::time::timeout(CONNECT_TIMEOUT, ping(link.conn.clone())).await {
        Ok(Ok(_)) => operations(f, &link).await,
        Ok(Err(e)) => Err((describe(&e), Trouble::of(&e))),
        Err(_) => Err((
            format!("could not connect within {CONNECT_TIMEOUT:?}"),
            Trouble::Unreachable,
        )),
    };
    let result = match result {
        Ok(()) => f
            .write_backlog()
            .await
            .map_err(|why| (why, Trouble::Unreachable)),
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => f.mark_up(),
        Err((why, trouble)) => {
            f.mark_down(&why, trouble);
            if let Ok(fresh) = Link::new(&f.settings, link.password.clone()) {
                // Unless the password changed meanwhile (then the upkeep made one).
                f.link.compare_and_swap(&link, Arc::new(fresh));
            }
        }
    }
}

/// A GCRA step and a first use on `<prefix>probe`, each within `fleet.timeout` (the key
/// lives a millisecond).
async fn operations(f: &Fleet, link: &Link) -> Result<(), (String, Trouble)> {
    let key = format!("{}probe", f.prefix);
    let quota = super::Quota {
        interval_us: 1,
        burst: 1_000_000,
    };
    let within = |r: Result<redis::RedisResult<u64>, _>| match r {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err((describe(&e), Trouble::of(&e))),
        Err(_) => Err((
            "no answer within fleet.timeout".to_owned(),
            Trouble::Unreachable,
        )),
    };
    let rate = f.gcra_step(link.conn.clone(), &key, quota);
    within(tokio::time::timeout(f.timeout, rate).await)?;
    let nonce = super::nonce();
    let first = f.first_use_step(link.conn.clone(), &key, &nonce, Duration::from_millis(1));
    let first = async { first.await.map(u64::from) };
    within(tokio::time::timeout(f.timeout, first).await)
}
