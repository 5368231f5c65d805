//! `[fleet]` (DESIGN.md "Fleet"): the store the replicas of one service share their
//! limits and single-use tokens in, and the scopes that use it.
use std::time::Duration;

use serde::Deserialize;

use super::FilePath;

/// Where a caller's rate limit (`[callers.<name>] rate_limit_scope`) or the replay cache
/// (`inbound.replay_scope`) holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Each sidecar on its own (a limit is multiplied by the replicas).
    #[default]
    Sidecar,
    /// Every replica together, through `[fleet]`.
    Fleet,
}

impl Scope {
    pub fn word(self) -> &'static str {
        match self {
            Scope::Sidecar => "sidecar",
            Scope::Fleet => "fleet",
        }
    }
}

/// What a fleet operation does when the store cannot answer within `fleet.timeout`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Decide with this sidecar's own state (its bucket, its replay cache).
    Local,
    /// 503 `fleet_unavailable`.
    Refuse,
}

section! {
    /// `[fleet]`: Redis (or Valkey) shared by the sidecars of this service's replicas.
    pub struct Fleet {
        /// `redis://host:6379/0`, `rediss://host:6380/0` (TLS) or `unix:///path/redis.sock`.
        /// No password in it: `password_file`.
        pub redis: String = String::new(),
        /// The password (`AUTH`; the URL's user name, if any, with it): re-read when the
        /// file changes, never logged.
        pub password_file: Option<FilePath> = None,
        /// How long one operation may take before the fallback decides.
        #[serde(with = "humantime_serde")]
        pub timeout: Duration = Duration::from_millis(25),
        /// Every key's prefix (default `trustgate:<identity.name>:`): the replicas of a
        /// service share it, other services never touch its keys.
        pub key_prefix: String = String::new(),
        /// Limits when the store cannot answer: each sidecar's own bucket, or 503.
        pub on_error: OnError = OnError::Local,
        /// Replay checks when the store cannot answer: 503, or each sidecar's own cache.
        pub replay_on_error: OnError = OnError::Refuse,
        /// CA certificates (PEM) for `rediss://` (default: the system's roots).
        pub ca_file: Option<FilePath> = None,
    }
}

