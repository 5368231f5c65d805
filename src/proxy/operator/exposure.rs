//! The exposure check: can the app be called *around* the sidecar?
//!
//! Most app servers listen on `0.0.0.0` by default (Spring Boot, Node's `listen(8080)`,
//! Go's `:8080`, Puma in containers). In a pod that makes the app's port reachable on the
//! pod's address from every other pod, and whoever calls it there can send
//! `x-service-caller: admin` and be believed: trustgate's checks are simply not on that
//! path. Meshes close it with iptables (NET_ADMIN, refused under PodSecurity
//! "restricted"); trustgate cannot redirect traffic without privileges, but it can see
//! the hole: at start and every `inbound.app_exposure_interval` it connects to the app's
//! TCP port on every pod address (`inbound.pod_ips`; by default every non-loopback
//! address of this network namespace — the pod's). An app bound to loopback refuses
//! those connections; one bound to a pod address or `0.0.0.0` accepts them.
//!
//! When it is exposed: `trustgate_app_exposed` = 1, an error line naming each address,
//! and with `inbound.app_exposure = "refuse"` `/readyz` answers 503 with the reason, so
//! the pod is never an endpoint of its Service while the app can be reached around the
//! sidecar. A NetworkPolicy (written by `trustgate inject`) is the first line; this check
//! is the backstop for clusters whose CNI does not enforce one. An app on a Unix socket
//! (`inbound.upstream = "unix://..."`) has no TCP port to check.
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::config::{AppExposure, Inbound};
use crate::proxy::state::State;

/// How long one connection attempt may take. A pod address is local: it is accepted or
/// refused at once; a filtered one is not the app listening there.
const ATTEMPT: Duration = Duration::from_secs(1);

/// The addresses to try: `inbound.pod_ips`, or every non-loopback address of this host
/// (link-local IPv6 addresses excluded: they need a scope and no Service routes to them).
pub fn pod_addresses(cfg: &Inbound) -> Vec<IpAddr> {
    if !cfg.pod_ips.is_empty() {
        return cfg.pod_ips.clone();
    }
    let mut found: Vec<IpAddr> = match if_addrs::get_if_addrs() {
        Ok(ifaces) => ifaces
            .into_iter()
            .map(|i| i.ip())
            .filter(|ip| !ip.is_loopback() && !is_link_local(ip))
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "exposure check: cannot list this host's addresses");
            Vec::new()
        }
    };
    found.sort();
    found.dedup();
    found
}

fn is_link_local(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

/// The addresses among `addrs` on which something accepts a connection to `port`.
pub async fn probe(addrs: &[IpAddr], port: u16) -> Vec<SocketAddr> {
    let attempts = addrs.iter().map(|ip| {
        let to = SocketAddr::new(*ip, port);
        async move {
            match tokio::time::timeout(ATTEMPT, tokio::net::TcpStream::connect(to)).await {
                Ok(Ok(_)) => Some(to),
                _ => None,
            }
        }
    });
    let mut open = Vec::new();
    // A handful of addresses: one after the other is fast enough (refusals are immediate)
    // and needs no extra dependency to join them.
    for attempt in attempts {
        if let Some(to) = attempt.await {
            open.push(to);
        }
    }
    open
}

/// Where the app is, as the forwarding client reaches it: the upstream's host resolved by
/// the system resolver (getaddrinfo, as the client's connector does), so that every
/// spelling of an address is judged as the address it is — `127.1`, `2130706433`,
/// `[::ffff:127.0.0.1]` are loopback; `0.0.0.0` and `[::]` reach this host too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppPlace {
    /// `unix://`: no TCP port, nothing reaches it around the sidecar over the network.
    Socket,
    /// On this host: loopback, the unspecified address, or one of the pod's addresses.
    ThisHost,
    /// Elsewhere: reachable by design, nothing this check could tell.
    Elsewhere(Vec<IpAddr>),
    /// The host did not resolve (the reason).
    Unresolved(String),
}

/// Judges `inbound.upstream` (blocking: getaddrinfo; a literal or `localhost` answers at
/// once).
pub fn app_place(cfg: &Inbound) -> AppPlace {
    let Some(port) = cfg.upstream.tcp_port() else {
        return AppPlace::Socket;
    };
    let host = cfg
        .upstream
        .uri
        .host()
        .unwrap_or_default()
        .trim_matches(['[', ']']);
    let resolved: Vec<IpAddr> = match std::net::ToSocketAddrs::to_socket_addrs(&(host, port)) {
        Ok(addrs) => addrs.map(|a| a.ip().to_canonical()).collect(),
        Err(e) => return AppPlace::Unresolved(e.to_string()),
    };
    if resolved.is_empty() {
        return AppPlace::Unresolved("no address".into());
    }
    let pod = pod_addresses(cfg);
    let here = |ip: &IpAddr| ip.is_loopback() || ip.is_unspecified() || pod.contains(ip);
    if resolved.iter().all(here) {
        AppPlace::ThisHost
    } else {
        AppPlace::Elsewhere(resolved)
    }
}

