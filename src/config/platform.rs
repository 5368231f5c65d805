//! `[[trust.issuers]]`: issuers that vouch for many callers (DESIGN.md "Platform
//! identity"), and where a pod finds its own credentials.
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use http::Uri;
use serde::Deserialize;

use super::{values, FilePath, Trust};

/// Where a pod finds its API server's CA and its own service-account token.
pub const POD_SA_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
pub const POD_CA_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";
pub const POD_TOKEN_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/// `issuer = "kubernetes:///"`: the issuer is read from the `iss` of this pod's own token.
pub const ISSUER_FROM_POD: &str = "kubernetes:///";

table! {
    /// One `[[trust.issuers]]` entry (DESIGN.md "Platform identity").
    #[derive(Clone, Debug, Deserialize)]
    pub struct IssuerConfig {
        /// The label in metrics (`identity="issuer:<name>"`), logs and `/trust`; a DNS label.
        #[serde(deserialize_with = "values::identity")]
        pub name: String,
        pub kind: crate::keys::IssuerKind,
        /// `iss`, exactly; `kubernetes:///`: read from this pod's own token. Empty: none (a
        /// SPIFFE issuer only, then `iss` is not checked).
        #[serde(default)]
        pub issuer: String,
        /// Default: discovery (`<issuer>/.well-known/openid-configuration` → `jwks_uri`); for
        /// `kubernetes:///`, the API server's own `/openid/v1/jwks`.
        #[serde(default, deserialize_with = "values::optional_url")]
        pub jwks_url: Option<Uri>,
        /// CA bundle for discovery and the JWKS (kubernetes default: the pod's `ca.crt`;
        /// others: `trust.fetch_ca_file`, else the system roots).
        #[serde(default)]
        pub ca_file: Option<FilePath>,
        /// A token sent as `Authorization: Bearer` when fetching, re-read at every fetch
        /// (kubernetes default: the pod's own token; `""`: none).
        #[serde(default)]
        pub bearer_token_file: Option<FilePath>,
        /// `aud` must name one of these. Default: `[identity.name]`, filled in by the check pass.
        #[serde(default, deserialize_with = "values::non_empty_strings")]
        pub audiences: Vec<String>,
        #[serde(default = "day", with = "humantime_serde")]
        pub max_token_ttl: Duration,
        /// spiffe: the trust domain of every subject.
        #[serde(default)]
        pub trust_domain: String,
        /// Subject → caller identity (kubernetes: `"<namespace>/<serviceaccount>"`; spiffe:
        /// the SPIFFE ID; oidc: `sub`).
        #[serde(default)]
        pub callers: BTreeMap<String, String>,
        /// Its tokens are people's (`[inbound.users]`), never a caller's: oidc only, no
        /// `callers`, `audiences` required.
        #[serde(default)]
        pub users: bool,
        /// Accept an `aud` list naming other audiences too (default:
        /// `trust.allow_multi_audience`, filled in by the check pass).
        #[serde(default)]
        pub allow_multi_audience: Option<bool>,
    }
}

fn day() -> Duration {
    Duration::from_secs(24 * 3600)
}

impl IssuerConfig {
    /// The CA bundle to fetch with, defaults applied (`None`: the system roots).
    pub fn ca_path<'a>(&'a self, trust: &'a Trust) -> Option<&'a Path> {
        match &self.ca_file {
            Some(p) if p.as_os_str().is_empty() => None,
            Some(p) => Some(p),
            None if self.kind == crate::keys::IssuerKind::Kubernetes => {
                Some(Path::new(POD_CA_FILE))
            }
            None => trust.fetch_ca_file.as_deref(),
        }
    }

    /// The bearer token file, defaults applied (`None`: no token sent).
    pub fn bearer_path(&self) -> Option<&Path> {
        match &self.bearer_token_file {
            Some(p) if p.as_os_str().is_empty() => None,
            Some(p) => Some(p),
            None if self.kind == crate::keys::IssuerKind::Kubernetes => {
                Some(Path::new(POD_TOKEN_FILE))
            }
            None => None,
        }
    }

    /// `issuer = "kubernetes:///"`.
    pub fn from_pod(&self) -> bool {
        self.issuer == ISSUER_FROM_POD
    }
}
