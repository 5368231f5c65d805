//! Private key formats → [`SigningKey`]: PKCS#8 and SEC1 PEM, private JWKs, and
//! shared-key-mode secrets. Each key is handed to aws-lc, which rejects inconsistent key
//! pairs; each refusal is a sentence naming what is wrong, and the caller adds the file.
use std::path::Path;

use aws_lc_rs::encoding::{AsBigEndian, AsDer, EcPrivateKeyBin, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::signature::{self as sig, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::DecodingKey;
use pkcs1::der::{Decode as _, Encode as _};
use serde_json::{Map, Value};

use super::{KeyAlg, KeyError, Signer, SigningKey, VerifyingKey};

use super::format::*;

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

pub(super) fn private_from_pem(block: &pem::Pem) -> Result<SigningKey, String> {
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
        "OPENSSH PRIVATE KEY" => Err(openssh_hint(der)),
        tag => Err(format!("unsupported private key PEM label \"{tag}\"")),
    }
}

pub(super) fn private_from_pkcs8(der: &[u8]) -> Result<SigningKey, String> {
    let info = pkcs8::PrivateKeyInfo::try_from(der)
        .map_err(|e| format!("not a valid PKCS#8 private key: {e}"))?;
    match info.algorithm.oid.to_string().as_str() {
        OID_EC_PUBLIC_KEY => {
            require_p256(&info.algorithm)?;
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

pub(super) fn private_jwk(value: &Value) -> Result<SigningKey, String> {
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
    kid_agrees(obj, &key.kid)?;
    Ok(key)
}

/// A private RSA JWK → PKCS#1 DER (by the pkcs1 crate) → aws-lc.
pub(super) fn rsa_from_jwk(obj: &Map<String, Value>) -> Result<RsaKeyPair, String> {
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

pub(super) fn ec_signing(kp: EcdsaKeyPair) -> Result<SigningKey, String> {
    let verifying = ec_public(kp.public_key().as_ref())?;
    Ok(SigningKey::new(Signer::Es256(kp), verifying))
}

pub(super) fn ed_signing(kp: Ed25519KeyPair) -> Result<SigningKey, String> {
    let verifying = okp_public(kp.public_key().as_ref())?;
    Ok(SigningKey::new(Signer::EdDsa(kp), verifying))
}

pub(super) fn rsa_signing(kp: RsaKeyPair) -> Result<SigningKey, String> {
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
    // A PEM or JWK key where a shared secret belongs is a mix-up (a key pair's file given
    // to --shared or shared_key), never a secret anyone meant: its bytes would sign.
    if let Some(t) = trimmed {
        if t.contains("-----BEGIN") || (t.starts_with('{') && t.contains("\"kty\"")) {
            return Err(
                "holds a PEM or JWK key, not a shared secret (hex, or raw bytes): \
                        a key pair signs without --shared / shared_key"
                    .into(),
            );
        }
    }
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
pub(super) fn shared_key(secret: &[u8]) -> SigningKey {
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

pub(super) fn ec_pkcs8(k: &EcdsaKeyPair) -> Result<Vec<u8>, String> {
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

/// How to convert an OpenSSH private key. `ssh-keygen -m PKCS8` converts ECDSA and RSA
/// keys, but writes an Ed25519 key back in OpenSSH's own format (OpenSSH 9.2 included):
/// for those, Python's `cryptography` converts, or a new key is one command away. The key
/// type is read from the block's public part (`openssh-key-v1`), which names it in clear.
fn openssh_hint(der: &[u8]) -> String {
    let ed25519 = der.windows(11).any(|w| w == b"ssh-ed25519");
    if ed25519 {
        "is an Ed25519 key in OpenSSH private key format, which ssh-keygen cannot write as \
         PKCS#8; convert it with python3 -c \"from cryptography.hazmat.primitives import \
         serialization as s; k = s.load_ssh_private_key(open('FILE', 'rb').read(), None); \
         open('FILE.pem', 'wb').write(k.private_bytes(s.Encoding.PEM, s.PrivateFormat.PKCS8, \
         s.NoEncryption()))\", or make a new key: trustgate keygen NAME --alg EdDSA"
            .into()
    } else {
        "is in OpenSSH private key format; convert it (in place) with \
         ssh-keygen -p -N '' -m PKCS8 -f FILE"
            .into()
    }
}
