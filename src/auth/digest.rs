//! HTTP/SIP digest arithmetic (RFC 7616, RFC 8760 for SIP): the hash algorithms, HA1,
//! the expected `response`, the credentials a client sent and the challenge we send.
//! Pure functions of their inputs; nonces and replay state live in `nonce`.

use std::fmt::Write as _;

use md5::Md5;
use sha2::{Sha256, Sha512_256};

use crate::sip::header::AuthValue;

/// A digest hash algorithm. The `-sess` variants are not offered (RFC 8760 §2.4 lets a
/// server leave them out) and credentials naming them are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Md5,
    Sha256,
    Sha512_256,
}

impl Algorithm {
    /// Every algorithm, strongest first: the order challenges are sent in by default
    /// (RFC 8760 §2.4: most preferred first).
    pub const ALL: [Algorithm; 3] = [Algorithm::Sha512_256, Algorithm::Sha256, Algorithm::Md5];

    /// The token used in `algorithm=` and in configuration.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha512_256 => "SHA-512-256",
        }
    }

    /// Parses an `algorithm=` value, case-insensitively.
    pub fn parse(s: &str) -> Option<Algorithm> {
        Algorithm::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(s.trim()))
    }

    /// `H(data)` as lower-case hex.
    pub fn hash_hex(self, parts: &[&[u8]]) -> String {
        fn run<D: sha2::Digest>(parts: &[&[u8]]) -> String {
            let mut d = D::new();
            for p in parts {
                d.update(p);
            }
            hex(&d.finalize())
        }
        match self {
            Algorithm::Md5 => run::<Md5>(parts),
            Algorithm::Sha256 => run::<Sha256>(parts),
            Algorithm::Sha512_256 => run::<Sha512_256>(parts),
        }
    }

    /// Length of this algorithm's hex digests.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Md5 => 32,
            Algorithm::Sha256 | Algorithm::Sha512_256 => 64,
        }
    }
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// `HA1 = H(username ":" realm ":" password)`: what a credentials store keeps instead of
/// the password.
pub fn ha1(alg: Algorithm, username: &str, realm: &str, password: &str) -> String {
    alg.hash_hex(&[
        username.as_bytes(),
        b":",
        realm.as_bytes(),
        b":",
        password.as_bytes(),
    ])
}

/// The `response` a client with `ha1` computes for qop=auth (RFC 7616 §3.4.1):
/// `KD(HA1, nonce ":" nc ":" cnonce ":" qop ":" H(method ":" uri))`.
pub fn expected_response(alg: Algorithm, ha1: &str, c: &Credentials, method: &str) -> String {
    let ha2 = alg.hash_hex(&[method.as_bytes(), b":", c.uri.as_bytes()]);
    alg.hash_hex(&[
        ha1.as_bytes(),
        b":",
        c.nonce.as_bytes(),
        b":",
        c.nc_raw.as_bytes(),
        b":",
        c.cnonce.as_bytes(),
        b":",
        b"auth",
        b":",
        ha2.as_bytes(),
    ])
}

/// Compares two strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Digest credentials from an Authorization or Proxy-Authorization header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    pub uri: String,
    /// Lower-case hex, as sent.
    pub response: String,
    pub algorithm: Algorithm,
    pub cnonce: String,
    /// The nonce count as sent (8 hex digits): the hash covers the text.
    pub nc_raw: String,
    pub nc: u32,
    pub opaque: Option<String>,
}

/// Why a header's credentials cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialsError {
    /// Not the Digest scheme (Basic, Bearer...).
    NotDigest,
    /// A required parameter is missing or unusable; the name says which.
    Malformed(&'static str),
    /// An algorithm we do not implement (the `-sess` variants, unknown names).
    Algorithm,
    /// No `qop=auth`: without a nonce count there is no replay protection, so RFC 2069
    /// style credentials are not accepted.
    NoQop,
}

impl Credentials {
    /// Reads digest credentials. RFC 7616 §3.4: username, realm, nonce, uri, response
    /// are required; with qop, also cnonce and nc. `username*` (RFC 7616 §3.4.4) is not
    /// supported.
    pub fn from_header(v: &AuthValue) -> Result<Credentials, CredentialsError> {
        if !v.scheme.eq_ignore_ascii_case("Digest") {
            return Err(CredentialsError::NotDigest);
        }
        let need = |name: &'static str| {
            v.param(name)
                .map(str::to_owned)
                .ok_or(CredentialsError::Malformed(name))
        };
        let algorithm = match v.param("algorithm") {
            None => Algorithm::Md5,
            Some(a) => Algorithm::parse(a).ok_or(CredentialsError::Algorithm)?,
        };
        let username = need("username")?;
        let realm = need("realm")?;
        let nonce = need("nonce")?;
        let uri = need("uri")?;
        let response = need("response")?.to_ascii_lowercase();
        if response.len() != algorithm.hex_len() || !response.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(CredentialsError::Malformed("response"));
        }
        match v.param("qop") {
            Some(q) if q.eq_ignore_ascii_case("auth") => {}
            Some(_) => return Err(CredentialsError::Malformed("qop")),
            None => return Err(CredentialsError::NoQop),
        }
        let cnonce = need("cnonce")?;
        let nc_raw = need("nc")?;
        let nc = match u32::from_str_radix(&nc_raw, 16) {
            Ok(n) if nc_raw.len() == 8 && n > 0 => n,
            _ => return Err(CredentialsError::Malformed("nc")),
        };
        Ok(Credentials {
            username,
            realm,
            nonce,
            uri,
            response,
            algorithm,
            cnonce,
            nc_raw,
            nc,
            opaque: v.param("opaque").map(str::to_owned),
        })
    }
}

