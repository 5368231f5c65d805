//! Issuers that vouch for many callers (`[[trust.issuers]]`): how their keys are found
//! and fetched. They are sources like `<identity>.url` entries — the same state machine,
//! scheduler, unknown-kid refetch, stale-on-error and 503 ([`super::sources`]) and the
//! same fetcher ([`Fetcher`]); what differs is here: where the JWKS is (an explicit
//! `jwks_url`, OIDC discovery at the issuer, or the API server's own path for
//! `kubernetes:///`, as Pomerium does), a bearer token sent with each fetch, the issuer's
//! own CA, kids kept as published, and the rules its tokens meet ([`Vouch`]).
//!
//! Nothing in a token ever becomes a URL: discovery starts from the configured issuer
//! (or, for `kubernetes:///`, from this pod's own token, a file the kubelet writes).
use std::path::Path;
use std::sync::Arc;

use http::Uri;

use super::fetch::{FetchError, Fetched, Fetcher};
use crate::config::{IssuerConfig, Trust as TrustConfig};
use crate::keys::{parse_issuer_jwks, Vouch};
use crate::tls::TlsSetupError;

/// The discovery document's path under an issuer (OpenID Connect Discovery 1.0 §4).
const DISCOVERY: &str = "/.well-known/openid-configuration";

/// The API server's own JWKS path (KEP-1393), used for `kubernetes:///`.
const API_SERVER_JWKS: &str = "/openid/v1/jwks";

/// One configured issuer and how to reach it.
pub struct IssuerSource {
    pub cfg: IssuerConfig,
    fetcher: Fetcher,
    /// The explicit `jwks_url`, or for `kubernetes:///` the API server's (from
    /// `KUBERNETES_SERVICE_HOST`/`_PORT`); `None`: discovery.
    jwks: Option<Uri>,
}

/// What one fetch of an issuer brought: its keys, the rules they vouch by, and where
/// the JWKS was.
pub struct IssuerFetch {
    pub fetched: Fetched,
    pub vouch: Arc<Vouch>,
    pub jwks_uri: Uri,
}

