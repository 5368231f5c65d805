//! From text to [`Config`]: TOML, environment overrides, one section at a time through
//! serde, every problem collected.
//!
//! serde stops at a section's first bad value; to report *every* problem, the bad value
//! is taken out and the section parsed again (its default stands in), until it parses.
//! The environment variables a section accepts, and how their text is read, come from
//! the section's own declaration: `section!` emits them through [`Section`] and
//! [`EnvKind`].
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::de::DeserializeOwned;

use super::{
    Admin, AppExposure, AppUpstream, ClaimHeader, Config, FilePath, Identity, Inbound, InboundMode,
    Limits, Log, LogFormat, Outbound, PathPattern, Rule, Trust, UpstreamProtocol,
};

/// Every problem found, one sentence each.
#[derive(Debug, thiserror::Error)]
#[error("{}", problems.join("\n"))]
pub struct ConfigError {
    pub problems: Vec<String>,
}

/// Problems, keyed, as they are found.
pub(super) struct Problems<'a> {
    source: &'a str,
    list: Vec<String>,
    /// Keys whose value was refused (a later "is required" for them says nothing new).
    failed: BTreeSet<String>,
    /// Array elements taken out, by array key, as original indices: later messages name
    /// elements as the user numbered them.
    removed: BTreeMap<String, Vec<usize>>,
    /// `section.key` → the environment variable its value came from: a problem with it
    /// names the variable, not the file.
    from_env: BTreeMap<String, String>,
}

impl<'a> Problems<'a> {
    fn new(source: &'a str) -> Self {
        Problems {
            source,
            list: Vec::new(),
            failed: BTreeSet::new(),
            removed: BTreeMap::new(),
            from_env: BTreeMap::new(),
        }
    }

    pub(super) fn add(&mut self, key: &str, reason: impl std::fmt::Display) {
        match self.from_env.get(key) {
            Some(var) => self
                .list
                .push(format!("environment variable {var} ({key}): {reason}")),
            None => self.list.push(format!("{}: {key}: {reason}", self.source)),
        }
    }

    fn env(&mut self, var: &str, reason: impl std::fmt::Display) {
        self.list
            .push(format!("environment variable {var}: {reason}"));
    }

    pub(super) fn failed(&self, key: &str) -> bool {
        self.failed.contains(key)
    }

    /// Whether a key starting with `prefix` was refused (`allow[0].paths[` for any of a
    /// list's elements).
    pub(super) fn failed_under(&self, prefix: &str) -> bool {
        self.failed
            .range(prefix.to_owned()..)
            .next()
            .is_some_and(|k| k.starts_with(prefix))
    }

    pub(super) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The configuration, if nothing was found wrong with it.
    pub(super) fn verdict<T>(self, value: T) -> Result<T, ConfigError> {
        if self.list.is_empty() {
            Ok(value)
        } else {
            Err(ConfigError {
                problems: self.list,
            })
        }
    }

    /// `array[index]` with the index the user wrote, elements taken out counted back in.
    pub(super) fn element(&self, array: &str, index: usize) -> String {
        format!("{array}[{}]", self.original_index(array, index))
    }

    /// The index the user wrote for what is now element `index` of `array`.
    fn original_index(&self, array: &str, index: usize) -> usize {
        let mut original = index;
        for &r in self.removed.get(array).map(Vec::as_slice).unwrap_or(&[]) {
            if r <= original {
                original += 1;
            }
        }
        original
    }
}

/// The configuration as far as each key alone can tell, and the problems found so far
/// (the check pass comes next).
pub(super) fn parse<'a>(
    text: &str,
    source: &'a str,
    base: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(Config, Problems<'a>), ConfigError> {
    let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let at = e.span().map(|s| {
            let before = &text[..s.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!(":{line}:{column}")
        });
        ConfigError {
            problems: vec![format!(
                "{source}{}: not valid TOML: {}",
                at.unwrap_or_default(),
                e.message()
            )],
        }
    })?;
    let mut p = Problems::new(source);
    apply_env(&mut table, env, &mut p);
    if let Some(base) = base {
        resolve_paths(&mut table, base, &p.from_env);
    }

    let mut cfg = Config {
        source: source.into(),
        ..Config::default()
    };
    for (name, value) in table {
        if name == CALLERS {
            cfg.callers = section(&mut p, &name, value).unwrap_or_default();
        } else if !read_section(&mut cfg, &mut p, &name, value) {
            let mut known: Vec<&str> = SECTIONS.iter().map(|(s, _)| *s).collect();
            known.push(CALLERS);
            let hint = did_you_mean(&name, &known).unwrap_or_default();
            p.add(&name, format!("unknown key{hint}"))
        }
    }
    Ok((cfg, p))
}

