//! Fetching a peer's published JWKS (`authorized_keys/<identity>.url`), safely:
//! `https://` only unless allowed, the configured CA bundle or the system roots, one time
//! limit over connect + response + body, a capped body, redirects followed only within
//! the same origin (scheme, host, port), and every key held to the rules of key files
//! (kid = RFC 7638 thumbprint, public keys only, no weak keys) by the same parser.
//!
//! The URL only ever comes from a file in the authorized_keys directory: nothing in a
//! token (`jku`, `x5u`, `iss`) is ever turned into one.
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CACHE_CONTROL, CONTENT_LENGTH, LOCATION, USER_AGENT};
use http::{HeaderValue, Request, StatusCode, Uri};
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::keys::{parse_public_keys, VerifyingKey};
use crate::tls::TlsSetupError;

/// A JWKS larger than this is refused (a JWKS of a few keys is a few KiB).
pub const MAX_JWKS_BYTES: usize = 256 * 1024;
/// Same-origin redirects followed at most.
const MAX_REDIRECTS: usize = 3;

/// What a successful fetch brought.
#[derive(Debug)]
pub struct Fetched {
    pub keys: Vec<VerifyingKey>,
    /// `Cache-Control: max-age`, if the server sent one (`no-cache`/`no-store` = zero).
    pub max_age: Option<Duration>,
}

/// Why a fetch failed. [`FetchError::kind`] is the metric label.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{0}")]
    Refused(String),
    #[error("cannot connect: {0}")]
    Unreachable(String),
    #[error("no complete answer within {0:?}")]
    Timeout(Duration),
    #[error("answered HTTP {0}")]
    Status(u16),
    #[error("redirected to another origin ({0}); refused")]
    Redirect(String),
    #[error("body larger than {MAX_JWKS_BYTES} bytes; refused")]
    TooLarge,
    #[error("{0}")]
    Invalid(String),
}

impl FetchError {
    pub fn kind(&self) -> &'static str {
        match self {
            FetchError::Refused(_) => "refused",
            FetchError::Unreachable(_) => "unreachable",
            FetchError::Timeout(_) => "timeout",
            FetchError::Status(_) => "http_status",
            FetchError::Redirect(_) => "redirect",
            FetchError::TooLarge => "too_large",
            FetchError::Invalid(_) => "invalid",
        }
    }
}

/// The HTTP client for key URLs.
#[derive(Clone)]
pub struct Fetcher {
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    allow_http: bool,
    timeout: Duration,
}

impl Fetcher {
    pub fn new(
        ca_file: Option<&Path>,
        allow_http: bool,
        timeout: Duration,
    ) -> Result<Self, TlsSetupError> {
        let tls = crate::tls::client_config(ca_file, None)?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(1)
            .build(https);
        Ok(Fetcher {
            client,
            allow_http,
            timeout,
        })
    }

    /// Fetches and checks one JWKS, within the time limit.
    pub async fn fetch(&self, url: &Uri) -> Result<Fetched, FetchError> {
        match tokio::time::timeout(self.timeout, self.fetch_inner(url)).await {
            Ok(result) => result,
            Err(_) => Err(FetchError::Timeout(self.timeout)),
        }
    }

    async fn fetch_inner(&self, url: &Uri) -> Result<Fetched, FetchError> {
        let (body, max_age) = self.get_inner(url, None).await?;
        let keys = parse_jwks(&body, url)?;
        Ok(Fetched { keys, max_age })
    }

    /// One JSON document (a JWKS, a discovery document), within the time limit, with a
    /// bearer token when given; its body and `Cache-Control: max-age`.
    pub async fn get(
        &self,
        url: &Uri,
        bearer: Option<&str>,
    ) -> Result<(Bytes, Option<Duration>), FetchError> {
        match tokio::time::timeout(self.timeout, self.get_inner(url, bearer)).await {
            Ok(result) => result,
            Err(_) => Err(FetchError::Timeout(self.timeout)),
        }
    }

    async fn get_inner(
        &self,
        url: &Uri,
        bearer: Option<&str>,
    ) -> Result<(Bytes, Option<Duration>), FetchError> {
        self.allowed(url)?;
        let mut target = url.clone();
        for _ in 0..=MAX_REDIRECTS {
            let mut req = Request::get(target.clone())
                .header(ACCEPT, "application/jwk-set+json, application/json")
                .header(USER_AGENT, concat!("trustgate/", env!("CARGO_PKG_VERSION")));
            if let Some(token) = bearer {
                let mut value =
                    HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                        FetchError::Refused("the bearer token is not a header value".into())
                    })?;
                value.set_sensitive(true);
                req = req.header(AUTHORIZATION, value);
            }
            let req = req
                .body(Empty::new())
                .map_err(|e| FetchError::Refused(format!("cannot make a request: {e}")))?;
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| FetchError::Unreachable(crate::http::error_chain(&e)))?;
            let status = resp.status();
            if status.is_redirection() {
                target = same_origin_redirect(&target, resp.headers().get(LOCATION))?;
                continue;
            }
            if status != StatusCode::OK {
                return Err(FetchError::Status(status.as_u16()));
            }
            let too_large = resp
                .headers()
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                .is_some_and(|n| n > MAX_JWKS_BYTES as u64);
            if too_large {
                return Err(FetchError::TooLarge);
            }
            let max_age = max_age(resp.headers().get_all(CACHE_CONTROL).iter());
            let body = Limited::new(resp.into_body(), MAX_JWKS_BYTES)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        FetchError::TooLarge
                    } else {
                        FetchError::Unreachable(format!("body: {e}"))
                    }
                })?
                .to_bytes();
            return Ok((body, max_age));
        }
        Err(FetchError::Refused(format!(
            "more than {MAX_REDIRECTS} redirects"
        )))
    }

    pub fn allowed(&self, url: &Uri) -> Result<(), FetchError> {
        match url.scheme_str() {
            Some("https") => Ok(()),
            Some("http") if self.allow_http => Ok(()),
            Some("http") => Err(FetchError::Refused(
                "http:// key URLs are refused (keys must travel over TLS); \
                 set trust.allow_http_fetch = true to allow them"
                    .into(),
            )),
            _ => Err(FetchError::Refused("not an https:// URL".into())),
        }
    }
}