/// A `WWW-Authenticate` / `Proxy-Authenticate` value offering `alg`.
pub fn challenge(alg: Algorithm, realm: &str, nonce: &str, stale: bool) -> String {
    let mut s = format!(
        "Digest realm=\"{}\", nonce=\"{nonce}\", algorithm={}, qop=\"auth\"",
        quote_safe(realm),
        alg.name()
    );
    if stale {
        s.push_str(", stale=true");
    }
    s
}

/// A realm goes inside a quoted string: drop what would end it or escape.
fn quote_safe(s: &str) -> String {
    s.chars()
        .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
        .collect()
}

/// What a client does with a challenge: the credentials for one request. Used by the
/// tests' client and by `presenced ctl` nothing else; kept here so both sides of the
/// arithmetic sit together.
pub fn answer(
    challenge: &AuthValue,
    username: &str,
    password: &str,
    method: &str,
    uri: &str,
    nc: u32,
    cnonce: &str,
) -> Option<String> {
    let realm = challenge.param("realm")?;
    let nonce = challenge.param("nonce")?;
    let alg = match challenge.param("algorithm") {
        None => Algorithm::Md5,
        Some(a) => Algorithm::parse(a)?,
    };
    let h1 = ha1(alg, username, realm, password);
    let c = Credentials {
        username: username.to_owned(),
        realm: realm.to_owned(),
        nonce: nonce.to_owned(),
        uri: uri.to_owned(),
        response: String::new(),
        algorithm: alg,
        cnonce: cnonce.to_owned(),
        nc_raw: format!("{nc:08x}"),
        nc,
        opaque: None,
    };
    let response = expected_response(alg, &h1, &c, method);
    Some(format!(
        "Digest username=\"{username}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
         response=\"{response}\", algorithm={}, qop=auth, nc={}, cnonce=\"{cnonce}\"",
        alg.name(),
        c.nc_raw
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_7616_section_3_9_1_sha256_and_md5_examples() {
        // RFC 7616 §3.9.1: Mufasa / Circle of Life / http-auth@example.org, GET /dir/index.html.
        let v = AuthValue::parse(
            "Digest username=\"Mufasa\", realm=\"http-auth@example.org\", uri=\"/dir/index.html\", \
             algorithm=SHA-256, nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", nc=00000001, \
             cnonce=\"f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ\", qop=auth, \
             response=\"753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1\", \
             opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"",
        )
        .unwrap();
        let c = Credentials::from_header(&v).unwrap();
        let h1 = ha1(
            Algorithm::Sha256,
            "Mufasa",
            "http-auth@example.org",
            "Circle of Life",
        );
        assert_eq!(
            expected_response(Algorithm::Sha256, &h1, &c, "GET"),
            c.response
        );

        let md5 = Credentials {
            algorithm: Algorithm::Md5,
            ..c.clone()
        };
        let h1 = ha1(
            Algorithm::Md5,
            "Mufasa",
            "http-auth@example.org",
            "Circle of Life",
        );
        assert_eq!(
            expected_response(Algorithm::Md5, &h1, &md5, "GET"),
            "8ca523f5e9506fed4657c9700eebdbec"
        );
    }

    #[test]
    fn credentials_without_qop_or_with_sess_are_refused() {
        let base = "Digest username=\"a\", realm=\"r\", nonce=\"n\", uri=\"sip:r\", \
                    response=\"00112233445566778899aabbccddeeff\"";
        let v = AuthValue::parse(base).unwrap();
        assert_eq!(Credentials::from_header(&v), Err(CredentialsError::NoQop));
        let v = AuthValue::parse(&format!("{base}, algorithm=MD5-sess")).unwrap();
        assert_eq!(
            Credentials::from_header(&v),
            Err(CredentialsError::Algorithm)
        );
        let v = AuthValue::parse(&format!("{base}, qop=auth, cnonce=\"c\", nc=0")).unwrap();
        assert_eq!(
            Credentials::from_header(&v),
            Err(CredentialsError::Malformed("nc"))
        );
        let v = AuthValue::parse("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==").unwrap();
        assert_eq!(
            Credentials::from_header(&v),
            Err(CredentialsError::NotDigest)
        );
    }

    #[test]
    fn an_answer_verifies_for_every_algorithm() {
        for alg in Algorithm::ALL {
            let ch = AuthValue::parse(&challenge(alg, "example.com", "abc", false)).unwrap();
            let a = answer(
                &ch,
                "alice",
                "pw",
                "PUBLISH",
                "sip:alice@example.com",
                7,
                "cn",
            )
            .unwrap();
            let c = Credentials::from_header(&AuthValue::parse(&a).unwrap()).unwrap();
            assert_eq!(c.algorithm, alg);
            assert_eq!(c.nc, 7);
            let h1 = ha1(alg, "alice", "example.com", "pw");
            assert_eq!(expected_response(alg, &h1, &c, "PUBLISH"), c.response);
            let wrong = ha1(alg, "alice", "example.com", "px");
            assert_ne!(expected_response(alg, &wrong, &c, "PUBLISH"), c.response);
        }
    }
}
