//! Key file formats → [`SigningKey`] / [`VerifyingKey`].
use std::path::Path;

use super::{KeyError, SigningKey, VerifyingKey};

/// Reads this service's private signing key: PKCS#8 PEM, SEC1 PEM or a private JWK.
pub fn load_signing_key(path: &Path) -> Result<SigningKey, KeyError> {
    Err(KeyError::invalid(path, "not yet implemented"))
}

/// Reads a shared-key-mode secret (≥ 128 bits, hex or raw) as an HS256 key.
pub fn load_shared_key(path: &Path) -> Result<SigningKey, KeyError> {
    Err(KeyError::invalid(path, "not yet implemented"))
}

/// Parses every public key in one authorized_keys file.
pub fn parse_public_keys(_bytes: &[u8], path: &Path) -> Result<Vec<VerifyingKey>, KeyError> {
    Err(KeyError::invalid(path, "not yet implemented"))
}
