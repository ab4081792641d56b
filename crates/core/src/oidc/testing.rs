//! A stand-in identity provider for tests: a freshly generated RSA key, its
//! JWKS, and RS256 ID tokens signed with it — real signatures, checked by
//! the real verifier. Enabled by the `test-support` feature.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};

/// The audience test tokens are issued for.
pub const TEST_CLIENT_ID: &str = "relayhub-test.apps.googleusercontent.com";

/// One signing key of a test identity provider.
pub struct TestIssuer {
    pub kid: String,
    key: EncodingKey,
    jwk: Value,
}

impl TestIssuer {
    /// Generates a 2048-bit RSA key named `kid`.
    pub fn new(kid: &str) -> Self {
        let mut rng = rsa::rand_core::OsRng;
        let private = rsa::RsaPrivateKey::new(&mut rng, 2048).expect("generating an RSA key");
        let der = private.to_pkcs1_der().expect("encoding the RSA key");
        let jwk = json!({
            "kty": "RSA",
            "alg": "RS256",
            "use": "sig",
            "kid": kid,
            "n": URL_SAFE_NO_PAD.encode(private.n().to_bytes_be()),
            "e": URL_SAFE_NO_PAD.encode(private.e().to_bytes_be()),
        });
        Self { kid: kid.to_owned(), key: EncodingKey::from_rsa_der(der.as_bytes()), jwk }
    }

    /// A JWKS document with the public keys of these issuers.
    pub fn jwks(issuers: &[&TestIssuer]) -> String {
        json!({"keys": issuers.iter().map(|i| i.jwk.clone()).collect::<Vec<_>>()}).to_string()
    }

    /// Claims of a valid Google ID token for `sub`, expiring in an hour.
    pub fn claims(sub: &str) -> Value {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
        json!({
            "iss": "https://accounts.google.com",
            "aud": TEST_CLIENT_ID,
            "sub": sub,
            "email": format!("{sub}@example.com"),
            "email_verified": true,
            "iat": now,
            "exp": now + 3600,
        })
    }

    /// Signs `claims` as an RS256 JWT with this key's `kid`.
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.key).expect("signing a token")
    }

    /// A valid token for `sub`.
    pub fn token(&self, sub: &str) -> String {
        self.sign(&Self::claims(sub))
    }
}
