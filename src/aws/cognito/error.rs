//! Why a token was not accepted, why the keys could not be had, and why a verifier
//! setting is unusable. Every message is a fixed text: no token content.

use crate::error::CircuitOpen;
use std::fmt;
use std::sync::Arc;

/// Why a token was not accepted. Every variant means: reject the request.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum VerifyError {
    /// The token is not a valid token of this user pool and app client.
    Invalid(InvalidToken),
    /// The token was valid and has expired; the client should refresh it.
    Expired,
    /// The token's signing key is not cached (or its set is past the hard max age) and
    /// could not be fetched: failing closed.
    /// Retrying later may succeed.
    Unavailable(Unavailable),
}

impl VerifyError {
    /// Whether the key set was unavailable (the token was not judged).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, VerifyError::Unavailable(_))
    }

    /// The circuit's rejection, when the fetch was not attempted because it is open.
    pub fn circuit_open(&self) -> Option<&CircuitOpen> {
        match self {
            VerifyError::Unavailable(Unavailable::CircuitOpen(open)) => Some(open),
            _ => None,
        }
    }
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerifyError::Invalid(reason) => write!(f, "invalid token: {reason}"),
            VerifyError::Expired => f.write_str("token has expired"),
            VerifyError::Unavailable(why) => write!(f, "signing keys unavailable: {why}"),
        }
    }
}

impl std::error::Error for VerifyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            VerifyError::Unavailable(why) => Some(why),
            _ => None,
        }
    }
}

/// What is wrong with an invalid token. Messages are fixed texts: no token content.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum InvalidToken {
    /// Not a well-formed JWT (parts, base64, JSON, claim types), or too long.
    Malformed,
    /// The header's algorithm is not RS256.
    Algorithm,
    /// The header has no `kid`.
    MissingKeyId,
    /// No key of the pool has this `kid`, even after a fresh fetch.
    UnknownKeyId,
    /// The signature does not verify with the pool's key.
    Signature,
    /// A required claim is missing.
    MissingClaim(&'static str),
    /// `iss` is not this user pool.
    Issuer,
    /// `token_use` is neither `id` nor `access`, or not the one the verifier accepts.
    TokenUse,
    /// An ID token whose `aud` is not the app client id.
    Audience,
    /// An access token whose `client_id` is not the app client id.
    ClientId,
    /// `nbf` is in the future.
    NotYetValid,
}

impl fmt::Display for InvalidToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvalidToken::Malformed => f.write_str("malformed token"),
            InvalidToken::Algorithm => f.write_str("algorithm is not RS256"),
            InvalidToken::MissingKeyId => f.write_str("header has no key id"),
            InvalidToken::UnknownKeyId => f.write_str("no signing key of the pool has this key id"),
            InvalidToken::Signature => f.write_str("signature does not verify"),
            InvalidToken::MissingClaim(name) => write!(f, "claim `{name}` is missing"),
            InvalidToken::Issuer => f.write_str("issuer is not the user pool"),
            InvalidToken::TokenUse => f.write_str("token_use is not accepted"),
            InvalidToken::Audience => f.write_str("audience is not the app client"),
            InvalidToken::ClientId => f.write_str("client_id is not the app client"),
            InvalidToken::NotYetValid => f.write_str("token is not valid yet"),
        }
    }
}

/// Why the signing keys could not be had.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Unavailable {
    /// The circuit is open: no fetch was attempted.
    CircuitOpen(CircuitOpen),
    /// The fetch did not complete within the fetch timeout.
    Timeout,
    /// The JWKS endpoint answered with this non-success status.
    Status(u16),
    /// The request failed: connection refused or reset, DNS, TLS, I/O.
    Transport(Arc<dyn std::error::Error + Send + Sync>),
    /// The endpoint answered 2xx but the body is not a usable key set (not JSON, too
    /// large, no RSA signing key with a `kid`).
    BadKeySet(&'static str),
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unavailable::CircuitOpen(open) => open.fmt(f),
            Unavailable::Timeout => f.write_str("JWKS fetch timed out"),
            Unavailable::Status(code) => write!(f, "JWKS endpoint answered HTTP {code}"),
            Unavailable::Transport(e) => write!(f, "JWKS request failed: {e}"),
            Unavailable::BadKeySet(why) => write!(f, "unusable JWKS: {why}"),
        }
    }
}

impl std::error::Error for Unavailable {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Unavailable::CircuitOpen(open) => Some(open),
            Unavailable::Transport(e) => Some(&**e),
            _ => None,
        }
    }
}

/// A verifier setting is unusable. Says which.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CognitoConfigError {
    field: &'static str,
    rule: &'static str,
}

impl CognitoConfigError {
    pub(super) const fn new(field: &'static str, rule: &'static str) -> Self {
        CognitoConfigError { field, rule }
    }

    /// The setting: `region`, `user_pool_id`, `client_id`, `jwks_url`, `fetch_timeout`,
    /// `refetch_cooldown`, `key_max_age` or `key_hard_max_age`.
    pub fn field(&self) -> &'static str {
        self.field
    }

    /// The rule it broke.
    pub fn rule(&self) -> &'static str {
        self.rule
    }
}

impl fmt::Display for CognitoConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid Cognito verifier setting: `{}` {}",
            self.field, self.rule
        )
    }
}

impl std::error::Error for CognitoConfigError {}
