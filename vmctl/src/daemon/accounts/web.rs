// SPDX-License-Identifier: Apache-2.0
//! Reading credentials from HTTP headers: the session cookie, `Authorization: Bearer`, the
//! origin of a browser's request; making the session cookie; random secrets and their
//! constant-time comparison.

use axum::http::{header, HeaderMap};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "rvmm_session";
/// The header a cookie-authenticated request other than GET must carry.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Most cookie values looked at in one request.
const MAX_COOKIES: usize = 32;

/// The values of every `rvmm_session` cookie the request sends (a browser may send more
/// than one, e.g. for another path), at most [`MAX_COOKIES`].
pub fn session_cookies(headers: &HeaderMap) -> Vec<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| {
            let (name, value) = pair.split_once('=')?;
            (name.trim() == SESSION_COOKIE).then(|| value.trim().trim_matches('"'))
        })
        .filter(|v| !v.is_empty())
        .take(MAX_COOKIES)
        .collect()
}

/// The token of `Authorization: Bearer <token>`: `None` without the header, `Some(Err)` for
/// another scheme or an unreadable value.
pub fn bearer(headers: &HeaderMap) -> Option<Result<&str, ()>> {
    let v = headers.get(header::AUTHORIZATION)?;
    let Ok(v) = v.to_str() else { return Some(Err(())) };
    let (scheme, token) = v.trim().split_once(' ').unwrap_or((v, ""));
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Some(Err(()));
    }
    Some(Ok(token.trim()))
}

/// The `Set-Cookie` value that gives the browser session `id` for `max_age_secs`.
pub fn set_session_cookie(id: &str, max_age_secs: u64) -> String {
    format!("{SESSION_COOKIE}={id}; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age={max_age_secs}")
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_session_cookie() -> String {
    set_session_cookie("", 0)
}

/// Whether a browser request comes from a page of this server: `Sec-Fetch-Site` (when sent)
/// must be `same-origin` or `none` (typed by the user), and `Origin` (when sent) must be
/// `https://` followed by the request's `Host`. The error says what was wrong.
pub fn check_same_origin(headers: &HeaderMap) -> Result<(), String> {
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.to_str().unwrap_or("?");
        if !matches!(site, "same-origin" | "none") {
            return Err(format!(
                "the request comes from another site (Sec-Fetch-Site: {site}); vmctld only takes \
                 requests from its own pages"
            ));
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("?");
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
        let same = origin
            .strip_prefix("https://")
            .is_some_and(|o| !host.is_empty() && o.trim_end_matches('/').eq_ignore_ascii_case(host));
        if !same {
            return Err(format!(
                "the request comes from the origin {origin}, not from https://{host}; vmctld only takes \
                 requests from its own pages"
            ));
        }
    }
    Ok(())
}

/// `n` random bytes from the kernel.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], String> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| format!("the kernel gave no random bytes: {e}"))?;
    Ok(b)
}

/// Lower-case hexadecimal.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new 256-bit secret as 64 hex digits.
pub fn random_hex() -> Result<String, String> {
    Ok(hex(&random_bytes::<32>()?))
}

/// SHA-256 of `text`.
pub fn sha256(text: &[u8]) -> [u8; 32] {
    Sha256::digest(text).into()
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn session_cookies_are_found_among_others() {
        let h = headers(&[
            ("cookie", "theme=dark; rvmm_session=abc123 ;x=y"),
            ("cookie", "rvmm_session=\"def\""),
        ]);
        assert_eq!(session_cookies(&h), vec!["abc123", "def"]);
        let h = headers(&[("cookie", "rvmm_sessionx=1; xrvmm_session=2; rvmm_session=; rvmm_session")]);
        assert!(session_cookies(&h).is_empty());
        assert!(session_cookies(&HeaderMap::new()).is_empty());
        let many = vec!["rvmm_session=a"; 100].join("; ");
        assert_eq!(session_cookies(&headers(&[("cookie", &many)])).len(), MAX_COOKIES);
    }

    #[test]
    fn the_cookie_is_http_only_secure_and_strict() {
        let c = set_session_cookie("00ff", 28800);
        assert_eq!(c, "rvmm_session=00ff; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=28800");
        assert!(clear_session_cookie().ends_with("Max-Age=0"));
    }

    #[test]
    fn bearer_tokens() {
        assert_eq!(bearer(&headers(&[("authorization", "Bearer rvmm_x")])), Some(Ok("rvmm_x")));
        assert_eq!(bearer(&headers(&[("authorization", "bearer  rvmm_x ")])), Some(Ok("rvmm_x")));
        assert_eq!(bearer(&headers(&[("authorization", "Basic YTpi")])), Some(Err(())));
        assert_eq!(bearer(&headers(&[("authorization", "Bearer")])), Some(Err(())));
        assert_eq!(bearer(&HeaderMap::new()), None);
    }

    #[test]
    fn cross_origin_requests_are_refused() {
        let ok = headers(&[("host", "localhost:8443"), ("origin", "https://localhost:8443")]);
        assert_eq!(check_same_origin(&ok), Ok(()));
        assert_eq!(check_same_origin(&headers(&[("host", "h")])), Ok(()), "curl sends neither");
        let same = headers(&[("host", "h:1"), ("sec-fetch-site", "same-origin")]);
        assert_eq!(check_same_origin(&same), Ok(()));
        for bad in [
            headers(&[("host", "localhost:8443"), ("origin", "https://evil.example")]),
            headers(&[("host", "localhost:8443"), ("origin", "http://localhost:8443")]),
            headers(&[("host", "localhost:8443"), ("origin", "null")]),
            headers(&[("host", "localhost:8443"), ("origin", "https://localhost:8443.evil.example")]),
            headers(&[("origin", "https://")]),
            headers(&[("host", "h"), ("sec-fetch-site", "cross-site")]),
            headers(&[("host", "h"), ("sec-fetch-site", "same-site")]),
        ] {
            let e = check_same_origin(&bad).unwrap_err();
            assert!(e.contains("its own pages"), "{e}");
        }
    }

    #[test]
    fn secrets_are_random_and_compared_whole() {
        let a = random_hex().unwrap();
        assert_eq!(a.len(), 64);
        assert_ne!(a, random_hex().unwrap());
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"abcd"));
        assert_eq!(hex(&[0, 255, 16]), "00ff10");
    }
}
