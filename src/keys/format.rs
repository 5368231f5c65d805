//! Key file formats → [`SigningKey`] / [`VerifyingKey`].
//!
//! Every format is reduced to the same canonical public JWK before anything else happens,
//! so the kid (its RFC 7638 thumbprint) is the same whether a key arrived as PEM, JWK,
//! JWKS or an OpenSSH line. Parsing is done by the format crates (pem, spki, pkcs8, sec1,
//! pkcs1, ssh-key); every key is then handed to aws-lc, which rejects points off the
//! curve and inconsistent key pairs. Nothing here panics on bad input: each refusal is a
//! sentence naming what is wrong, and the caller adds the file.
use std::path::Path;

use aws_lc_rs::signature::{self as sig, ParsedPublicKey};
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use jsonwebtoken::jwk::Jwk;
use pkcs1::der::Decode as _;
use serde_json::{json, Map, Value};

use super::{KeyAlg, KeyError, VerifyingKey};

/// Key files are small; anything larger is not a key file (and is not read whole).
pub(crate) const MAX_KEY_FILE_BYTES: u64 = 1024 * 1024;

pub(super) const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
pub(super) const OID_P256: &str = "1.2.840.10045.3.1.7";
pub(super) const OID_ED25519: &str = "1.3.101.112";
pub(super) const OID_RSA: &str = "1.2.840.113549.1.1.1";
pub(super) const MIN_RSA_BITS: usize = 2048;
pub(super) const MIN_SHARED_KEY_BYTES: usize = 16;

/// JWK members that only private (or symmetric) keys have.
pub(super) const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// base64url as JWKs use it; padding tolerated on input, never produced.
pub(super) const B64URL_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Parses every public key in one authorized_keys file. The file is refused whole if any
/// part of it is bad: a half-read file is a surprise, a refused one is a log line.
pub fn parse_public_keys(bytes: &[u8], path: &Path) -> Result<Vec<VerifyingKey>, KeyError> {
    parse_public_keys_inner(bytes).map_err(|reason| KeyError::invalid(path, reason))
}

pub(crate) fn read_key_file(path: &Path) -> Result<Vec<u8>, KeyError> {
    use std::io::Read as _;
    let io = |error| KeyError::Io {
        path: path.to_path_buf(),
        error,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if meta.is_dir() {
        return Err(KeyError::invalid(path, "is a directory, not a key file"));
    }
    let mut bytes = Vec::new();
    file.take(MAX_KEY_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_KEY_FILE_BYTES {
        return Err(KeyError::invalid(
            path,
            format!("is larger than {MAX_KEY_FILE_BYTES} bytes; not a key file"),
        ));
    }
    Ok(bytes)
}

pub(super) fn as_text(bytes: &[u8]) -> Result<&str, String> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| "holds binary data, not a PEM, JWK or OpenSSH key".to_string())?;
    if text.trim().is_empty() {
        return Err("is empty".into());
    }
    if text.contains('\0') {
        return Err("holds binary data, not a PEM, JWK or OpenSSH key".into());
    }
    Ok(text)
}

/// PEM blocks of a file, refusing a file where a `BEGIN` line has no valid block (a
/// truncated copy-paste is the usual cause).
pub(super) fn pem_blocks(text: &str) -> Result<Vec<pem::Pem>, String> {
    let begins = text.matches("-----BEGIN ").count();
    let blocks = pem::parse_many(text).map_err(|e| format!("malformed PEM: {e}"))?;
    if blocks.len() != begins {
        return Err(format!(
            "malformed or truncated PEM: {begins} BEGIN line(s) but {} complete block(s)",
            blocks.len()
        ));
    }
    Ok(blocks)
}

// ---------------------------------------------------------------------------------------
// Public keys