/// What `check` and `run` say of the exposure check before anything binds: with
/// `app_exposure = "refuse"` an app the check cannot judge is refused (the setting would
/// promise a check that never runs); an app on a Unix socket needs no check, and is said
/// to. Errors, then warnings.
pub fn config_problems(cfg: &crate::config::Config) -> (Vec<String>, Vec<String>) {
    let (mut errors, mut warnings) = (Vec::new(), Vec::new());
    let Some(inbound) = cfg.inbound.as_ref().filter(|i| i.enabled) else {
        return (errors, warnings);
    };
    if inbound.app_exposure != AppExposure::Refuse {
        return (errors, warnings);
    }
    match app_place(inbound) {
        AppPlace::ThisHost => {}
        AppPlace::Socket => warnings.push(format!(
            "inbound.app_exposure: \"refuse\" checks nothing for {}: an app on a Unix socket has no TCP port to reach around the sidecar",
            inbound.upstream
        )),
        AppPlace::Elsewhere(ips) => errors.push(format!(
            "inbound.app_exposure: \"refuse\" cannot be checked: inbound.upstream {} is not on this host ({ips:?}); the exposure check judges an app beside the sidecar",
            inbound.upstream
        )),
        AppPlace::Unresolved(why) => errors.push(format!(
            "inbound.app_exposure: \"refuse\" cannot be checked: inbound.upstream {} does not resolve ({why})",
            inbound.upstream
        )),
    }
    (errors, warnings)
}

/// The check of one sidecar: what it tries, and what it found last.
pub struct Check {
    state: Arc<State>,
    addrs: Vec<IpAddr>,
    port: u16,
    every: Duration,
    last: Option<Vec<SocketAddr>>,
}

impl Check {
    /// `None` when there is nothing to check: the check is off, there is no inbound, the
    /// app is on a Unix socket, or on another host (said in the log: with `"refuse"`,
    /// `check` refuses such a configuration before it gets here).
    pub fn new(state: &Arc<State>) -> Option<Check> {
        let inbound = &state.inbound.as_ref()?.cfg;
        if inbound.app_exposure == AppExposure::Off {
            return None;
        }
        let port = inbound.upstream.tcp_port()?;
        match app_place(inbound) {
            AppPlace::ThisHost => {}
            AppPlace::Socket => return None,
            other => {
                let place = match other {
                    AppPlace::Elsewhere(ips) => {
                        let ips: Vec<String> = ips.iter().map(IpAddr::to_string).collect();
                        format!("resolves to {}", ips.join(", "))
                    }
                    AppPlace::Unresolved(why) => format!("does not resolve: {why}"),
                    _ => String::new(),
                };
                tracing::warn!(
                    upstream = %inbound.upstream, place,
                    "exposure check off: the app is not on this host"
                );
                return None;
            }
        }
        let addrs = pod_addresses(inbound);
        if addrs.is_empty() {
            tracing::warn!("exposure check: no pod address to try (set inbound.pod_ips)");
            return None;
        }
        tracing::debug!(?addrs, port, "exposure check");
        Some(Check {
            state: state.clone(),
            addrs,
            port,
            every: inbound.app_exposure_interval,
            last: None,
        })
    }

    /// One round; a result different from the last is published.
    pub async fn once(&mut self) {
        let open = probe(&self.addrs, self.port).await;
        if self.last.as_ref() != Some(&open) {
            report(&self.state, &open);
            self.last = Some(open);
        }
    }

    /// A round every `inbound.app_exposure_interval` until `stop`.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.every) => {}
                _ = stop.changed() => return,
            }
            self.once().await;
        }
    }
}

