//! Key file formats → [`SigningKey`] / [`VerifyingKey`].
//!
//! Every format is reduced to the same canonical public JWK before anything else happens,
//! so the kid (its RFC 7638 thumbprint) is the same whether a key arrived as PEM, JWK,
//! JWKS or an OpenSSH line. Parsing is done by the format crates (pem, spki, pkcs8, sec1,
//! pkcs1, ssh-key); every key is then handed to aws-lc, which rejects points off the
//! curve and inconsistent key pairs. Nothing here panics on bad input: each refusal is a
//! sentence naming what is wrong, and the caller adds the file.
use std::path::Path;

use aws_lc_rs::encoding::{AsBigEndian, AsDer, EcPrivateKeyBin, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::signature::{
    self as sig, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, ParsedPublicKey, RsaKeyPair,
};
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::DecodingKey;
use pkcs1::der::{Decode as _, Encode as _};
use serde_json::{json, Map, Value};

use super::{KeyAlg, KeyError, Signer, SigningKey, VerifyingKey};

/// Key files are small; anything larger is not a key file (and is not read whole).
pub(crate) const MAX_KEY_FILE_BYTES: u64 = 1024 * 1024;

const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_ED25519: &str = "1.3.101.112";
const OID_RSA: &str = "1.2.840.113549.1.1.1";
const MIN_RSA_BITS: usize = 2048;
const MIN_SHARED_KEY_BYTES: usize = 16;

/// JWK members that only private (or symmetric) keys have.
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// base64url as JWKs use it; padding tolerated on input, never produced.
const B64URL_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Reads this service's private signing key: PKCS#8 PEM, SEC1 PEM or a private JWK.
pub fn load_signing_key(path: &Path) -> Result<SigningKey, KeyError> {
    let bytes = read_key_file(path)?;
    parse_signing_key(&bytes).map_err(|reason| KeyError::invalid(path, reason))
}

/// Reads a shared-key-mode secret (≥ 128 bits, hex or raw) as an HS256 key.
///
/// A file whose content (surrounding whitespace ignored) is an even number of hex digits
/// is hex, as JFrog's `join.key` is; anything else is taken as raw bytes, as they are.
pub fn load_shared_key(path: &Path) -> Result<SigningKey, KeyError> {
    let bytes = read_key_file(path)?;
    shared_key_from_bytes(&bytes).map_err(|reason| KeyError::invalid(path, reason))
}

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

fn as_text(bytes: &[u8]) -> Result<&str, String> {
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
fn pem_blocks(text: &str) -> Result<Vec<pem::Pem>, String> {
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

fn parse_public_keys_inner(bytes: &[u8]) -> Result<Vec<VerifyingKey>, String> {
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

fn public_key_from_pem(block: &pem::Pem) -> Result<VerifyingKey, String> {
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

fn public_key_from_spki(der: &[u8]) -> Result<VerifyingKey, String> {
    let info = spki::SubjectPublicKeyInfoRef::try_from(der)
        .map_err(|e| format!("not a valid SubjectPublicKeyInfo: {e}"))?;
    let key_bytes = info
        .subject_public_key
        .as_bytes()
        .ok_or("public key bit string is not byte-aligned")?;
    match info.algorithm.oid.to_string().as_str() {
        OID_EC_PUBLIC_KEY => {
            let curve = info
                .algorithm
                .parameters_oid()
                .map_err(|_| "EC key without a named curve")?
                .to_string();
            if curve != OID_P256 {
                return Err(format!(
                    "unsupported curve {} (only P-256 is accepted)",
                    curve_name(&curve)
                ));
            }
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

fn public_key_from_openssh(line: &str) -> Result<VerifyingKey, String> {
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
fn public_jwk_from_json(value: &Value) -> Result<VerifyingKey, String> {
    let obj = value.as_object().ok_or("a JWK must be a JSON object")?;
    if let Some(m) = PRIVATE_MEMBERS.iter().find(|m| obj.contains_key(**m)) {
        return Err(format!(
            "holds private key material (member \"{m}\"); authorized_keys takes public keys only"
        ));
    }
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
    if let Some(u) = obj.get("use") {
        if u.as_str() != Some("sig") {
            return Err(format!(
                "member \"use\" is {u}; only \"sig\" keys verify tokens"
            ));
        }
    }
    if let Some(kid) = obj.get("kid") {
        if kid.as_str() != Some(key.kid.as_str()) {
            return Err(format!(
                "member \"kid\" is {kid} but the key's RFC 7638 thumbprint is \"{}\"; \
                 fix or remove the kid",
                key.kid
            ));
        }
    }
    Ok(key)
}

fn str_member<'a>(obj: &'a Map<String, Value>, name: &str) -> Result<&'a str, String> {
    match obj.get(name) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(format!("member \"{name}\" must be a string")),
        None => Err(format!("missing member \"{name}\"")),
    }
}

fn b64_member(obj: &Map<String, Value>, name: &str) -> Result<Vec<u8>, String> {
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
fn ec_public(point: &[u8]) -> Result<VerifyingKey, String> {
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

fn okp_public(raw: &[u8]) -> Result<VerifyingKey, String> {
    if raw.len() != 32 {
        return Err("Ed25519 public key must be 32 bytes".into());
    }
    ParsedPublicKey::new(&sig::ED25519, raw).map_err(|_| "invalid Ed25519 public key")?;
    let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(raw)});
    jwk_key(jwk, KeyAlg::EdDsa)
}

fn rsa_public_from_pkcs1(der: &[u8]) -> Result<VerifyingKey, String> {
    let key = pkcs1::RsaPublicKey::from_der(der)
        .map_err(|e| format!("not a valid RSA public key: {e}"))?;
    rsa_public(key.modulus.as_bytes(), key.public_exponent.as_bytes())
}

fn rsa_public(n: &[u8], e: &[u8]) -> Result<VerifyingKey, String> {
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

fn strip_zeros(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    &b[start..]
}

fn rsa_bits(n: &[u8]) -> usize {
    match n.first() {
        Some(&top) => n.len() * 8 - top.leading_zeros() as usize,
        None => 0,
    }
}

fn jwk_key(jwk: Value, alg: KeyAlg) -> Result<VerifyingKey, String> {
    let jwk: Jwk = serde_json::from_value(jwk).map_err(|e| format!("unusable key: {e}"))?;
    VerifyingKey::from_public_jwk(jwk, alg)
}

fn curve_name(oid: &str) -> String {
    match oid {
        "1.3.132.0.34" => "P-384".into(),
        "1.3.132.0.35" => "P-521".into(),
        "1.3.132.0.10" => "secp256k1".into(),
        "1.3.36.3.3.2.8.1.1.7" => "brainpoolP256r1".into(),
        other => format!("with OID {other}"),
    }
}

fn algorithm_name(oid: &str) -> String {
    match oid {
        "1.3.101.113" => "Ed448".into(),
        "1.3.101.110" | "1.3.101.111" => "X25519/X448 (key agreement, not signing)".into(),
        "1.2.840.10040.4.1" => "DSA".into(),
        "1.2.840.113549.1.1.10" => "RSA-PSS".into(),
        other => format!("with OID {other}"),
    }
}

// ---------------------------------------------------------------------------------------
// Private keys

pub(crate) fn parse_signing_key(bytes: &[u8]) -> Result<SigningKey, String> {
    let text = as_text(bytes)?;
    if text.trim_start().starts_with('{') {
        let value: Value =
            serde_json::from_str(text).map_err(|e| format!("is not valid JSON: {e}"))?;
        return private_jwk(&value);
    }
    if !text.contains("-----BEGIN") {
        return Err("is not a PEM or JWK private key".into());
    }
    let blocks = pem_blocks(text)?;
    let private: Vec<_> = blocks
        .iter()
        .filter(|b| b.tag().contains("PRIVATE KEY"))
        .collect();
    match private.as_slice() {
        [one] => private_from_pem(one),
        [] => match blocks.first().map(|b| b.tag()) {
            Some(tag @ ("PUBLIC KEY" | "RSA PUBLIC KEY")) => Err(format!(
                "holds a public key ({tag}) where the private key belongs"
            )),
            Some(tag) => Err(format!(
                "unexpected PEM label \"{tag}\" (expected \"PRIVATE KEY\" or \"EC PRIVATE KEY\")"
            )),
            None => Err("holds no PEM block".into()),
        },
        _ => Err(format!(
            "holds {} private keys; a signing key file holds exactly one",
            private.len()
        )),
    }
}

fn private_from_pem(block: &pem::Pem) -> Result<SigningKey, String> {
    let der = block.contents();
    match block.tag() {
        "PRIVATE KEY" => private_from_pkcs8(der),
        "EC PRIVATE KEY" => {
            let key = sec1::EcPrivateKey::from_der(der)
                .map_err(|e| format!("not a valid SEC1 EC private key: {e}"))?;
            if let Some(curve) = key.parameters.and_then(|p| p.named_curve()) {
                if curve.to_string() != OID_P256 {
                    return Err(format!(
                        "unsupported curve {} (only P-256 is accepted)",
                        curve_name(&curve.to_string())
                    ));
                }
            }
            ec_signing(
                EcdsaKeyPair::from_private_key_der(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, der)
                    .map_err(|e| format!("unusable P-256 private key: {e}"))?,
            )
        }
        "RSA PRIVATE KEY" => rsa_signing(
            RsaKeyPair::from_der(der).map_err(|e| format!("unusable RSA private key: {e}"))?,
        ),
        "ENCRYPTED PRIVATE KEY" => Err("is encrypted; store it decrypted \
             (openssl pkcs8 -topk8 -nocrypt) and protect the file instead"
            .into()),
        "OPENSSH PRIVATE KEY" => Err("is in OpenSSH private key format; convert it with \
             ssh-keygen -p -N '' -m PKCS8 -f FILE"
            .into()),
        tag => Err(format!("unsupported private key PEM label \"{tag}\"")),
    }
}

fn private_from_pkcs8(der: &[u8]) -> Result<SigningKey, String> {
    let info = pkcs8::PrivateKeyInfo::try_from(der)
        .map_err(|e| format!("not a valid PKCS#8 private key: {e}"))?;
    match info.algorithm.oid.to_string().as_str() {
        OID_EC_PUBLIC_KEY => {
            let curve = info
                .algorithm
                .parameters_oid()
                .map_err(|_| "EC key without a named curve")?
                .to_string();
            if curve != OID_P256 {
                return Err(format!(
                    "unsupported curve {} (only P-256 is accepted)",
                    curve_name(&curve)
                ));
            }
            ec_signing(
                EcdsaKeyPair::from_private_key_der(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, der)
                    .map_err(|e| format!("unusable P-256 private key: {e}"))?,
            )
        }
        OID_ED25519 => ed_signing(
            Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
                .map_err(|e| format!("unusable Ed25519 private key: {e}"))?,
        ),
        OID_RSA => {
            // Check the size before aws-lc does, for a clearer sentence.
            if let Ok(k) = pkcs1::RsaPrivateKey::from_der(info.private_key) {
                let bits = rsa_bits(strip_zeros(k.modulus.as_bytes()));
                if bits < MIN_RSA_BITS {
                    return Err(format!(
                        "RSA key of {bits} bits is too weak (at least {MIN_RSA_BITS} required)"
                    ));
                }
            }
            rsa_signing(
                RsaKeyPair::from_pkcs8(der)
                    .map_err(|e| format!("unusable RSA private key: {e}"))?,
            )
        }
        other => Err(format!(
            "unsupported key algorithm {} (expected P-256, Ed25519 or RSA)",
            algorithm_name(other)
        )),
    }
}

fn private_jwk(value: &Value) -> Result<SigningKey, String> {
    let obj = value.as_object().ok_or("a JWK must be a JSON object")?;
    if obj.contains_key("keys") {
        return Err("is a JWKS; the signing key file holds one private JWK".into());
    }
    let kty = str_member(obj, "kty")?;
    if kty == "oct" {
        return Err("holds a symmetric key; use identity.shared_key for shared-key mode".into());
    }
    if !obj.contains_key("d") {
        return Err("holds a public JWK where the private key belongs (no member \"d\")".into());
    }
    let key = match kty {
        "EC" => {
            let crv = str_member(obj, "crv")?;
            if crv != "P-256" {
                return Err(format!("unsupported curve {crv} (only P-256 is accepted)"));
            }
            let (x, y, d) = (
                b64_member(obj, "x")?,
                b64_member(obj, "y")?,
                b64_member(obj, "d")?,
            );
            let mut point = vec![4u8];
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            ec_signing(
                EcdsaKeyPair::from_private_key_and_public_key(
                    &sig::ECDSA_P256_SHA256_FIXED_SIGNING,
                    &d,
                    &point,
                )
                .map_err(|e| format!("unusable P-256 private JWK: {e}"))?,
            )?
        }
        "OKP" => {
            let crv = str_member(obj, "crv")?;
            if crv != "Ed25519" {
                return Err(format!(
                    "unsupported curve {crv} (only Ed25519 is accepted)"
                ));
            }
            ed_signing(
                Ed25519KeyPair::from_seed_and_public_key(
                    &b64_member(obj, "d")?,
                    &b64_member(obj, "x")?,
                )
                .map_err(|e| format!("unusable Ed25519 private JWK: {e}"))?,
            )?
        }
        "RSA" => rsa_signing(rsa_from_jwk(obj)?)?,
        other => return Err(format!("unsupported key type \"{other}\"")),
    };
    if let Some(kid) = obj.get("kid") {
        if kid.as_str() != Some(key.kid.as_str()) {
            return Err(format!(
                "member \"kid\" is {kid} but the key's RFC 7638 thumbprint is \"{}\"; \
                 fix or remove the kid",
                key.kid
            ));
        }
    }
    Ok(key)
}

/// A private RSA JWK → PKCS#1 DER (by the pkcs1 crate) → aws-lc.
fn rsa_from_jwk(obj: &Map<String, Value>) -> Result<RsaKeyPair, String> {
    let m = |name| b64_member(obj, name);
    let (n, e, d, p, q, dp, dq, qi) = (
        m("n")?,
        m("e")?,
        m("d")?,
        m("p")?,
        m("q")?,
        m("dp")?,
        m("dq")?,
        m("qi")?,
    );
    fn uint(b: &[u8]) -> Result<pkcs1::UintRef<'_>, String> {
        pkcs1::UintRef::new(strip_zeros(b)).map_err(|e| format!("bad RSA JWK integer: {e}"))
    }
    let bits = rsa_bits(strip_zeros(&n));
    if bits < MIN_RSA_BITS {
        return Err(format!(
            "RSA key of {bits} bits is too weak (at least {MIN_RSA_BITS} required)"
        ));
    }
    let key = pkcs1::RsaPrivateKey {
        modulus: uint(&n)?,
        public_exponent: uint(&e)?,
        private_exponent: uint(&d)?,
        prime1: uint(&p)?,
        prime2: uint(&q)?,
        exponent1: uint(&dp)?,
        exponent2: uint(&dq)?,
        coefficient: uint(&qi)?,
        other_prime_infos: None,
    };
    let der = key.to_der().map_err(|e| format!("bad RSA JWK: {e}"))?;
    RsaKeyPair::from_der(&der).map_err(|e| format!("unusable RSA private JWK: {e}"))
}

fn ec_signing(kp: EcdsaKeyPair) -> Result<SigningKey, String> {
    let verifying = ec_public(kp.public_key().as_ref())?;
    Ok(SigningKey::new(Signer::Es256(kp), verifying))
}

fn ed_signing(kp: Ed25519KeyPair) -> Result<SigningKey, String> {
    let verifying = okp_public(kp.public_key().as_ref())?;
    Ok(SigningKey::new(Signer::EdDsa(kp), verifying))
}

fn rsa_signing(kp: RsaKeyPair) -> Result<SigningKey, String> {
    let public = kp.public_key();
    let verifying = rsa_public(
        public.modulus().big_endian_without_leading_zero(),
        public.exponent().big_endian_without_leading_zero(),
    )?;
    Ok(SigningKey::new(Signer::Rs256(kp), verifying))
}

// ---------------------------------------------------------------------------------------
// Shared secret

pub(crate) fn shared_key_from_bytes(bytes: &[u8]) -> Result<SigningKey, String> {
    let trimmed = std::str::from_utf8(bytes).ok().map(str::trim);
    let secret = match trimmed {
        Some(t)
            if !t.is_empty() && t.len() % 2 == 0 && t.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            hex::decode(t).map_err(|e| format!("bad hex: {e}"))?
        }
        _ => bytes.to_vec(),
    };
    if secret.is_empty() {
        return Err("is empty".into());
    }
    if secret.len() < MIN_SHARED_KEY_BYTES {
        return Err(format!(
            "shared key holds {} bits; at least {} are required",
            secret.len() * 8,
            MIN_SHARED_KEY_BYTES * 8
        ));
    }
    Ok(shared_key(&secret))
}

/// The kid of a shared secret is the thumbprint of its `oct` JWK: a SHA-256 of a secret
/// of at least 128 bits, which reveals nothing usable, and lets both sides agree on it.
fn shared_key(secret: &[u8]) -> SigningKey {
    let encoded = URL_SAFE_NO_PAD.encode(secret);
    let kid = {
        use aws_lc_rs::digest;
        let canonical = format!(r#"{{"k":"{encoded}","kty":"oct"}}"#);
        URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, canonical.as_bytes()))
    };
    let verifying = VerifyingKey {
        kid,
        alg: KeyAlg::Hs256,
        jwk: None,
        decoding: DecodingKey::from_secret(secret),
        parsed: None,
    };
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    SigningKey::new(Signer::Hs256(Box::new(key)), verifying)
}

// ---------------------------------------------------------------------------------------
// Serialisation of our own keys (keygen)

/// PKCS#8 DER of a signing key we generated, and its private JWK members.
pub(crate) fn private_pkcs8(key: &SigningKey) -> Result<Vec<u8>, String> {
    let der: Pkcs8V1Der<'static> = match &key.signer {
        Signer::Es256(k) => {
            // aws-lc exports EC keys as RFC 5915; wrap them in PKCS#8 via pkcs8/sec1.
            return ec_pkcs8(k);
        }
        Signer::EdDsa(k) => AsDer::<Pkcs8V1Der>::as_der(k).map_err(|_| "export failed")?,
        Signer::Rs256(k) => AsDer::<Pkcs8V1Der>::as_der(k).map_err(|_| "export failed")?,
        Signer::Hs256(_) => return Err("a shared secret has no PKCS#8 form".into()),
    };
    Ok(der.as_ref().to_vec())
}

fn ec_pkcs8(k: &EcdsaKeyPair) -> Result<Vec<u8>, String> {
    let doc = k.to_pkcs8v1().map_err(|_| "export failed")?;
    Ok(doc.as_ref().to_vec())
}

/// The SPKI DER of a key's public half.
pub(crate) fn public_spki(key: &SigningKey) -> Result<Vec<u8>, String> {
    let der: PublicKeyX509Der<'static> = match &key.signer {
        Signer::Es256(k) => AsDer::as_der(k.public_key()),
        Signer::EdDsa(k) => AsDer::as_der(k.public_key()),
        Signer::Rs256(k) => AsDer::as_der(k.public_key()),
        Signer::Hs256(_) => return Err("a shared secret has no public key".into()),
    }
    .map_err(|_| "export failed")?;
    Ok(der.as_ref().to_vec())
}

/// The private JWK of a key (public members plus `d`, and the CRT members for RSA).
pub(crate) fn private_jwk_value(key: &SigningKey) -> Result<Value, String> {
    let public = key.public_jwk().ok_or("a shared secret has no JWK form")?;
    let mut value = serde_json::to_value(public).map_err(|e| e.to_string())?;
    let obj = value.as_object_mut().ok_or("JWK is not an object")?;
    match &key.signer {
        Signer::Es256(k) => {
            let d: EcPrivateKeyBin = k.private_key().as_be_bytes().map_err(|_| "export failed")?;
            obj.insert("d".into(), URL_SAFE_NO_PAD.encode(d.as_ref()).into());
        }
        Signer::EdDsa(k) => {
            let seed = k.seed().map_err(|_| "export failed")?;
            let seed = seed.as_be_bytes().map_err(|_| "export failed")?;
            obj.insert("d".into(), URL_SAFE_NO_PAD.encode(seed.as_ref()).into());
        }
        Signer::Rs256(_) => {
            let der = private_pkcs8(key)?;
            let info =
                pkcs8::PrivateKeyInfo::try_from(der.as_slice()).map_err(|e| e.to_string())?;
            let rsa =
                pkcs1::RsaPrivateKey::from_der(info.private_key).map_err(|e| e.to_string())?;
            for (name, v) in [
                ("d", rsa.private_exponent),
                ("p", rsa.prime1),
                ("q", rsa.prime2),
                ("dp", rsa.exponent1),
                ("dq", rsa.exponent2),
                ("qi", rsa.coefficient),
            ] {
                obj.insert(
                    name.into(),
                    URL_SAFE_NO_PAD.encode(strip_zeros(v.as_bytes())).into(),
                );
            }
        }
        Signer::Hs256(_) => return Err("a shared secret has no JWK form".into()),
    }
    Ok(value)
}
