//! The authorized_keys directory and the revocation list.
//!
//! SSH semantics: a key is trusted because its file is in the directory, for the identity
//! the file is named after. Entries starting with `.` are skipped, which skips
//! Kubernetes' `..data` machinery while following the symlinks it makes. One bad file
//! never stops the others: it becomes a [`FileProblem`] and the rest still load.
use std::collections::HashSet;
use std::path::Path;

use super::format::{parse_public_keys, read_key_file};
use super::{is_valid_identity, FileProblem, KeyError, Speaks, TrustedKey};

/// What one pass over an authorized_keys directory found.
#[derive(Debug, Default)]
pub struct DirLoad {
    pub keys: Vec<TrustedKey>,
    /// `<identity>.url` entries: where an identity's keys are fetched from.
    pub sources: Vec<UrlSource>,
    pub problems: Vec<FileProblem>,
}

/// `authorized_keys/<identity>.url`: the identity's keys live at `url` (a JWKS). The
/// identity is still the file name; deleting the file revokes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlSource {
    pub identity: String,
    pub url: http::Uri,
    pub file: std::path::PathBuf,
}

/// The one URL of a `.url` file: `#` comments and blank lines aside, a single absolute
/// `https://` (or `http://`, allowed or not by the fetcher) URL with a host.
pub fn parse_url_file(bytes: &[u8]) -> Result<http::Uri, String> {
    let text =
        std::str::from_utf8(bytes).map_err(|_| "holds binary data, not a URL".to_string())?;
    let mut lines = text
        .lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim())
        .filter(|l| !l.is_empty());
    let line = lines.next().ok_or("holds no URL")?;
    if lines.next().is_some() {
        return Err("holds more than one URL (one source per identity file)".into());
    }
    let url: http::Uri = line
        .parse()
        .map_err(|_| format!("\"{line}\" is not a URL"))?;
    if !matches!(url.scheme_str(), Some("https" | "http")) || url.host().is_none() {
        return Err(format!("\"{line}\" is not an https:// URL with a host"));
    }
    Ok(url)
}

/// Reads every key file in `dir`. Fails only when the directory itself cannot be read;
/// everything wrong with a single entry is reported in [`DirLoad::problems`].
///
/// A Kubernetes volume (a `..data` symlink in `dir`) is read consistently: `..data` is
/// read before and after, and the pass is repeated if the kubelet swapped it meanwhile,
/// so a snapshot never mixes two versions of the Secret.
pub fn load_dir(dir: &Path) -> Result<DirLoad, KeyError> {
    let data = dir.join("..data");
    for _ in 0..5 {
        let before = std::fs::read_link(&data).ok();
        let load = load_dir_once(dir)?;
        if std::fs::read_link(&data).ok() == before {
            return Ok(load);
        }
        tracing::debug!(dir = %dir.display(), "..data changed while reading; reading again");
    }
    load_dir_once(dir)
}

fn load_dir_once(dir: &Path) -> Result<DirLoad, KeyError> {
    let io = |error| KeyError::Io {
        path: dir.to_path_buf(),
        error,
    };
    if !std::fs::metadata(dir).map_err(io)?.is_dir() {
        return Err(KeyError::invalid(dir, "is not a directory"));
    }
    let mut entries = std::fs::read_dir(dir)
        .map_err(io)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(io)?;
    entries.sort_by_key(|e| e.file_name());

    let mut load = DirLoad::default();
    for entry in entries {
        load_entry(&entry, &mut load);
    }
    Ok(load)
}

/// One directory entry: its keys or URL into `load`, or the problem with it.
fn load_entry(entry: &std::fs::DirEntry, load: &mut DirLoad) {
    let path = entry.path();
    let problem = |reason: String| FileProblem {
        file: path.clone(),
        reason,
    };
    let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
        load.problems
            .push(problem("file name is not UTF-8; skipped".into()));
        return;
    };
    if name.starts_with('.') {
        return;
    }
    let identity = name.split('.').next().unwrap_or_default();
    if !is_valid_identity(identity) {
        load.problems.push(problem(format!(
            "\"{identity}\" is not a valid identity (file names start with a DNS label: \
             lower-case letters, digits and '-'); skipped"
        )));
        return;
    }
    if let Err(reason) = regular_file(&path) {
        load.problems.push(problem(reason.into()));
        return;
    }
    if name.ends_with(".url") {
        match read_key_file(&path)
            .map_err(reason_of)
            .and_then(|b| parse_url_file(&b))
        {
            Ok(url) => load.sources.push(UrlSource {
                identity: identity.to_owned(),
                url,
                file: path.clone(),
            }),
            Err(reason) => load.problems.push(problem(reason)),
        }
        return;
    }
    let parsed = read_key_file(&path).and_then(|bytes| parse_public_keys(&bytes, &path));
    match parsed {
        Ok(keys) => load.keys.extend(keys.into_iter().map(|key| TrustedKey {
            speaks: Speaks::Identity(identity.to_owned()),
            key,
            source: path.clone(),
        })),
        Err(e) => load.problems.push(problem(reason_of(e))),
    }
}

/// A regular file (symlinks followed), or why not.
fn regular_file(path: &Path) -> Result<(), std::borrow::Cow<'static, str>> {
    // `metadata` follows symlinks; a link to nowhere is worth its own sentence.
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err("is a dangling symlink; skipped".into())
        }
        Err(e) => return Err(format!("cannot be read: {e}").into()),
    };
    if meta.is_dir() {
        return Err("is a directory, not a key file; skipped".into());
    }
    if !meta.is_file() {
        return Err("is not a regular file; skipped".into());
    }
    Ok(())
}

/// The reason alone: the file is already named by [`FileProblem::file`].
fn reason_of(e: KeyError) -> String {
    match e {
        KeyError::Invalid { reason, .. } => reason,
        KeyError::Io { error, .. } => format!("cannot be read: {error}"),
        KeyError::Sign(s) => s,
    }
}

/// Reads the revocation list: one kid per line, `#` starts a comment.
pub fn load_revoked(path: &Path) -> Result<HashSet<String>, KeyError> {
    let bytes = read_key_file(path)?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| KeyError::invalid(path, "holds binary data, not a list of kids"))?;
    let mut kids = HashSet::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let valid = line
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid || line.contains(char::is_whitespace) {
            return Err(KeyError::invalid(
                path,
                format!("line {}: \"{line}\" is not a kid (base64url)", n + 1),
            ));
        }
        kids.insert(line.to_owned());
    }
    Ok(kids)
}
