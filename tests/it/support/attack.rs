//! The target of the attacker tests: billing's inbound sidecar in front of the raw app,
//! trusting `orders`, with a signed-context header, allow rules and public paths, and the
//! tokens an attacker who holds a trusted key (or none) can make.
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use trustgate::keys::{self, GeneratedFiles};
use trustgate::token::TokenSigner;

use super::raw::{spawn_raw_app, RawApp};
use super::{Conf, Keys, Sidecar};

pub struct Target {
    /// The key files: they live as long as the target.
    _keys: Keys,
    pub orders: GeneratedFiles,
    pub app: RawApp,
    pub side: Side,
}

/// billing's sidecar: in this process, or the real binary in its own (so that its memory
/// is its own, not shared with the app, the client and sibling tests).
pub enum Side {
    InProcess(Sidecar),
    Binary(super::Running),
}

impl Side {
    pub fn admin(&self) -> SocketAddr {
        match self {
            Side::InProcess(s) => s.admin(),
            Side::Binary(r) => r.admin.parse().unwrap(),
        }
    }

    /// The binary's resident set size in KiB (`None` in process).
    pub fn rss_kib(&self) -> Option<u64> {
        match self {
            Side::InProcess(_) => None,
            Side::Binary(r) => {
                let status =
                    std::fs::read_to_string(format!("/proc/{}/status", r.process.child.id()))
                        .ok()?;
                status
                    .lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.split_whitespace().next()?.parse().ok())
            }
        }
    }
}

/// `extra_inbound` goes into [inbound], `extra` at the end (its own sections).
pub async fn target(extra_inbound: &str, extra: &str) -> Target {
    make_target(extra_inbound, extra, false).await
}

/// As [`target`], billing's sidecar the real binary in a process of its own.
pub async fn binary_target(extra_inbound: &str, extra: &str) -> Target {
    make_target(extra_inbound, extra, true).await
}

async fn make_target(extra_inbound: &str, extra: &str, binary: bool) -> Target {
    let keys = Keys::new();
    let orders = keys.make("orders");
    let billing = keys.make("billing");
    let trusted = keys.trust_dir("billing-trusts", &[&orders]);
    let app = spawn_raw_app().await;
    let conf = Conf::new("billing", &billing.private)
        .inbound(&trusted, app.addr)
        .set("inbound", r#"public_paths = ["/healthz"]"#)
        .set("inbound", r#"signed_headers = ["x-user-id"]"#)
        .set("inbound", extra_inbound)
        .extra("[[inbound.allow]]\ncallers = [\"orders\"]\npaths = [\"/invoices/*\", \"/healthz\"]")
        .extra(extra);
    let side = if binary {
        let dir = keys.path().join("billing-run");
        std::fs::create_dir_all(&dir).unwrap();
        Side::Binary(super::run_binary(&conf.toml(), &dir))
    } else {
        Side::InProcess(conf.start().await)
    };
    Target {
        _keys: keys,
        orders,
        app,
        side,
    }
}

impl Target {
    pub fn inbound(&self) -> SocketAddr {
        match &self.side {
            Side::InProcess(s) => s.inbound(),
            Side::Binary(r) => r.inbound.parse().unwrap(),
        }
    }

    /// A valid token from orders for billing.
    pub fn token(&self) -> String {
        self.token_with_ctx(None)
    }

    pub fn token_with_ctx(&self, ctx: Option<&[(&str, &str)]>) -> String {
        let k = Arc::new(keys::load_signing_key(&self.orders.private).unwrap());
        let ctx = ctx.map(|pairs| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<std::collections::BTreeMap<_, _>>()
        });
        TokenSigner::new("orders".into(), k, Duration::from_secs(60))
            .sign("billing", ctx.as_ref(), None, trustgate::proxy::unix_now())
            .unwrap()
    }

    /// A raw HTTP/1.1 GET with the token and `extra` header lines (each ending "\r\n").
    pub fn get(&self, path: &str, extra: &str) -> Vec<u8> {
        format!(
            "GET {path} HTTP/1.1\r\nhost: billing\r\nauthorization: Bearer {}\r\n{extra}\r\n",
            self.token()
        )
        .into_bytes()
    }
}