impl IssuerSource {
    pub fn new(
        cfg: &IssuerConfig,
        trust: &TrustConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, TlsSetupError> {
        let fetcher = Fetcher::new(
            cfg.ca_path(trust),
            trust.allow_http_fetch,
            trust.fetch_timeout,
        )?;
        let jwks = cfg.jwks_url.clone().or_else(|| {
            if !cfg.from_pod() {
                return None;
            }
            let host = env("KUBERNETES_SERVICE_HOST")?;
            let port = env("KUBERNETES_SERVICE_PORT").unwrap_or_else(|| "443".into());
            let host = if host.contains(':') {
                format!("[{host}]")
            } else {
                host
            };
            format!("https://{host}:{port}{API_SERVER_JWKS}")
                .parse()
                .ok()
        });
        Ok(IssuerSource {
            cfg: cfg.clone(),
            fetcher,
            jwks,
        })
    }

    /// What is fetched first: the JWKS, or the discovery document.
    pub fn first_url(&self) -> Uri {
        if let Some(u) = &self.jwks {
            return u.clone();
        }
        let issuer = self.issuer_now().ok().flatten().unwrap_or_default();
        format!("{}{DISCOVERY}", issuer.trim_end_matches('/'))
            .parse()
            .unwrap_or_else(|_| Uri::from_static("https://kubernetes.default.svc/"))
    }

    /// The label of its metrics and logs.
    pub fn label(&self) -> String {
        format!("issuer:{}", self.cfg.name)
    }

    /// The `iss` its tokens must carry now: the configured one, or the `iss` of this pod's
    /// own token (`kubernetes:///`, read again at every fetch: the kubelet rewrites it).
    /// `None`: a SPIFFE issuer that checks no `iss`.
    pub fn issuer_now(&self) -> Result<Option<String>, FetchError> {
        if !self.cfg.from_pod() {
            return Ok((!self.cfg.issuer.is_empty()).then(|| self.cfg.issuer.clone()));
        }
        let token = self.bearer()?.ok_or_else(|| {
            FetchError::Refused("kubernetes:/// needs this pod's token (bearer_token_file)".into())
        })?;
        unverified_iss(&token).map(Some).ok_or_else(|| {
            FetchError::Invalid("the pod's token has no iss to take the issuer from".into())
        })
    }

    /// The bearer token, read now (the kubelet rotates it), surrounding whitespace trimmed.
    fn bearer(&self) -> Result<Option<String>, FetchError> {
        let Some(path) = self.cfg.bearer_path() else {
            return Ok(None);
        };
        read_token_file(path)
            .map(Some)
            .map_err(|e| FetchError::Refused(format!("bearer_token_file: {e}")))
    }

    /// Discovery (when needed), then the JWKS; every key by the issuer's rules.
    pub async fn fetch(&self) -> Result<IssuerFetch, FetchError> {
        let issuer = self.issuer_now()?;
        let bearer = self.bearer()?;
        let jwks_uri = match &self.jwks {
            Some(u) => u.clone(),
            None => {
                let issuer = issuer.as_deref().ok_or_else(|| {
                    FetchError::Refused("no jwks_url and no issuer to discover it at".into())
                })?;
                self.discover(issuer, bearer.as_deref()).await?
            }
        };
        let to_jwks = match bearer {
            Some(b) if self.bearer_may_go_to(issuer.as_deref(), &jwks_uri) => Some(b),
            Some(_) => {
                tracing::info!(
                    issuer = %self.cfg.name, url = %jwks_uri,
                    "the discovered jwks_uri is on another origin, verified by public roots only: \
                     fetched without bearer_token_file's token (set jwks_url, or the issuer's \
                     ca_file, to send it there)"
                );
                None
            }
            None => None,
        };
        let (body, max_age) = self.fetcher.get(&jwks_uri, to_jwks.as_deref()).await?;
        let (keys, skipped) =
            parse_issuer_jwks(&body, self.cfg.kind).map_err(FetchError::Invalid)?;
        for why in &skipped {
            tracing::debug!(issuer = %self.cfg.name, url = %jwks_uri, why, "issuer key skipped");
        }
        let vouch = Arc::new(Vouch {
            name: self.cfg.name.clone(),
            kind: self.cfg.kind,
            issuer,
            audiences: self.cfg.audiences.clone(),
            max_ttl: self.cfg.max_token_ttl,
            callers: self.cfg.callers.clone().into_iter().collect(),
            trust_domain: (!self.cfg.trust_domain.is_empty())
                .then(|| self.cfg.trust_domain.clone()),
            users: self.cfg.users,
            allow_multi_audience: self.cfg.allow_multi_audience.unwrap_or(false),
        });
        Ok(IssuerFetch {
            fetched: Fetched { keys, max_age },
            vouch,
            jwks_uri,
        })
    }

    /// Whether the bearer token (by default the pod's own service-account token, an API
    /// server credential) may be sent to `jwks_uri`: only where the issuer is — a URL the
    /// configuration names (`jwks_url`, the API server of `kubernetes:///`), the issuer's
    /// own origin, or a host verified by the issuer's own CA — never to a host that a
    /// discovery document names and only public roots verify.
    fn bearer_may_go_to(&self, issuer: Option<&str>, jwks_uri: &Uri) -> bool {
        if self.jwks.is_some() || self.own_ca() {
            return true;
        }
        let origin = |u: &Uri| {
            (
                u.scheme_str().map(str::to_ascii_lowercase),
                u.host().map(str::to_ascii_lowercase),
                u.port_u16().or(match u.scheme_str() {
                    Some("http") => Some(80),
                    _ => Some(443),
                }),
            )
        };
        issuer
            .and_then(|i| i.parse::<Uri>().ok())
            .is_some_and(|i| origin(&i) == origin(jwks_uri))
    }

    /// The issuer's own CA verifies its hosts (set for it, or the cluster's for kind
    /// kubernetes), not the system's public roots nor `trust.fetch_ca_file`.
    fn own_ca(&self) -> bool {
        match &self.cfg.ca_file {
            Some(p) => !p.as_os_str().is_empty(),
            None => self.cfg.kind == crate::keys::IssuerKind::Kubernetes,
        }
    }

    /// `<issuer>/.well-known/openid-configuration` → `jwks_uri`. The document must name
    /// the same issuer (OIDC Discovery §4.3); `jwks_uri` may be on another origin (a real
    /// cluster's is `https://<node-ip>:6443/openid/v1/jwks`) but is fetched under the same
    /// rules (`https://` unless allowed, the same CA).
    async fn discover(&self, issuer: &str, bearer: Option<&str>) -> Result<Uri, FetchError> {
        let url: Uri = format!("{}{DISCOVERY}", issuer.trim_end_matches('/'))
            .parse()
            .map_err(|_| FetchError::Refused(format!("issuer \"{issuer}\" is not a URL")))?;
        let (body, _) = self.fetcher.get(&url, bearer).await?;
        let doc: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| FetchError::Invalid(format!("discovery document is not JSON ({e})")))?;
        if doc.get("issuer").and_then(|v| v.as_str()) != Some(issuer) {
            return Err(FetchError::Invalid(format!(
                "discovery document names issuer {}, not \"{issuer}\"",
                doc.get("issuer").map_or("none".into(), |v| v.to_string())
            )));
        }
        let jwks = doc
            .get("jwks_uri")
            .and_then(|v| v.as_str())
            .ok_or_else(|| FetchError::Invalid("discovery document has no jwks_uri".into()))?;
        let uri: Uri = jwks
            .parse()
            .map_err(|_| FetchError::Invalid(format!("jwks_uri \"{jwks}\" is not a URL")))?;
        self.fetcher.allowed(&uri)?;
        Ok(uri)
    }
}