/// Parses one section, reporting unknown keys and every bad value. `None` when nothing
/// of it could be read.
fn section<T: DeserializeOwned>(p: &mut Problems, name: &str, mut value: toml::Value) -> Option<T> {
    // Each round takes one bad value out; a section has far fewer values than this.
    for _ in 0..256 {
        let mut unknown = Vec::new();
        let result: Result<T, _> = serde_path_to_error::deserialize(
            serde_ignored::Deserializer::new(value.clone(), &mut |path: serde_ignored::Path| {
                unknown.push(ignored_key(&path))
            }),
        );
        let err = match result {
            Ok(parsed) => {
                for key in unknown {
                    let known = SECTIONS
                        .iter()
                        .find(|(s, _)| *s == name)
                        .map(|(_, keys)| keys.iter().map(|(k, _)| *k).collect::<Vec<_>>())
                        .unwrap_or_default();
                    let hint = key
                        .strip_prefix('.')
                        .filter(|k| !k.contains(['.', '[']))
                        .and_then(|k| did_you_mean(k, &known));
                    p.add(
                        &format!("{name}{key}"),
                        format!("unknown key{hint}", hint = hint.unwrap_or_default()),
                    );
                }
                return Some(parsed);
            }
            Err(e) => e,
        };
        let segments: Vec<_> = err.path().iter().cloned().collect();
        let key = name.to_owned() + &user_key(p, name, &segments);
        let message = err.into_inner().message().to_owned();
        if let Some(field) = missing_field(&message) {
            let key = format!("{key}.{field}");
            if !p.failed(&key) {
                p.add(&key, "is required");
            }
        } else {
            p.add(&key, message.trim_end_matches('.'));
            p.failed.insert(key.clone());
        }
        if segments.is_empty() || !take_out(p, name, &mut value, &segments) {
            return None;
        }
    }
    None
}

/// `.routes[2].upstream`, as the user numbered the elements.
fn user_key(p: &Problems, name: &str, segments: &[serde_path_to_error::Segment]) -> String {
    use serde_path_to_error::Segment as S;
    let mut key = String::new();
    for s in segments {
        match s {
            S::Map { key: k } => {
                key.push('.');
                key.push_str(k);
            }
            S::Seq { index } => {
                let full = name.to_owned() + &key;
                key = p.element(&full, *index)[name.len()..].to_owned();
            }
            S::Enum { .. } | S::Unknown => {}
        }
    }
    key
}

/// Removes the value at `segments` (current numbering); `false` if it is not there.
fn take_out(
    p: &mut Problems,
    name: &str,
    value: &mut toml::Value,
    segments: &[serde_path_to_error::Segment],
) -> bool {
    use serde_path_to_error::Segment as S;
    let Some((last, parents)) = segments.split_last() else {
        return false;
    };
    let mut at = value;
    for s in parents {
        at = match (s, at) {
            (S::Map { key }, toml::Value::Table(t)) => match t.get_mut(key) {
                Some(v) => v,
                None => return false,
            },
            (S::Seq { index }, toml::Value::Array(a)) => match a.get_mut(*index) {
                Some(v) => v,
                None => return false,
            },
            _ => return false,
        };
    }
    match (last, at) {
        (S::Map { key }, toml::Value::Table(t)) => t.remove(key).is_some(),
        (S::Seq { index }, toml::Value::Array(a)) if *index < a.len() => {
            a.remove(*index);
            let array = name.to_owned() + &user_key(p, name, parents);
            let original = p.original_index(&array, *index);
            let removed = p.removed.entry(array).or_default();
            removed.push(original);
            removed.sort_unstable();
            true
        }
        _ => false,
    }
}

/// The field of serde's "missing field `x`" message.
fn missing_field(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.split('`').next()
}