pub(super) fn parse_public_keys_inner(bytes: &[u8]) -> Result<Vec<VerifyingKey>, String> {
    let text = as_text(bytes)?;
    let trimmed = text.trim_start();
    let keys = if trimmed.starts_with('{') {
        let value: Value =
            serde_json::from_str(text).map_err(|e| format!("is not valid JSON: {e}"))?;
        match value.get("keys") {
            Some(Value::Array(list)) if list.is_empty() => {
                return Err("JWKS holds no keys".into());
            }
            Some(Value::Array(list)) => list
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    public_jwk_from_json(v).map_err(|e| format!("JWKS key {}: {e}", i + 1))
                })
                .collect::<Result<Vec<_>, _>>()?,
            Some(_) => return Err("JWKS member \"keys\" must be an array".into()),
            None => vec![public_jwk_from_json(&value).map_err(|e| format!("JWK: {e}"))?],
        }
    } else if text.contains("-----BEGIN") {
        let blocks = pem_blocks(text)?;
        blocks
            .iter()
            .enumerate()
            .map(|(i, block)| {
                public_key_from_pem(block).map_err(|e| format!("PEM block {}: {e}", i + 1))
            })
            .collect::<Result<Vec<_>, _>>()?
    } else {
        let mut keys = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            keys.push(public_key_from_openssh(line).map_err(|e| format!("line {}: {e}", n + 1))?);
        }
        keys
    };
    if keys.is_empty() {
        return Err("holds no keys".into());
    }
    let mut seen = std::collections::HashSet::new();
    Ok(keys
        .into_iter()
        .filter(|k| seen.insert(k.kid.clone()))
        .collect())
}

pub(super) fn public_key_from_pem(block: &pem::Pem) -> Result<VerifyingKey, String> {
    match block.tag() {
        "PUBLIC KEY" => public_key_from_spki(block.contents()),
        "RSA PUBLIC KEY" => rsa_public_from_pkcs1(block.contents()),
        tag if tag.contains("PRIVATE KEY") => Err(format!(
            "holds private key material ({tag}); authorized_keys takes public keys only — \
             never copy a private key to a peer"
        )),
        "CERTIFICATE" => Err("holds a certificate; export its public key \
                               (openssl x509 -pubkey -noout) instead"
            .into()),
        tag => Err(format!(
            "unexpected PEM label \"{tag}\" (expected \"PUBLIC KEY\")"
        )),
    }
}

pub(super) fn public_key_from_spki(der: &[u8]) -> Result<VerifyingKey, String> {
    let info = spki::SubjectPublicKeyInfoRef::try_from(der)
        .map_err(|e| format!("not a valid SubjectPublicKeyInfo: {e}"))?;
    let key_bytes = info
        .subject_public_key
        .as_bytes()
        .ok_or("public key bit string is not byte-aligned")?;
    match info.algorithm.oid.to_string().as_str() {
        OID_EC_PUBLIC_KEY => {
            require_p256(&info.algorithm)?;
            ec_public(key_bytes)
        }
        OID_ED25519 => okp_public(key_bytes),
        OID_RSA => rsa_public_from_pkcs1(key_bytes),
        other => Err(format!(
            "unsupported key algorithm {} (expected P-256, Ed25519 or RSA)",
            algorithm_name(other)
        )),
    }
}

pub(super) fn public_key_from_openssh(line: &str) -> Result<VerifyingKey, String> {
    use ssh_key::public::{EcdsaPublicKey, KeyData};
    if line.contains("PRIVATE KEY") {
        return Err("holds private key material; authorized_keys takes public keys only".into());
    }
    let key = ssh_key::PublicKey::from_openssh(line)
        .map_err(|e| format!("not an OpenSSH public key line ({e})"))?;
    match key.key_data() {
        KeyData::Ed25519(k) => okp_public(&k.0),
        KeyData::Ecdsa(EcdsaPublicKey::NistP256(point)) => ec_public(point.as_bytes()),
        KeyData::Ecdsa(other) => Err(format!(
            "unsupported curve {} (only P-256 is accepted)",
            other.curve()
        )),
        KeyData::Rsa(k) => rsa_public(
            k.n.as_positive_bytes().ok_or("RSA modulus is not positive")?,
            k.e.as_positive_bytes().ok_or("RSA exponent is not positive")?,
        ),
        other => Err(format!(
            "unsupported OpenSSH key type {} (expected ecdsa-sha2-nistp256, ssh-ed25519 or ssh-rsa)",
            other.algorithm()
        )),
    }
}

