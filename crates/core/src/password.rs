//! Passwords: Argon2id with a fresh salt (PHC strings), hashed and checked
//! off the async threads (a hash takes tens of milliseconds by design).

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

use crate::error::{ApiError, ErrorCode};

/// Hashes a password.
pub async fn hash(password: String) -> Result<String, ApiError> {
    let failed = || ApiError::new(ErrorCode::Internal, "password hashing failed");
    tokio::task::spawn_blocking(move || Argon2::default().hash_password(password.as_bytes()).map(|h| h.to_string()))
        .await
        .map_err(|_| failed())?
        .map_err(|_| failed())
}

/// Whether `password` matches `hash`.
pub async fn verify(password: String, hash: String) -> bool {
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash)
            .is_ok_and(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
    })
    .await
    .unwrap_or(false)
}

/// Whether `password` matches `hash`; when there is no hash (no such
/// account) it is checked against a hash no password matches, so the
/// answer takes as long and timing does not tell accounts apart.
pub async fn verify_if_known(password: String, hash: Option<String>) -> bool {
    static NOBODY: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    let known = hash.is_some();
    let hash = match hash {
        Some(hash) => hash,
        None => match NOBODY
            .get_or_try_init(|| {
                self::hash(crate::secret::Secret::generate(crate::secret::SecretKind::RefreshToken).expose().to_owned())
            })
            .await
        {
            Ok(hash) => hash.clone(),
            Err(_) => return false,
        },
    };
    verify(password, hash).await && known
}