/// `.allow[0].methodz`, relative to the section (serde_ignored's own Display shows
/// `Option` layers as `?`).
/// `" (did you mean listen?)"` when one known name is close to a misspelt one.
fn did_you_mean(word: &str, known: &[&str]) -> Option<String> {
    known
        .iter()
        .map(|k| (strsim::jaro_winkler(word, k), k))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| format!(" (did you mean {k}?)"))
}

fn ignored_key(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path as P;
    match path {
        P::Root => String::new(),
        P::Seq { parent, index } => format!("{}[{index}]", ignored_key(parent)),
        P::Map { parent, key } => format!("{}.{key}", ignored_key(parent)),
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            ignored_key(parent)
        }
    }
}

// ---------------------------------------------------------------------------------------
// The sections' shapes: environment overrides and file paths

/// How a key's text is read from an environment variable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Str,
    Bool,
    Int,
    /// Comma-separated, or a TOML array.
    List,
    /// A [`FilePath`]: text, resolved against the configuration's directory.
    Path,
    /// A table (keys of the user's: names, pointers): file-only.
    Table,
    /// An array of tables, and the keys of its elements: file-only.
    Tables(&'static [(&'static str, Kind)]),
}

/// `[callers.<name>]`: file-only, its keys are names, not declarations.
const CALLERS: &str = "callers";

/// Where a section's parse lands: the section itself (absent: its defaults), or an
/// optional one (`[inbound]`, `[outbound]`: absent, no listener).
trait Slot<T> {
    fn put(&mut self, parsed: Option<T>);
}

impl<T: Default> Slot<T> for T {
    fn put(&mut self, parsed: Option<T>) {
        *self = parsed.unwrap_or_default();
    }
}

impl<T> Slot<T> for Option<T> {
    fn put(&mut self, parsed: Option<T>) {
        *self = parsed;
    }
}

/// The declared sections, each once: the field of [`Config`] it fills and its type give
/// both the list of sections (keys, environment variables, paths) and the parse.
macro_rules! sections {
    ($( $name:ident: $ty:ty ),* $(,)?) => {
        /// The declared sections and their keys.
        const SECTIONS: &[(&str, &[(&str, Kind)])] =
            &[$( (stringify!($name), <$ty as Section>::KEYS) ),*];

        /// Parses section `name` into `cfg`; `false` if no section has that name.
        fn read_section(cfg: &mut Config, p: &mut Problems, name: &str, value: toml::Value) -> bool {
            match name {
                $( stringify!($name) => Slot::<$ty>::put(&mut cfg.$name, section::<$ty>(p, name, value)), )*
                _ => return false,
            }
            true
        }
    };
}

sections! {
    identity: Identity,
    trust: Trust,
    inbound: Inbound,
    outbound: Outbound,
    admin: Admin,
    limits: Limits,
    log: Log,
    fleet: super::Fleet,
    authz: super::Authz,
}

/// Variables with the prefix that are not configuration keys.
fn env_ignored(name: &str) -> bool {
    name == "TRUSTGATE_CONFIG"
        || name.starts_with("TRUSTGATE_TEST")
        || name == "TRUSTGATE_REQUIRE_INTEROP"
}

