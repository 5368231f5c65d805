//! `[authz]` (DESIGN.md "Inside Envoy"): trustgate as Envoy's external authorizer. The
//! verdict is the inbound's — `[inbound]`'s rules, token header, people and limits — so
//! this section only says where the authorizer listens; what it cannot do (it never sees
//! a stream end, the request's trailers or the app) is refused here.
use std::net::SocketAddr;

use serde::Deserialize;

use super::parse::Problems;
use super::{AppExposure, Config, FilePath, Inbound, ServerTls};

section! {
    /// `[authz]`: Envoy's `ext_authz` over gRPC (`listen`) and over HTTP (`http_listen`).
    pub struct Authz {
        /// `envoy.service.auth.v3.Authorization/Check` over gRPC (h2c, or TLS below).
        pub listen: Option<SocketAddr> = None,
        /// Envoy's HTTP mode: the original method, path and allowed headers, answered
        /// 200 (allowed) or with the refusal.
        pub http_listen: Option<SocketAddr> = None,
        pub tls_cert: Option<FilePath> = None,
        pub tls_key: Option<FilePath> = None,
        /// When set, Envoy must present a certificate signed by this CA.
        pub client_ca: Option<FilePath> = None,
    }
}

impl Authz {
    /// The listeners' TLS, when `tls_cert` and `tls_key` are set.
    pub fn tls(&self) -> Option<ServerTls> {
        Some(ServerTls {
            cert: self.tls_cert.as_ref()?.to_path_buf(),
            key: self.tls_key.as_ref()?.to_path_buf(),
            client_ca: self.client_ca.as_ref().map(|p| p.to_path_buf()),
        })
    }
}

/// `[authz]` alone takes `[inbound]`'s defaults for its verdict (no inbound listener);
/// with `[inbound]`, its rules. Runs before the sides are checked, so that
/// `inbound.enabled = false` keeps the rules for the authorizer.
pub(super) fn prepare(cfg: &mut Config) {
    if cfg.authz.is_none() {
        return;
    }
    if cfg.inbound.is_none() {
        cfg.inbound = Some(Inbound {
            enabled: false,
            app_exposure: AppExposure::Off,
            ..Inbound::default()
        });
    }
}

/// What an authorizer cannot do, and its own keys.
pub(super) fn check(cfg: &Config, p: &mut Problems) {
    let Some(a) = &cfg.authz else { return };
    if a.listen.is_none() && a.http_listen.is_none() {
        p.add(
            "authz.listen",
            "[authz] needs listen (gRPC) or http_listen (Envoy's HTTP mode), or both",
        );
    }
    match (&a.tls_cert, &a.tls_key) {
        (Some(_), None) => p.add("authz.tls_key", "is required with authz.tls_cert"),
        (None, Some(_)) => p.add("authz.tls_cert", "is required with authz.tls_key"),
        (None, None) if a.client_ca.is_some() => {
            p.add("authz.client_ca", "needs authz.tls_cert and authz.tls_key")
        }
        _ => {}
    }
    for (caller, c) in &cfg.callers {
        if c.max_concurrent.is_some() {
            p.add(
                &format!("callers.{caller}.max_concurrent"),
                "cannot hold with [authz]: an authorizer never sees a request end (rate_limit can)",
            );
        }
    }
    if let Some(i) = &cfg.inbound {
        if !i.enabled && i.app_exposure == AppExposure::Refuse {
            p.add(
                "inbound.app_exposure",
                "\"refuse\" needs the inbound listener: behind Envoy the exposure check is Envoy's deployment's",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::from_toml_str;

    const MIN: &str = "[identity]\nname = \"billing\"\n[trust]\nauthorized_keys = \"/k\"\n";

    fn problems(extra: &str) -> Vec<String> {
        from_toml_str(&format!("{MIN}{extra}"), "t.toml", Vec::new())
            .unwrap_err()
            .problems
    }

    #[test]
    fn an_authorizer_alone_keeps_the_inbound_rules_and_binds_no_inbound_listener() {
        let c = from_toml_str(
            &format!("{MIN}[authz]\nlisten = \"127.0.0.1:9191\"\n"),
            "t.toml",
            Vec::new(),
        )
        .unwrap();
        let i = c.inbound.unwrap();
        assert!(!i.enabled, "no inbound listener");
        let c = from_toml_str(
            &format!(
                "{MIN}[authz]\nhttp_listen = \"127.0.0.1:9192\"\n[inbound]\nenabled = false\n\
                 [[inbound.allow]]\ncallers = [\"orders\"]\n"
            ),
            "t.toml",
            vec![("TRUSTGATE_AUTHZ_LISTEN".into(), "127.0.0.1:9191".into())],
        )
        .unwrap();
        assert_eq!(c.inbound.unwrap().allow.len(), 1, "the rules kept");
        assert_eq!(
            c.authz.unwrap().listen,
            Some("127.0.0.1:9191".parse().unwrap())
        );
    }

    #[test]
    fn what_an_authorizer_cannot_do_is_refused() {
        let p = problems("[authz]\n");
        assert!(p.iter().any(|p| p.contains("authz.listen")), "{p:?}");
        let p = problems(
            "[authz]\nlisten = \"127.0.0.1:9191\"\n[callers.orders]\nmax_concurrent = 5\n",
        );
        assert!(
            p.iter().any(|p| p.contains("callers.orders.max_concurrent")
                && p.contains("never sees a request end")),
            "{p:?}"
        );
        let p = problems("[authz]\nlisten = \"127.0.0.1:9191\"\ntls_cert = \"/c\"\n");
        assert!(p.iter().any(|p| p.contains("authz.tls_key")), "{p:?}");
        let p = problems(
            "[authz]\nlisten = \"127.0.0.1:9191\"\n[inbound]\nenabled = false\napp_exposure = \"refuse\"\n",
        );
        assert!(
            p.iter().any(|p| p.contains("inbound.app_exposure")),
            "{p:?}"
        );
        let p = problems(
            "[authz]\nlisten = \"127.0.0.1:9191\"\n[inbound]\nlisten = \"127.0.0.1:9191\"\n",
        );
        assert!(p.iter().any(|p| p.contains("is also")), "{p:?}");
    }
}
