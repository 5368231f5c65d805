//! The authorized_keys directory and the revocation list.
use std::collections::HashSet;
use std::path::Path;

use super::{FileProblem, KeyError, TrustedKey};

/// What one pass over an authorized_keys directory found.
#[derive(Debug, Default)]
pub struct DirLoad {
    pub keys: Vec<TrustedKey>,
    pub problems: Vec<FileProblem>,
}

pub fn load_dir(dir: &Path) -> Result<DirLoad, KeyError> {
    Err(KeyError::invalid(dir, "not yet implemented"))
}

pub fn load_revoked(path: &Path) -> Result<HashSet<String>, KeyError> {
    Err(KeyError::invalid(path, "not yet implemented"))
}