/// A token file (a projected service-account token): its text, whitespace trimmed; an
/// empty file is an error.
pub fn read_token_file(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(format!("{}: is empty", path.display()));
    }
    Ok(token.to_owned())
}

/// The `iss` of this pod's own token. Unverified: it only names the issuer this pod's
/// cluster uses, which the keys fetched from the API server must then match.
fn unverified_iss(token: &str) -> Option<String> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v.get("iss")?.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(extra: &str) -> crate::config::Config {
        let text = format!(
            "[identity]\nname = \"billing\"\n[inbound]\n[[trust.issuers]]\nname = \"c\"\n\
             kind = \"kubernetes\"\ncallers = {{ \"shop/orders\" = \"orders\" }}\n\
             ca_file = \"\"\n{extra}"
        );
        crate::config::from_toml_str(&text, "t.toml", Vec::new()).unwrap()
    }

    #[test]
    fn kubernetes_from_the_pod_fetches_from_the_api_server_it_runs_under() {
        let c = cfg("issuer = \"kubernetes:///\"\n");
        let env = |k: &str| match k {
            "KUBERNETES_SERVICE_HOST" => Some("fd00::1".to_owned()),
            "KUBERNETES_SERVICE_PORT" => Some("6443".to_owned()),
            _ => None,
        };
        let i = IssuerSource::new(&c.trust.issuers[0], &c.trust, &env).unwrap();
        assert_eq!(i.first_url(), "https://[fd00::1]:6443/openid/v1/jwks");
        // Outside a pod: discovery at the issuer its token names (none readable here).
        let i = IssuerSource::new(&c.trust.issuers[0], &c.trust, &|_| None).unwrap();
        assert!(i.jwks.is_none());
        assert!(
            i.issuer_now().is_err(),
            "no pod token to read the issuer from"
        );
        // A configured issuer: discovery there, and `iss` is that one.
        let c = cfg("issuer = \"https://kubernetes.default.svc.cluster.local\"\n");
        let i = IssuerSource::new(&c.trust.issuers[0], &c.trust, &|_| None).unwrap();
        assert_eq!(
            i.first_url(),
            "https://kubernetes.default.svc.cluster.local/.well-known/openid-configuration"
        );
        assert_eq!(
            i.issuer_now().unwrap().as_deref(),
            Some("https://kubernetes.default.svc.cluster.local")
        );
    }
}
