//! Conversions serde does not know, named by `deserialize_with` in the declarations:
//! URLs, the app's upstream, addresses, header names, identities, methods, paths, hosts.
use std::net::IpAddr;
use std::path::Path;

use http::{HeaderName, Uri};
use serde::de::{self, Deserializer};
use serde::Deserialize;

use std::time::Duration;

use super::{AppUpstream, ClaimHeader, ClaimPointer, Rate, Sources};
use crate::keys::is_valid_identity;

fn custom<E: de::Error>(reason: impl std::fmt::Display) -> E {
    E::custom(reason)
}

/// An `http://` or `https://` URL with a host and no path.
pub(super) fn upstream<'de, D: Deserializer<'de>>(d: D) -> Result<Uri, D::Error> {
    let v = String::deserialize(d)?;
    http_upstream(&v).ok_or_else(|| {
        custom(format!(
            "\"{v}\" is not an http:// or https:// URL with a host and no path"
        ))
    })
}

fn http_upstream(v: &str) -> Option<Uri> {
    let uri = v.parse::<Uri>().ok()?;
    (matches!(uri.scheme_str(), Some("http" | "https"))
        && uri.authority().is_some()
        && uri.path_and_query().is_none_or(|p| p.as_str() == "/"))
    .then_some(uri)
}

/// The longest socket path the kernel takes (`sun_path` is 108 bytes with its NUL).
const MAX_SOCKET_PATH: usize = 107;

/// `inbound.upstream`: an `http://`/`https://` URL as for routes, or `unix://` and an
/// absolute socket path.
pub(super) fn app_upstream<'de, D: Deserializer<'de>>(d: D) -> Result<AppUpstream, D::Error> {
    let v = String::deserialize(d)?;
    if let Some(path) = v.strip_prefix("unix://") {
        let p = Path::new(path);
        if !path.starts_with('/') || p.file_name().is_none() || path.contains(['?', '#']) {
            return Err(custom(format!(
                "\"{v}\" is not unix:// and an absolute socket path (unix:///run/app/app.sock)"
            )));
        }
        if path.len() > MAX_SOCKET_PATH {
            return Err(custom(format!(
                "\"{v}\": a socket path is at most {MAX_SOCKET_PATH} bytes long"
            )));
        }
        return Ok(AppUpstream::unix(p));
    }
    http_upstream(&v).map(AppUpstream::url).ok_or_else(|| {
        custom(format!(
            "\"{v}\" is not an http:// or https:// URL with a host and no path, nor \
             unix:///path/of/a.sock"
        ))
    })
}

pub(super) fn ip_addrs<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpAddr>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|v| {
            v.trim()
                .parse::<IpAddr>()
                .map_err(|_| custom(format!("\"{v}\" is not an IP address")))
        })
        .collect()
}

fn header_name<E: de::Error>(v: &str) -> Result<HeaderName, E> {
    HeaderName::from_bytes(v.to_ascii_lowercase().as_bytes())
        .map_err(|_| custom(format!("\"{v}\" is not a valid header name")))
}

pub(super) fn header<'de, D: Deserializer<'de>>(d: D) -> Result<HeaderName, D::Error> {
    header_name(&String::deserialize(d)?)
}

pub(super) fn headers<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<HeaderName>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|h| header_name(h))
        .collect()
}

fn valid_identity<E: de::Error>(v: String) -> Result<String, E> {
    if is_valid_identity(&v) {
        Ok(v)
    } else {
        Err(custom(format!(
            "\"{v}\" is not a valid identity (a DNS label: lower-case letters, digits, '-')"
        )))
    }
}

pub(super) fn identity<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    valid_identity(String::deserialize(d)?)
}

pub(super) fn identities<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Vec::<String>::deserialize(d)?
        .into_iter()
        .map(valid_identity)
        .collect()
}

/// `inbound.public_paths`: path patterns as rules take them, but never `"*"` (every path
/// without a token is no sidecar at all).
pub(super) fn public_paths<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Vec<super::PathPattern>, D::Error> {
    let paths = Vec::<super::PathPattern>::deserialize(d)?;
    if paths.contains(&super::PathPattern::Any) {
        return Err(custom(
            "\"*\" would forward every path without a token: name the paths (\"/healthz\", \"/pub/*\")",
        ));
    }
    Ok(paths)
}

