//! The JWT side of verification, through jsonwebtoken: the size limit, the header (RS256,
//! a `kid`), the signature and the standard claims (`exp`, `nbf`, `iss`, `sub`), and
//! jsonwebtoken's errors as verdicts without their text.

use super::error::{InvalidToken, VerifyError};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use serde_json::{Map, Value};
use std::time::Duration;

/// Tokens longer than this are rejected before any decoding.
const MAX_TOKEN_LEN: usize = 32 * 1024;

/// The rules jsonwebtoken checks for tokens of `issuer`: RS256, `exp`, `nbf` and `iss`,
/// with `leeway` (whole seconds) on the times.
pub(super) fn validation(issuer: &str, leeway: Duration) -> Validation {
    let mut validation = Validation::new(Algorithm::RS256);
    validation.leeway = leeway.as_secs();
    validation.set_issuer(&[issuer]);
    validation.set_required_spec_claims(&["exp", "iss", "sub"]);
    validation.validate_exp = true;
    validation.validate_nbf = true;
    // `aud` is checked by hand: ID tokens carry it, access tokens carry `client_id`.
    validation.validate_aud = false;
    validation
}

/// The `kid` of the signing key `token` asks for, once its size and header are acceptable:
/// nothing is verified yet.
pub(super) fn key_id(token: &str) -> Result<String, VerifyError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(VerifyError::Invalid(InvalidToken::Malformed));
    }
    let header = jsonwebtoken::decode_header(token).map_err(|e| map_jwt_error(&e))?;
    if header.alg != Algorithm::RS256 {
        return Err(VerifyError::Invalid(InvalidToken::Algorithm));
    }
    header
        .kid
        .ok_or(VerifyError::Invalid(InvalidToken::MissingKeyId))
}

/// The claims of `token`, once its signature verifies with `key` and `validation` holds.
pub(super) fn decode(
    token: &str,
    key: &DecodingKey,
    validation: &Validation,
) -> Result<Map<String, Value>, VerifyError> {
    let data = jsonwebtoken::decode::<Map<String, Value>>(token, key, validation)
        .map_err(|e| map_jwt_error(&e))?;
    Ok(data.claims)
}

/// A jsonwebtoken error as a verdict; its text (which may quote the token) is dropped.
fn map_jwt_error(e: &jsonwebtoken::errors::Error) -> VerifyError {
    let reason = match e.kind() {
        ErrorKind::ExpiredSignature => return VerifyError::Expired,
        ErrorKind::InvalidSignature
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidKeyFormat
        | ErrorKind::Provider(_) => InvalidToken::Signature,
        ErrorKind::InvalidAlgorithm
        | ErrorKind::MissingAlgorithm
        | ErrorKind::InvalidAlgorithmName => InvalidToken::Algorithm,
        ErrorKind::InvalidIssuer => InvalidToken::Issuer,
        ErrorKind::InvalidAudience => InvalidToken::Audience,
        ErrorKind::ImmatureSignature => InvalidToken::NotYetValid,
        ErrorKind::MissingRequiredClaim(name) => InvalidToken::MissingClaim(match name.as_str() {
            "exp" => "exp",
            "iss" => "iss",
            "sub" => "sub",
            "aud" => "aud",
            "nbf" => "nbf",
            _ => "unknown",
        }),
        _ => InvalidToken::Malformed,
    };
    VerifyError::Invalid(reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_errors_never_carry_token_text() {
        let e = jsonwebtoken::errors::Error::from(ErrorKind::MissingRequiredClaim(
            "secret-looking".into(),
        ));
        assert_eq!(
            map_jwt_error(&e).to_string(),
            "invalid token: claim `unknown` is missing"
        );
    }
}