/// One public JWK as JSON → a verifying key, refusing private members and checking that a
/// `kid`, `alg` or `use` it carries agrees with the key.
pub(super) fn public_jwk_from_json(value: &Value) -> Result<VerifyingKey, String> {
    let obj = value.as_object().ok_or("a JWK must be a JSON object")?;
    if let Some(m) = PRIVATE_MEMBERS.iter().find(|m| obj.contains_key(**m)) {
        return Err(format!(
            "holds private key material (member \"{m}\"); authorized_keys takes public keys only"
        ));
    }
    let key = jwk_public_key(obj)?;
    if let Some(u) = obj.get("use") {
        if u.as_str() != Some("sig") {
            return Err(format!(
                "member \"use\" is {u}; only \"sig\" keys verify tokens"
            ));
        }
    }
    kid_agrees(obj, &key.kid)?;
    Ok(key)
}

/// The key of a public JWK's members (`kty` and its own), checked against a `alg` member
/// it carries; `kid` and `use` are the caller's business.
pub(super) fn jwk_public_key(obj: &Map<String, Value>) -> Result<VerifyingKey, String> {
    let kty = str_member(obj, "kty")?;
    let key = match kty {
        "EC" => {
            let crv = str_member(obj, "crv")?;
            if crv != "P-256" {
                return Err(format!("unsupported curve {crv} (only P-256 is accepted)"));
            }
            let x = b64_member(obj, "x")?;
            let y = b64_member(obj, "y")?;
            if x.len() != 32 || y.len() != 32 {
                return Err("P-256 coordinates x and y must be 32 bytes each".into());
            }
            let mut point = vec![4u8];
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            ec_public(&point)?
        }
        "OKP" => {
            let crv = str_member(obj, "crv")?;
            if crv != "Ed25519" {
                return Err(format!(
                    "unsupported curve {crv} (only Ed25519 is accepted)"
                ));
            }
            okp_public(&b64_member(obj, "x")?)?
        }
        "RSA" => rsa_public(&b64_member(obj, "n")?, &b64_member(obj, "e")?)?,
        "oct" => return Err("symmetric keys do not belong in authorized_keys".into()),
        other => return Err(format!("unsupported key type \"{other}\"")),
    };
    if let Some(alg) = obj.get("alg") {
        if alg.as_str() != Some(key.alg.as_str()) {
            return Err(format!(
                "member \"alg\" is {alg} but a {kty} key verifies {} only",
                key.alg
            ));
        }
    }
    Ok(key)
}

pub(super) fn str_member<'a>(obj: &'a Map<String, Value>, name: &str) -> Result<&'a str, String> {
    match obj.get(name) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(format!("member \"{name}\" must be a string")),
        None => Err(format!("missing member \"{name}\"")),
    }
}

pub(super) fn b64_member(obj: &Map<String, Value>, name: &str) -> Result<Vec<u8>, String> {
    let s = str_member(obj, name)?;
    let bytes = B64URL_LENIENT
        .decode(s)
        .map_err(|_| format!("member \"{name}\" is not base64url"))?;
    if bytes.is_empty() {
        return Err(format!("member \"{name}\" is empty"));
    }
    Ok(bytes)
}

/// An uncompressed SEC1 P-256 point → ES256 key. aws-lc checks the point is on the curve.
pub(super) fn ec_public(point: &[u8]) -> Result<VerifyingKey, String> {
    if point.len() != 65 || point[0] != 4 {
        return Err("P-256 public key must be an uncompressed point (65 bytes)".into());
    }
    ParsedPublicKey::new(&sig::ECDSA_P256_SHA256_FIXED, point)
        .map_err(|_| "P-256 public key is not a point on the curve")?;
    let jwk = json!({
        "kty": "EC",
        "crv": "P-256",
        "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
        "y": URL_SAFE_NO_PAD.encode(&point[33..]),
    });
    jwk_key(jwk, KeyAlg::Es256)
}