fn apply_env(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
    p: &mut Problems,
) {
    let mut vars: Vec<_> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with("TRUSTGATE_") && !env_ignored(k))
        .collect();
    if vars.is_empty() {
        return;
    }
    vars.sort();
    for (var, value) in vars {
        let rest = var["TRUSTGATE_".len()..].to_ascii_lowercase();
        let found = rest.split_once('_').and_then(|(section, key)| {
            let (name, keys) = SECTIONS.iter().find(|(s, _)| *s == section)?;
            let (key, kind) = keys.iter().find(|(k, _)| *k == key)?;
            (!matches!(kind, Kind::Table | Kind::Tables(_))).then_some((*name, *key, *kind))
        });
        let Some((section, key, kind)) = found else {
            p.env(
                &var,
                "not a configuration key (TRUSTGATE_<SECTION>_<KEY>, e.g. TRUSTGATE_INBOUND_LISTEN)",
            );
            continue;
        };
        let parsed = match kind {
            Kind::Str | Kind::Path | Kind::Table | Kind::Tables(_) => {
                Ok(toml::Value::String(value.clone()))
            }
            Kind::Bool => match value.trim() {
                "true" | "1" => Ok(toml::Value::Boolean(true)),
                "false" | "0" => Ok(toml::Value::Boolean(false)),
                v => Err(format!("\"{v}\" is not true or false")),
            },
            Kind::Int => value
                .trim()
                .parse::<i64>()
                .map(toml::Value::Integer)
                .map_err(|_| format!("\"{value}\" is not a whole number")),
            Kind::List => {
                let v = value.trim();
                if v.starts_with('[') {
                    format!("v = {v}")
                        .parse::<toml::Table>()
                        .ok()
                        .and_then(|mut t| t.remove("v"))
                        .ok_or_else(|| format!("\"{v}\" is not a TOML array"))
                } else {
                    Ok(toml::Value::Array(
                        v.split(',')
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                            .map(|s| toml::Value::String(s.to_owned()))
                            .collect(),
                    ))
                }
            }
        };
        match parsed {
            Ok(v) => {
                let entry = table
                    .entry(section)
                    .or_insert_with(|| toml::Value::Table(Default::default()));
                match entry.as_table_mut() {
                    Some(t) => {
                        t.insert(key.to_owned(), v);
                        p.from_env.insert(format!("{section}.{key}"), var.clone());
                    }
                    None => p.env(&var, format!("[{section}] is not a table in the file")),
                }
            }
            Err(reason) => p.env(&var, reason),
        }
    }
}