/// What `fleet.redis` names, as far as the text can tell (the address is not resolved).
pub fn check_url(url: &str) -> Result<(), String> {
    if url.is_empty() {
        return Err(
            "is required: redis://host:6379/0, rediss://host:6380/0 or unix:///path/redis.sock"
                .into(),
        );
    }
    let scheme = url.split_once("://").map(|(s, _)| s);
    if !matches!(scheme, Some("redis" | "rediss" | "unix")) {
        // The text is not repeated: a mistyped URL may hold a password.
        return Err("is not a redis://, rediss:// or unix:// URL".into());
    }
    if url.contains('#') {
        // redis-rs reads `rediss://…/#insecure` as "do not verify the certificate".
        return Err("has a #fragment (#insecure turns certificate checks off): remove it; a private CA goes in fleet.ca_file".into());
    }
    let info = redis::IntoConnectionInfo::into_connection_info(url)
        .map_err(|e| format!("is not a Redis URL: {e}"))?;
    if info.redis_settings().password().is_some() {
        // The URL is in logs and in `kubectl describe`; the password has its own file.
        return Err("carries a password: put it in fleet.password_file".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{from_toml_str, Config, ConfigError};
    use super::*;

    const MIN: &str = r#"
[identity]
name = "orders"
private_key = "/k/orders.key"
[trust]
authorized_keys = "/k/authorized_keys"
"#;

    fn parse(extra: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        from_toml_str(&format!("{MIN}{extra}"), "t.toml", env)
    }

    fn problems(extra: &str) -> Vec<String> {
        parse(extra, &[]).unwrap_err().problems
    }

    #[test]
    fn a_fleet_with_its_defaults_and_the_scopes_that_use_it() {
        let c = parse(
            "[inbound]\nrequire_request_binding = true\nreplay_scope = \"fleet\"\n\
             [fleet]\nredis = \"redis://127.0.0.1:6379/0\"\n\
             [callers.billing]\nrate_limit = \"10/s\"\nrate_limit_scope = \"fleet\"\n",
            &[],
        )
        .unwrap();
        let f = c.fleet.unwrap();
        assert_eq!(f.timeout, Duration::from_millis(25));
        assert_eq!(f.key_prefix, "trustgate:orders:");
        assert_eq!(
            (f.on_error, f.replay_on_error),
            (OnError::Local, OnError::Refuse)
        );
        assert_eq!(c.callers["billing"].rate_limit_scope, Scope::Fleet);
        assert_eq!(c.inbound.unwrap().replay_scope, Scope::Fleet);
        // Without the section: no fleet; scopes default to the sidecar.
        let c = parse("[inbound]\n[callers.billing]\nrate_limit = \"10/s\"\n", &[]).unwrap();
        assert!(c.fleet.is_none());
        assert_eq!(c.callers["billing"].rate_limit_scope, Scope::Sidecar);
        // Every key from the environment too.
        let c = parse(
            "[outbound]\n",
            &[
                ("TRUSTGATE_FLEET_REDIS", "unix:///run/redis.sock"),
                ("TRUSTGATE_FLEET_TIMEOUT", "5ms"),
                ("TRUSTGATE_FLEET_ON_ERROR", "refuse"),
                ("TRUSTGATE_FLEET_KEY_PREFIX", "x:"),
            ],
        )
        .unwrap();
        let f = c.fleet.unwrap();
        assert_eq!(f.redis, "unix:///run/redis.sock");
        assert_eq!(
            (f.timeout, f.on_error),
            (Duration::from_millis(5), OnError::Refuse)
        );
        assert_eq!(f.key_prefix, "x:");
    }

    #[test]
    fn each_mistake_is_named_by_its_key() {
        let cases: &[(&str, &str)] = &[
            ("[fleet]\n", "fleet.redis: is required"),
            ("[fleet]\nredis = \"http://r:6379\"\n", "fleet.redis: is not a redis://"),
            (
                "[fleet]\nredis = \"redis://:hunter2@r:6379/0\"\n",
                "fleet.redis: carries a password: put it in fleet.password_file",
            ),
            (
                "[fleet]\nredis = \"redis://r:6379/x\"\n",
                "fleet.redis: is not a Redis URL",
            ),
            (
                "[fleet]\nredis = \"rediss://r:6380/0#insecure\"\n",
                "fleet.redis: has a #fragment",
            ),
            (
                "[fleet]\nredis = \"redis://r\"\ntimeout = \"0s\"\n",
                "fleet.timeout: must be greater than zero",
            ),
            (
                "[fleet]\nredis = \"redis://r\"\ntimeout = \"10s\"\n",
                "fleet.timeout: is longer than 5s",
            ),
            (
                "[fleet]\nredis = \"redis://r\"\nca_file = \"/ca.pem\"\n",
                "fleet.ca_file: is only for rediss://",
            ),
            (
                "[fleet]\nredis = \"redis://r\"\non_error = \"open\"\n",
                "fleet.on_error",
            ),
            (
                "[callers.billing]\nrate_limit = \"1/s\"\nrate_limit_scope = \"fleet\"\n",
                "callers.billing.rate_limit_scope: is \"fleet\" but there is no [fleet] section",
            ),
            (
                "[fleet]\nredis = \"redis://r\"\n[callers.billing]\nrate_limit_scope = \"fleet\"\nmax_concurrent = 3\n",
                "callers.billing.rate_limit_scope: is \"fleet\" but there is no rate_limit to share",
            ),
            (
                "[inbound]\nrequire_request_binding = true\nreplay_scope = \"fleet\"\n",
                "inbound.replay_scope: is \"fleet\" but there is no [fleet] section",
            ),
            (
                "[fleet]\nredis = \"redis://r\"\n[inbound]\nreplay_scope = \"fleet\"\n",
                "inbound.replay_scope: is \"fleet\" but inbound.require_request_binding is false",
            ),
            (
                "[callers.billing]\nrate_limit_scope = \"cluster\"\n",
                "callers.billing.rate_limit_scope",
            ),
        ];
        for (extra, expected) in cases {
            let all = problems(extra);
            assert!(
                all.iter().any(|p| p.contains(expected)),
                "{extra}: {all:?} lacks «{expected}»"
            );
            assert!(
                !all.iter().any(|p| p.contains("hunter2")),
                "a password repeated: {all:?}"
            );
        }
    }
}
