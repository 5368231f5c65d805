//! `trustgate keygen`: fresh key pairs, written safely.
use std::path::{Path, PathBuf};

use super::{KeyAlg, KeyError};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    Pem,
    Jwk,
}

#[derive(Debug)]
pub struct GeneratedFiles {
    pub private: PathBuf,
    pub public: PathBuf,
    pub kid: String,
}

pub fn generate(_alg: KeyAlg) -> Result<Vec<u8>, KeyError> {
    Err(KeyError::Sign("not yet implemented".into()))
}

pub fn write_keypair(
    _name: &str,
    _alg: KeyAlg,
    dir: &Path,
    _format: OutputFormat,
) -> Result<GeneratedFiles, KeyError> {
    Err(KeyError::invalid(dir, "not yet implemented"))
}