/// The redirect target if it stays on the same origin.
fn same_origin_redirect(from: &Uri, location: Option<&HeaderValue>) -> Result<Uri, FetchError> {
    let location = location
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| FetchError::Invalid("redirect without a Location".into()))?;
    let to: Uri = location
        .parse()
        .map_err(|_| FetchError::Invalid(format!("redirect to \"{location}\", not a URL")))?;
    if to.scheme().is_none() && to.authority().is_none() {
        // Relative: same origin by construction.
        let pq = to
            .path_and_query()
            .map(|p| p.as_str())
            .filter(|p| p.starts_with('/'))
            .ok_or_else(|| FetchError::Invalid(format!("redirect to \"{location}\"")))?;
        let mut parts = from.clone().into_parts();
        parts.path_and_query = pq.parse().ok();
        return Uri::from_parts(parts)
            .map_err(|_| FetchError::Invalid(format!("redirect to \"{location}\"")));
    }
    let origin = |u: &Uri| {
        let scheme = u.scheme_str().unwrap_or("").to_ascii_lowercase();
        let default = if scheme == "https" { 443 } else { 80 };
        (
            scheme,
            u.host().unwrap_or("").to_ascii_lowercase(),
            u.port_u16().unwrap_or(default),
        )
    };
    if origin(&to) != origin(from) {
        return Err(FetchError::Redirect(location.to_owned()));
    }
    Ok(to)
}

/// `max-age` of `Cache-Control` (`no-cache` / `no-store` count as zero).
fn max_age<'a>(values: impl Iterator<Item = &'a HeaderValue>) -> Option<Duration> {
    let mut found = None;
    for v in values {
        for directive in v.to_str().unwrap_or("").split(',') {
            let d = directive.trim().to_ascii_lowercase();
            if d == "no-cache" || d == "no-store" {
                return Some(Duration::ZERO);
            }
            if let Some(n) = d.strip_prefix("max-age=") {
                found = n.trim_matches('"').parse().ok().map(Duration::from_secs);
            }
        }
    }
    found
}

/// A JWKS document (`{"keys": [...]}`), every key checked as a key file's would be.
pub fn parse_jwks(body: &[u8], url: &Uri) -> Result<Vec<VerifyingKey>, FetchError> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| FetchError::Invalid(format!("not JSON ({e})")))?;
    let keys = value
        .get("keys")
        .and_then(|k| k.as_array())
        .ok_or_else(|| FetchError::Invalid("not a JWKS (no \"keys\" array)".into()))?;
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    parse_public_keys(body, Path::new(&url.to_string())).map_err(|e| match e {
        crate::keys::KeyError::Invalid { reason, .. } => FetchError::Invalid(reason),
        other => FetchError::Invalid(other.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_stay_on_their_origin() {
        let from: Uri = "https://orders.example:8443/.well-known/jwks.json"
            .parse()
            .unwrap();
        let loc = |s: &'static str| HeaderValue::from_static(s);
        assert_eq!(
            same_origin_redirect(&from, Some(&loc("/keys.json"))).unwrap(),
            "https://orders.example:8443/keys.json"
        );
        assert!(same_origin_redirect(&from, Some(&loc("https://ORDERS.example:8443/k"))).is_ok());
        for other in [
            "https://evil.example:8443/k",
            "http://orders.example:8443/k",
            "https://orders.example/k",
        ] {
            let err = same_origin_redirect(&from, Some(&HeaderValue::from_static(other)));
            assert!(matches!(err, Err(FetchError::Redirect(_))), "{other}");
        }
    }

    #[test]
    fn cache_control() {
        let v = |s: &'static str| vec![HeaderValue::from_static(s)];
        assert_eq!(
            max_age(v("public, max-age=120").iter()),
            Some(Duration::from_secs(120))
        );
        assert_eq!(max_age(v("no-store").iter()), Some(Duration::ZERO));
        assert_eq!(max_age(v("public").iter()), None);
    }

    #[test]
    fn only_jwks_documents() {
        let url: Uri = "https://a/jwks".parse().unwrap();
        assert!(matches!(
            parse_jwks(b"<html>", &url),
            Err(FetchError::Invalid(_))
        ));
        assert!(matches!(
            parse_jwks(b"{\"kty\":\"EC\"}", &url),
            Err(FetchError::Invalid(_))
        ));
        assert!(parse_jwks(b"{\"keys\":[]}", &url).unwrap().is_empty());
    }
}
