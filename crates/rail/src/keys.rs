//! Public keys of robots and store staff, and the signatures of their
//! challenges: Ed25519, or ECDSA P-256 over SHA-256 (DER or the 64-byte
//! fixed form). Keys come as PEM (`-----BEGIN PUBLIC KEY-----`, what
//! `openssl pkey -pubout` writes) or base64: SubjectPublicKeyInfo DER, a
//! raw 32-byte Ed25519 key, or a SEC1 P-256 point.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::pkcs8::DecodePublicKey;
use p256::ecdsa::signature::Verifier;

/// A parsed public key.
#[derive(Debug, Clone)]
pub enum PublicKey {
    Ed25519(ed25519_dalek::VerifyingKey),
    P256(p256::ecdsa::VerifyingKey),
}

/// The key's bytes: the base64 inside PEM armour, or the whole string.
fn der(raw: &str) -> Result<Vec<u8>, String> {
    let body: String = raw.lines().map(str::trim).filter(|line| !line.starts_with("-----")).collect();
    STANDARD.decode(body.trim()).map_err(|_| "a public key is PEM or base64".to_owned())
}

/// Parses a key in any of the accepted forms.
pub fn parse_public_key(raw: &str) -> Result<PublicKey, String> {
    let bytes = der(raw)?;
    if let Ok(key) = ed25519_dalek::VerifyingKey::from_public_key_der(&bytes) {
        return Ok(PublicKey::Ed25519(key));
    }
    if let Ok(key) = p256::ecdsa::VerifyingKey::from_public_key_der(&bytes) {
        return Ok(PublicKey::P256(key));
    }
    if let Ok(raw) = <[u8; 32]>::try_from(bytes.as_slice()) {
        return ed25519_dalek::VerifyingKey::from_bytes(&raw)
            .map(PublicKey::Ed25519)
            .map_err(|_| "not a valid Ed25519 public key".to_owned());
    }
    p256::ecdsa::VerifyingKey::from_sec1_bytes(&bytes)
        .map(PublicKey::P256)
        .map_err(|_| "not an Ed25519 or ECDSA P-256 public key".to_owned())
}

impl PublicKey {
    /// Whether `signature` (standard base64) signs `message` with this key.
    pub fn verifies(&self, message: &[u8], signature: &str) -> bool {
        let Ok(signature) = STANDARD.decode(signature.trim()) else { return false };
        match self {
            PublicKey::Ed25519(key) => {
                ed25519_dalek::Signature::from_slice(&signature).is_ok_and(|s| key.verify_strict(message, &s).is_ok())
            }
            PublicKey::P256(key) => p256::ecdsa::Signature::from_der(&signature)
                .or_else(|_| p256::ecdsa::Signature::from_slice(&signature))
                .is_ok_and(|s| key.verify(message, &s).is_ok()),
        }
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::Signer as _;

    use super::*;

    /// SubjectPublicKeyInfo of an Ed25519 key, as `openssl pkey -pubout` writes it.
    fn ed25519_pem(key: &ed25519_dalek::VerifyingKey) -> String {
        let mut der = vec![0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];
        der.extend_from_slice(key.as_bytes());
        format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n", STANDARD.encode(der))
    }

    #[test]
    fn ed25519_in_pem_and_raw_verifies_only_its_own_message() {
        let signing = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let signature = STANDARD.encode(signing.sign(b"nonce-1").to_bytes());
        for form in [ed25519_pem(&signing.verifying_key()), STANDARD.encode(signing.verifying_key().as_bytes())] {
            let key = parse_public_key(&form).unwrap();
            assert!(key.verifies(b"nonce-1", &signature));
            assert!(!key.verifies(b"nonce-2", &signature));
            assert!(!key.verifies(b"nonce-1", "not base64!"));
        }
    }

    #[test]
    fn p256_with_der_and_fixed_signatures() {
        let signing = p256::ecdsa::SigningKey::from_slice(&[9; 32]).unwrap();
        let point = signing.verifying_key().to_encoded_point(false);
        let key = parse_public_key(&STANDARD.encode(point.as_bytes())).unwrap();
        let signature: p256::ecdsa::Signature = signing.sign(b"nonce-1");
        assert!(key.verifies(b"nonce-1", &STANDARD.encode(signature.to_der().as_bytes())));
        assert!(key.verifies(b"nonce-1", &STANDARD.encode(signature.to_bytes())));
        assert!(!key.verifies(b"nonce-9", &STANDARD.encode(signature.to_der().as_bytes())));
    }

    #[test]
    fn garbage_is_refused() {
        assert!(parse_public_key("hello").is_err());
        assert!(parse_public_key(&STANDARD.encode([1u8; 17])).is_err());
    }
}