/// Publishes a new result of the check: gauge, log, readiness.
fn report(state: &State, open: &[SocketAddr]) {
    state.metrics.app_exposed.set(i64::from(!open.is_empty()));
    let refuse = state
        .inbound
        .as_ref()
        .is_some_and(|i| i.cfg.app_exposure == AppExposure::Refuse);
    if open.is_empty() {
        tracing::info!("exposure check: the app answers on loopback only");
        state.health.refuse(None);
        return;
    }
    for address in open {
        tracing::error!(
            %address,
            "the app answers on a pod address, around the sidecar: any caller that can \
             reach it can send forged identity headers; make the app listen on 127.0.0.1 \
             or a Unix socket{}",
            if refuse { " (readiness refused until then)" } else { "" }
        );
    }
    if refuse {
        let list: Vec<String> = open.iter().map(ToString::to_string).collect();
        state.health.refuse(Some(format!(
            "app_exposed: the app answers on {} around the sidecar (inbound.app_exposure = \
             \"refuse\")",
            list.join(", ")
        )));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_app_on_loopback_is_not_found_on_another_address_and_one_on_any_is() {
        // 127.0.0.2 stands for the pod's address: an app bound to 127.0.0.1 does not
        // answer there, one bound to 0.0.0.0 does.
        let pod: IpAddr = "127.0.0.2".parse().unwrap();
        let local = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = local.local_addr().unwrap().port();
        assert_eq!(probe(&[pod], port).await, vec![]);
        let any = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
        let port = any.local_addr().unwrap().port();
        assert_eq!(probe(&[pod], port).await, vec![SocketAddr::new(pod, port)]);
    }

    /// Every spelling of loopback is loopback, `0.0.0.0` is this host, a v4-mapped
    /// address is its IPv4 one; another host is elsewhere.
    #[test]
    fn the_app_is_judged_by_the_address_it_resolves_to() {
        let at = |upstream: &str| {
            let mut cfg = Inbound {
                pod_ips: vec!["10.9.8.7".parse().unwrap()],
                ..Inbound::default()
            };
            cfg.upstream = crate::config::AppUpstream::url(upstream.parse().unwrap());
            app_place(&cfg)
        };
        for here in [
            "http://127.0.0.1:8080",
            "http://127.1:8080",
            "http://2130706433:8080",
            "http://0x7f000001:8080",
            "http://[::ffff:127.0.0.1]:8080",
            "http://[::1]:8080",
            "http://0.0.0.0:8080",
            "http://[::]:8080",
            "http://localhost:8080",
            "http://10.9.8.7:8080",
        ] {
            assert_eq!(at(here), AppPlace::ThisHost, "{here}");
        }
        assert_eq!(
            at("http://192.0.2.1:8080"),
            AppPlace::Elsewhere(vec!["192.0.2.1".parse().unwrap()])
        );
        assert_eq!(
            at("http://[::ffff:192.0.2.1]:8080"),
            AppPlace::Elsewhere(vec!["192.0.2.1".parse().unwrap()])
        );
        let sock = Inbound {
            upstream: crate::config::AppUpstream::unix(std::path::Path::new("/run/app.sock")),
            ..Inbound::default()
        };
        assert_eq!(app_place(&sock), AppPlace::Socket);
    }

    /// The default addresses are this host's, read independently from the kernel's own
    /// tables (`/proc/net/fib_trie` for IPv4 LOCAL routes, `/proc/net/if_inet6`): the same
    /// set, loopback and link-local left out — and on a host with an address besides
    /// loopback (a pod always has one), not empty.
    #[test]
    fn default_addresses_are_this_hosts_without_loopback() {
        let mut expected = std::collections::BTreeSet::new();
        if let Ok(trie) = std::fs::read_to_string("/proc/net/fib_trie") {
            let lines: Vec<&str> = trie.lines().collect();
            for pair in lines.windows(2) {
                if pair[1].trim() == "/32 host LOCAL" {
                    if let Some(ip) = pair[0].trim().strip_prefix("|-- ") {
                        expected.insert(ip.parse::<IpAddr>().unwrap());
                    }
                }
            }
        }
        if let Ok(v6) = std::fs::read_to_string("/proc/net/if_inet6") {
            for line in v6.lines() {
                let hex = line.split_whitespace().next().unwrap();
                let bits = u128::from_str_radix(hex, 16).unwrap();
                expected.insert(IpAddr::V6(std::net::Ipv6Addr::from(bits)));
            }
        }
        expected.retain(|ip| !ip.is_loopback() && !is_link_local(ip));
        let found: std::collections::BTreeSet<IpAddr> =
            pod_addresses(&Inbound::default()).into_iter().collect();
        assert_eq!(found, expected);
        let has_network = std::fs::read_to_string("/proc/net/dev").is_ok_and(|d| {
            d.lines()
                .skip(2)
                .any(|l| !l.trim_start().starts_with("lo:"))
        });
        if has_network {
            assert!(
                !found.is_empty(),
                "an interface besides lo, and no address found"
            );
        }
        let given = Inbound {
            pod_ips: vec!["127.0.0.2".parse().unwrap()],
            ..Inbound::default()
        };
        assert_eq!(
            pod_addresses(&given),
            given.pod_ips,
            "given ones are used as given"
        );
    }
}