pub(super) fn okp_public(raw: &[u8]) -> Result<VerifyingKey, String> {
    if raw.len() != 32 {
        return Err("Ed25519 public key must be 32 bytes".into());
    }
    ParsedPublicKey::new(&sig::ED25519, raw).map_err(|_| "invalid Ed25519 public key")?;
    let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(raw)});
    jwk_key(jwk, KeyAlg::EdDsa)
}

pub(super) fn rsa_public_from_pkcs1(der: &[u8]) -> Result<VerifyingKey, String> {
    let key = pkcs1::RsaPublicKey::from_der(der)
        .map_err(|e| format!("not a valid RSA public key: {e}"))?;
    rsa_public(key.modulus.as_bytes(), key.public_exponent.as_bytes())
}

pub(super) fn rsa_public(n: &[u8], e: &[u8]) -> Result<VerifyingKey, String> {
    let n = strip_zeros(n);
    let e = strip_zeros(e);
    let bits = rsa_bits(n);
    if bits < MIN_RSA_BITS {
        return Err(format!(
            "RSA key of {bits} bits is too weak (at least {MIN_RSA_BITS} required)"
        ));
    }
    if e.is_empty() || e.len() > 8 || e[e.len() - 1] & 1 == 0 {
        return Err("RSA public exponent is invalid".into());
    }
    let jwk = json!({"kty": "RSA", "n": URL_SAFE_NO_PAD.encode(n), "e": URL_SAFE_NO_PAD.encode(e)});
    jwk_key(jwk, KeyAlg::Rs256)
}

pub(super) fn strip_zeros(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    &b[start..]
}

pub(super) fn rsa_bits(n: &[u8]) -> usize {
    match n.first() {
        Some(&top) => n.len() * 8 - top.leading_zeros() as usize,
        None => 0,
    }
}

pub(super) fn jwk_key(jwk: Value, alg: KeyAlg) -> Result<VerifyingKey, String> {
    let jwk: Jwk = serde_json::from_value(jwk).map_err(|e| format!("unusable key: {e}"))?;
    VerifyingKey::from_public_jwk(jwk, alg)
}

/// A JWK's own `kid`, if it carries one, must be its RFC 7638 thumbprint.
pub(super) fn kid_agrees(obj: &Map<String, Value>, thumbprint: &str) -> Result<(), String> {
    match obj.get("kid") {
        Some(kid) if kid.as_str() != Some(thumbprint) => Err(format!(
            "member \"kid\" is {kid} but the key's RFC 7638 thumbprint is \"{thumbprint}\"; \
             fix or remove the kid"
        )),
        _ => Ok(()),
    }
}

/// An EC key's named curve, which must be P-256.
pub(super) fn require_p256(alg: &spki::AlgorithmIdentifierRef<'_>) -> Result<(), String> {
    let curve = alg
        .parameters_oid()
        .map_err(|_| "EC key without a named curve")?
        .to_string();
    if curve != OID_P256 {
        return Err(format!(
            "unsupported curve {} (only P-256 is accepted)",
            curve_name(&curve)
        ));
    }
    Ok(())
}

pub(super) fn curve_name(oid: &str) -> String {
    match oid {
        "1.3.132.0.34" => "P-384".into(),
        "1.3.132.0.35" => "P-521".into(),
        "1.3.132.0.10" => "secp256k1".into(),
        "1.3.36.3.3.2.8.1.1.7" => "brainpoolP256r1".into(),
        other => format!("with OID {other}"),
    }
}

pub(super) fn algorithm_name(oid: &str) -> String {
    match oid {
        "1.3.101.113" => "Ed448".into(),
        "1.3.101.110" | "1.3.101.111" => "X25519/X448 (key agreement, not signing)".into(),
        "1.2.840.10040.4.1" => "DSA".into(),
        "1.2.840.113549.1.1.10" => "RSA-PSS".into(),
        other => format!("with OID {other}"),
    }
}
