//! Where the token is in a request: exactly one field of the token header, within the
//! size limit, its `Bearer` scheme (for `authorization`) stripped, its bytes checked only
//! when the verified-token cache does not already know them. A step of the inbound
//! ([`super`]), apart because every other step reads it.
use http::header::{HeaderMap, HeaderName, AUTHORIZATION};

use crate::token::{Rejection, MAX_TOKEN_BYTES};

/// Exactly one token. With `authorization` the scheme must be `Bearer` (or `DPoP`); any other
/// configured header carries the bare token (a `Bearer ` prefix is tolerated).
pub fn extract_token<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Result<&'a str, Rejection> {
    check_token(locate_token(headers, name)?)
}

/// How a token arrived: `Bearer`, `DPoP` (RFC 9449 §7.1: a token bound to a key), or
/// without a scheme (in a header other than `authorization`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scheme {
    Bearer,
    Dpop,
    Bare,
}

/// Where the token is: exactly one field, within the size limit, its scheme stripped.
/// Its bytes are not checked yet ([`check_token`]).
pub(crate) fn locate_token<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
) -> Result<&'a [u8], Rejection> {
    locate(headers, name).map(|(token, _)| token)
}

/// A token ([`locate_token`]) and the scheme it came with (`DPoP` for a token bound to a
/// key, RFC 9449 §7.1: [`super::dpop`] holds it to that).
pub(crate) fn locate_user_token<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
) -> Result<(&'a [u8], Scheme), Rejection> {
    locate(headers, name)
}

fn locate<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Result<(&'a [u8], Scheme), Rejection> {
    let mut values = headers.get_all(name).iter();
    let value = values.next().ok_or(Rejection::Missing)?;
    if values.next().is_some() {
        return Err(Rejection::MultipleTokens);
    }
    if value.len() > MAX_TOKEN_BYTES + 16 {
        return Err(Rejection::TooLarge);
    }
    let value = value.as_bytes().trim_ascii();
    let (token, scheme) = match scheme(value) {
        Some(t) => t,
        // Bytes beyond ASCII say "malformed" before anything says "missing".
        None if !value.is_ascii() => return Err(Rejection::Malformed),
        // A bare token without its scheme (`Authorization: eyJ...`) is a token sent
        // wrong, not a missing one: say so. Another scheme (`Basic ...`) is not ours.
        None if *name == AUTHORIZATION
            && !value.contains(&b' ')
            && !value.is_empty()
            && !value.eq_ignore_ascii_case(b"bearer") =>
        {
            return Err(Rejection::Malformed)
        }
        None if *name == AUTHORIZATION => return Err(Rejection::Missing),
        None => (value, Scheme::Bare),
    };
    if token.is_empty() {
        return Err(Rejection::Missing);
    }
    Ok((token, scheme))
}

/// A token's bytes, checked only when the verified-token cache does not know them: ASCII
/// only (control bytes other than tab never get here: httparse and `HeaderValue` refuse
/// them); then base64url and dots, so a comma, a space or a tab means two tokens (or
/// garbage).
pub(crate) fn check_token(token: &[u8]) -> Result<&str, Rejection> {
    if !token.is_ascii() {
        return Err(Rejection::Malformed);
    }
    if token.iter().any(|&b| matches!(b, b' ' | b'\t' | b',')) {
        return Err(Rejection::MultipleTokens);
    }
    std::str::from_utf8(token).map_err(|_| Rejection::Malformed)
}

/// `Bearer` or `DPoP` (any case), one or more spaces, the credentials.
fn scheme(value: &[u8]) -> Option<(&[u8], Scheme)> {
    let space = value.iter().position(|&b| b == b' ')?;
    let (scheme, rest) = value.split_at(space);
    let scheme = match scheme {
        s if s.eq_ignore_ascii_case(b"bearer") => Scheme::Bearer,
        s if s.eq_ignore_ascii_case(b"dpop") => Scheme::Dpop,
        _ => return None,
    };
    Some((rest.trim_ascii(), scheme))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use http::header::HeaderValue;

    /// A header map of `pairs`, in order (repeated names appended), for the steps' tests.
    pub(crate) fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn token_extraction() {
        let a = AUTHORIZATION;
        assert_eq!(
            extract_token(&headers(&[("authorization", "Bearer abc")]), &a),
            Ok("abc")
        );
        assert_eq!(
            extract_token(&headers(&[("authorization", "bearer  abc ")]), &a),
            Ok("abc")
        );
        assert_eq!(extract_token(&headers(&[]), &a), Err(Rejection::Missing));
        assert_eq!(
            extract_token(&headers(&[("authorization", "BEARER\tabc")]), &a),
            Err(Rejection::Malformed),
            "the scheme ends at a space (RFC 9110 credentials: 1*SP): no scheme, a bare value"
        );
        assert_eq!(
            extract_token(&headers(&[("authorization", "Bearer \tabc\t")]), &a),
            Ok("abc")
        );
        // (Control bytes never get this far: neither httparse nor `HeaderValue` admit them.)
        for (value, why) in [
            (&b"Bearer a\xc3\xa9b"[..], "UTF-8 beyond ASCII"),
            (b"Bearer ab\xff", "obs-text, even at the end"),
            (b"\xffBearer ab", "obs-text before the scheme"),
        ] {
            let mut h = HeaderMap::new();
            h.insert(AUTHORIZATION, HeaderValue::from_bytes(value).unwrap());
            assert_eq!(extract_token(&h, &a), Err(Rejection::Malformed), "{why}");
        }
        assert_eq!(
            extract_token(&headers(&[("authorization", "Bearer a\tb")]), &a),
            Err(Rejection::MultipleTokens)
        );
        assert_eq!(
            extract_token(&headers(&[("authorization", "eyJhbGciOi.e30.c2ln")]), &a),
            Err(Rejection::Malformed),
            "a token without its Bearer scheme"
        );
        assert_eq!(
            extract_token(&headers(&[("authorization", "Basic eDp5")]), &a),
            Err(Rejection::Missing)
        );
        assert_eq!(
            extract_token(&headers(&[("authorization", "Bearer ")]), &a),
            Err(Rejection::Missing)
        );
        assert_eq!(
            extract_token(
                &headers(&[("authorization", "Bearer a"), ("authorization", "Bearer b")]),
                &a
            ),
            Err(Rejection::MultipleTokens)
        );
        assert_eq!(
            extract_token(&headers(&[("authorization", "Bearer a, Bearer b")]), &a),
            Err(Rejection::MultipleTokens)
        );
        let big = format!("Bearer {}", "a".repeat(MAX_TOKEN_BYTES + 100));
        assert_eq!(
            extract_token(&headers(&[("authorization", &big)]), &a),
            Err(Rejection::TooLarge)
        );
        let custom = HeaderName::from_static("x-trustgate-token");
        assert_eq!(
            extract_token(&headers(&[("x-trustgate-token", "abc")]), &custom),
            Ok("abc")
        );
    }

    // Each step alone, on a plain request: no sockets, no app.
}
