//! `trustgate keygen`: fresh key pairs, written safely.
//!
//! The private file is created with mode 0600 in one step (never written first and
//! chmod-ed after) and never overwritten: replacing a key is a rotation, which is a
//! deliberate act, not a side effect of re-running a command.
use std::io::Write as _;
use std::path::{Path, PathBuf};

use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    EcdsaKeyPair, Ed25519KeyPair, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING,
};

use super::private::{parse_signing_key, private_jwk_value, private_pkcs8, public_spki};
use super::{is_valid_identity, KeyAlg, KeyError, SigningKey};

/// The file format `keygen` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    /// PKCS#8 `PRIVATE KEY` and SPKI `PUBLIC KEY` PEM.
    Pem,
    /// A private JWK and a public JWK (with `kid`, `alg`, `use`).
    Jwk,
}

/// What `write_keypair` wrote.
#[derive(Debug)]
pub struct GeneratedFiles {
    pub private: PathBuf,
    pub public: PathBuf,
    pub kid: String,
}

/// A fresh signing key from aws-lc's generator. HS256 secrets are not generated here:
/// shared-key mode takes an existing `join.key`.
pub fn generate(alg: KeyAlg) -> Result<SigningKey, KeyError> {
    let fail = |_| KeyError::Sign(format!("{alg} key generation failed"));
    let pkcs8 = match alg {
        KeyAlg::Es256 => EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .map_err(fail)?
            .to_pkcs8v1()
            .map_err(fail)?
            .as_ref()
            .to_vec(),
        KeyAlg::EdDsa => Ed25519KeyPair::generate()
            .map_err(fail)?
            .to_pkcs8v1()
            .map_err(fail)?
            .as_ref()
            .to_vec(),
        KeyAlg::Rs256 => {
            use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
            let kp = RsaKeyPair::generate(KeySize::Rsa2048).map_err(fail)?;
            let der: Pkcs8V1Der = AsDer::as_der(&kp).map_err(fail)?;
            der.as_ref().to_vec()
        }
        KeyAlg::Hs256 => {
            return Err(KeyError::Sign(
                "HS256 keys are not generated; shared-key mode reads an existing secret file"
                    .into(),
            ))
        }
    };
    let pem = pem::encode(&pem::Pem::new("PRIVATE KEY", pkcs8));
    parse_signing_key(pem.as_bytes()).map_err(KeyError::Sign)
}

/// Generates a key pair for identity `name` and writes `<name>.key` (private, mode 0600)
/// and `<name>.pub` (public, ready for a peer's authorized_keys) into `dir`.
pub fn write_keypair(
    name: &str,
    alg: KeyAlg,
    dir: &Path,
    format: OutputFormat,
) -> Result<GeneratedFiles, KeyError> {
    if !is_valid_identity(name) {
        return Err(KeyError::invalid(
            dir.join(name),
            format!("\"{name}\" is not a valid identity (a DNS label: lower-case letters, digits and '-')"),
        ));
    }
    let key = generate(alg)?;
    let private_path = dir.join(format!("{name}.key"));
    let public_path = dir.join(format!("{name}.pub"));
    for p in [&private_path, &public_path] {
        if p.symlink_metadata().is_ok() {
            return Err(KeyError::invalid(
                p,
                "already exists; refusing to overwrite a key (move it away first)",
            ));
        }
    }
    std::fs::create_dir_all(dir).map_err(|error| KeyError::Io {
        path: dir.to_path_buf(),
        error,
    })?;
    let bad = |p: &Path| {
        let p = p.to_path_buf();
        move |reason: String| KeyError::invalid(p, reason)
    };
    let (private, public) = match format {
        OutputFormat::Pem => (
            pem::encode(&pem::Pem::new(
                "PRIVATE KEY",
                private_pkcs8(&key).map_err(bad(&private_path))?,
            )),
            pem::encode(&pem::Pem::new(
                "PUBLIC KEY",
                public_spki(&key).map_err(bad(&public_path))?,
            )),
        ),
        OutputFormat::Jwk => {
            let private = private_jwk_value(&key).map_err(bad(&private_path))?;
            let public = key
                .public_jwk()
                .ok_or_else(|| KeyError::invalid(&public_path, "no public key"))?;
            (
                format!("{private}\n"),
                format!(
                    "{}\n",
                    serde_json::to_string(public)
                        .map_err(|e| KeyError::invalid(&public_path, e.to_string()))?
                ),
            )
        }
    };
    write_new(&private_path, private.as_bytes(), 0o600)?;
    write_new(&public_path, public.as_bytes(), 0o644)?;
    Ok(GeneratedFiles {
        private: private_path,
        public: public_path,
        kid: key.kid.clone(),
    })
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), KeyError> {
    let io = |error| KeyError::Io {
        path: path.to_path_buf(),
        error,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{load_signing_key, parse_public_keys};

    #[test]
    fn written_keys_load_back_with_the_same_kid() {
        let dir = tempfile::tempdir().unwrap();
        for (i, alg) in [KeyAlg::Es256, KeyAlg::EdDsa, KeyAlg::Rs256]
            .into_iter()
            .enumerate()
        {
            for format in [OutputFormat::Pem, OutputFormat::Jwk] {
                let name = format!(
                    "svc{i}{}",
                    if format == OutputFormat::Pem {
                        "p"
                    } else {
                        "j"
                    }
                );
                let files = write_keypair(&name, alg, dir.path(), format).unwrap();
                let private = load_signing_key(&files.private).unwrap();
                assert_eq!(private.kid, files.kid);
                assert_eq!(private.alg, alg);
                let public = std::fs::read(&files.public).unwrap();
                let keys = parse_public_keys(&public, &files.public).unwrap();
                assert_eq!(keys.len(), 1);
                assert_eq!(keys[0].kid, files.kid, "{alg} {format:?}");
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt as _;
                    let mode = std::fs::metadata(&files.private)
                        .unwrap()
                        .permissions()
                        .mode();
                    assert_eq!(mode & 0o777, 0o600);
                }
                let again = write_keypair(&name, alg, dir.path(), format).unwrap_err();
                assert!(
                    again.to_string().contains("refusing to overwrite"),
                    "{again}"
                );
            }
        }
    }

    #[test]
    fn keygen_refuses_bad_names_and_hs256() {
        let dir = tempfile::tempdir().unwrap();
        assert!(write_keypair("../x", KeyAlg::Es256, dir.path(), OutputFormat::Pem).is_err());
        assert!(generate(KeyAlg::Hs256).is_err());
    }
}