/// A host as the app names it, lower-cased.
pub(super) fn host<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let host = String::deserialize(d)?.to_ascii_lowercase();
    if host.is_empty() || host.contains('/') || host.contains(char::is_whitespace) {
        return Err(custom(format!("\"{host}\" is not a host name")));
    }
    Ok(host)
}

/// A URL (`jwks_url`): `http://` or `https://` with a host; `""` is the default (none).
pub(super) fn optional_url<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Uri>, D::Error> {
    let v = String::deserialize(d)?;
    if v.is_empty() {
        return Ok(None);
    }
    match v.parse::<Uri>() {
        Ok(uri) if matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some() => {
            Ok(Some(uri))
        }
        _ => Err(custom(format!("\"{v}\" is not an https:// URL"))),
    }
}

pub(super) fn non_empty_strings<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let list = Vec::<String>::deserialize(d)?;
    if list.iter().any(String::is_empty) {
        return Err(custom("an empty string names nothing"));
    }
    Ok(list)
}

/// `[inbound.claim_headers]`: header name → pointer (the issuers' claims), or
/// `{ pointer = "...", issuers = [...] }`.
pub(super) fn claim_headers<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ClaimHeader>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Entry {
        Pointer(String),
        Table {
            pointer: String,
            issuers: Vec<String>,
        },
    }
    let table = std::collections::BTreeMap::<String, Entry>::deserialize(d)?;
    table
        .into_iter()
        .map(|(name, entry)| {
            let (pointer, sources) = match entry {
                Entry::Pointer(p) => (p, Sources::default()),
                Entry::Table { pointer, issuers } => (
                    pointer,
                    Sources::from_names(issuers)
                        .map_err(|e| custom(format!("\"{name}\".issuers: {e}")))?,
                ),
            };
            Ok(ClaimHeader {
                name: header_name(&name)?,
                pointer: ClaimPointer::parse(&pointer).map_err(custom)?,
                sources,
            })
        })
        .collect()
}

/// `[inbound.users] context = { tenant = "/tenant" }`: name → JSON Pointer.
pub(super) fn user_context<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Vec<(String, ClaimPointer)>, D::Error> {
    std::collections::BTreeMap::<String, String>::deserialize(d)?
        .into_iter()
        .map(|(name, p)| {
            if name.is_empty() {
                return Err(custom("an empty name names nothing"));
            }
            Ok((name, ClaimPointer::parse(&p).map_err(custom)?))
        })
        .collect()
}

/// `[inbound.users.context_headers]`: header → `tctx` member.
pub(super) fn context_headers<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Vec<(HeaderName, String)>, D::Error> {
    std::collections::BTreeMap::<String, String>::deserialize(d)?
        .into_iter()
        .map(|(h, member)| Ok((header_name(&h)?, member)))
        .collect()
}

/// `"100/s"`, `"600/m"`, `"10/h"`.
pub(super) fn rate<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Rate>, D::Error> {
    let v = String::deserialize(d)?;
    let bad = || {
        custom(format!(
            "\"{v}\" is not a rate: a whole number of requests per s, m or h (\"100/s\", \"600/m\")"
        ))
    };
    let (count, unit) = v.trim().split_once('/').ok_or_else(bad)?;
    let count: u32 = count.trim().parse().map_err(|_| bad())?;
    let per = match unit.trim() {
        "s" => Duration::from_secs(1),
        "m" => Duration::from_secs(60),
        "h" => Duration::from_secs(3600),
        _ => return Err(bad()),
    };
    if count == 0 {
        return Err(custom(format!(
            "\"{v}\": a rate of zero refuses everything; remove the caller's rules instead"
        )));
    }
    Ok(Some(Rate { count, per }))
}

/// `log.level`: a filter [`super::check_log_filter`] accepts.
pub(super) fn log_filter<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    super::check_log_filter(&s).map_err(custom)?;
    Ok(s)
}