/// Relative [`FilePath`] values in the file become relative to the configuration's
/// directory; one from a `TRUSTGATE_*` variable (`from_env`) to the working directory, as
/// on a command line (an empty one stays empty: it means "none").
fn resolve_paths(table: &mut toml::Table, base: &Path, from_env: &BTreeMap<String, String>) {
    let cwd = std::env::current_dir().unwrap_or_default();
    let resolve = |v: Option<&mut toml::Value>, base: &Path| {
        if let Some(toml::Value::String(s)) = v {
            if !s.is_empty() && Path::new(s.as_str()).is_relative() {
                *s = base.join(&*s).to_string_lossy().into_owned();
            }
        }
    };
    // The sections' file paths, and those of the elements of their arrays of tables
    // (`[[outbound.routes]] token_file`), as the declarations give them.
    for (section, keys) in SECTIONS {
        let Some(toml::Value::Table(t)) = table.get_mut(*section) else {
            continue;
        };
        for &(key, kind) in keys.iter() {
            match kind {
                Kind::Path => {
                    let env = from_env.contains_key(&format!("{section}.{key}"));
                    resolve(t.get_mut(key), if env { &cwd } else { base });
                }
                Kind::Tables(element) => {
                    let Some(toml::Value::Array(items)) = t.get_mut(key) else {
                        continue;
                    };
                    for item in items.iter_mut().filter_map(toml::Value::as_table_mut) {
                        for (key, _) in element.iter().filter(|(_, k)| *k == Kind::Path) {
                            resolve(item.get_mut(*key), base);
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

/// How each type's text is read from an environment variable, declared once per type:
/// [`section!`](super) gives every field's `Kind` through this trait, so a field of a type
/// without it is a compile error, not a string read the day someone sets it.
pub(super) trait EnvKind {
    const KIND: Kind;
}

macro_rules! env_kind {
    ($kind:ident: $($t:ty),* $(,)?) => {
        $(impl EnvKind for $t {
            const KIND: Kind = Kind::$kind;
        })*
    };
}

env_kind!(Str: String, std::time::Duration, std::net::SocketAddr, http::HeaderName);
env_kind!(Str: AppUpstream, AppExposure, InboundMode, LogFormat, UpstreamProtocol);
env_kind!(Str: http::Uri, Option<http::Uri>, crate::keys::IssuerKind, Option<std::net::SocketAddr>);
env_kind!(Bool: bool, Option<bool>);
env_kind!(Int: u16, u32, u64, usize);
env_kind!(List: Vec<String>, Vec<http::HeaderName>, Vec<std::net::IpAddr>, Vec<PathPattern>);
env_kind!(Table: Vec<ClaimHeader>, std::collections::BTreeMap<String, String>);
env_kind!(Table: Vec<(String, super::ClaimPointer)>, Vec<(http::HeaderName, String)>);
env_kind!(Table: Option<super::Users>);
env_kind!(Str: super::UsersMode, super::Scope, super::OnError, super::DpopMode);
env_kind!(Path: Option<FilePath>);

/// The rules' keys are [`Rule::FIELDS`] (and `name`, `audit`): none is a file path.
impl EnvKind for Vec<Rule> {
    const KIND: Kind = Kind::Tables(&[]);
}

/// An array of tables whose elements are declared with `table!`.
impl<T: Section> EnvKind for Vec<T> {
    const KIND: Kind = Kind::Tables(T::KEYS);
}

/// A section's keys and how each is read from the environment (emitted by `section!`).
pub(super) trait Section {
    const KEYS: &'static [(&'static str, Kind)];
}

#[cfg(test)]
fn shape<T: Section>() -> Vec<(&'static str, Kind)> {
    T::KEYS.to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_come_from_the_declarations() {
        let inbound = shape::<Inbound>();
        let kind = |k: &str| inbound.iter().find(|(n, _)| *n == k).map(|(_, k)| *k);
        assert_eq!(kind("listen"), Some(Kind::Str));
        assert_eq!(kind("upstream"), Some(Kind::Str));
        assert_eq!(kind("mode"), Some(Kind::Str));
        assert_eq!(kind("public_paths"), Some(Kind::List));
        assert_eq!(kind("signed_headers"), Some(Kind::List));
        assert_eq!(kind("require_request_binding"), Some(Kind::Bool));
        assert_eq!(kind("verified_cache_size"), Some(Kind::Int));
        assert_eq!(kind("tls_cert"), Some(Kind::Path));
        assert_eq!(kind("allow"), Some(Kind::Tables(&[])));
        let outbound = shape::<Outbound>();
        let routes = outbound.iter().find(|(n, _)| *n == "routes").unwrap().1;
        assert!(
            matches!(routes, Kind::Tables(keys) if keys.contains(&("token_file", Kind::Path))),
            "{routes:?}"
        );
        let trust = shape::<Trust>();
        assert!(trust.contains(&("leeway", Kind::Str)));
        assert!(trust.contains(&("authorized_keys", Kind::Path)));
        assert!(trust.contains(&("allow_multi_audience", Kind::Bool)));
    }

    /// The annotated example names every key each section declares — and every key of the
    /// arrays of tables (`[[outbound.routes]]`, `[[trust.issuers]]`) and of the rules — in
    /// that section's part of the file, as a setting or in a comment: a key added to a
    /// declaration and not to the example fails here.
    #[test]
    fn the_annotated_example_documents_every_key() {
        let text = include_str!("../../config/trustgate.toml");
        // A section's part: from its header (`[inbound]`, or commented out) to the next
        // section's header.
        let part = |section: &str| -> String {
            let top = |l: &str| {
                let l = l.trim_start_matches(['#', ' ']);
                l.starts_with('[') && !l.starts_with("[[") && !l.contains('.')
            };
            let mut lines = text.lines().skip_while(|l| {
                !(top(l)
                    && l.trim_start_matches(['#', ' '])
                        .starts_with(&format!("[{section}]")))
            });
            let head = lines.next().unwrap_or_default().to_owned();
            head + "\n" + &lines.take_while(|l| !top(l)).collect::<Vec<_>>().join("\n")
        };
        let named = |text: &str, key: &str| {
            text.match_indices(key).any(|(i, _)| {
                let before = text[..i].chars().next_back();
                let after = text[i + key.len()..].chars().next();
                let word =
                    |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
                !word(before) && !word(after)
            })
        };
        let mut missing = Vec::new();
        for (section, keys) in SECTIONS {
            let part = part(section);
            for (key, kind) in keys.iter() {
                if !named(&part, key) {
                    missing.push(format!("{section}.{key}"));
                }
                let element: Vec<&str> = match kind {
                    Kind::Tables([]) if *key == "allow" || *key == "deny" => Rule::FIELDS
                        .iter()
                        .copied()
                        .chain(["name", "audit"])
                        .collect(),
                    Kind::Tables(keys) => keys.iter().map(|(k, _)| *k).collect(),
                    _ => continue,
                };
                for k in element {
                    if !named(&part, k) {
                        missing.push(format!("{section}.{key}[].{k}"));
                    }
                }
            }
        }
        assert!(
            missing.is_empty(),
            "config/trustgate.toml does not name: {missing:?}"
        );
    }
}
