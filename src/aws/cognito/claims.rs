//! The claims of a verified token, and the Cognito-specific checks on them (`token_use`,
//! the app client in `aud` or `client_id`, `sub`).

use super::error::{InvalidToken, VerifyError};
use serde_json::{Map, Value};
use std::fmt;
use std::time::{Duration, SystemTime};

/// Which kind of Cognito token: the `token_use` claim.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TokenUse {
    /// An ID token (`token_use` = `id`): identity claims, `aud` = app client id.
    Id,
    /// An access token (`token_use` = `access`): scopes, `client_id` = app client id.
    Access,
}

impl TokenUse {
    /// The claim value: `id` or `access`.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenUse::Id => "id",
            TokenUse::Access => "access",
        }
    }
}

impl fmt::Display for TokenUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The claims of a verified token.
///
/// The common claims are typed; everything, these included, is in [`claims`](Self::claims).
/// Claims are personal data: think before logging them.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct CognitoClaims {
    /// The user's id in the pool (`sub`).
    pub sub: String,
    /// The user name: `cognito:username` in ID tokens, `username` in access tokens.
    pub username: Option<String>,
    /// ID or access token.
    pub token_use: TokenUse,
    /// The app client the token was issued to (`aud` or `client_id`), the verifier's.
    pub client_id: String,
    /// Expiry, in seconds since the Unix epoch (`exp`).
    pub exp: u64,
    /// The user's groups (`cognito:groups`), empty when absent.
    pub groups: Vec<String>,
    /// Every claim of the token.
    pub claims: Map<String, Value>,
}

impl CognitoClaims {
    /// A claim by name, e.g. `"email"` or `"scope"`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.claims.get(name)
    }

    /// [`exp`](Self::exp) as a time.
    pub fn expires_at(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(self.exp)
    }
}

/// Checks the claims jsonwebtoken has not (the signature, `exp`, `nbf` and `iss` are
/// checked by then) and types them: `token_use` is `id` or `access` (and `only`, when
/// set), an ID token's `aud` or an access token's `client_id` is `client_id`, `sub` is
/// there.
pub(super) fn check(
    claims: Map<String, Value>,
    client_id: &str,
    only: Option<TokenUse>,
) -> Result<CognitoClaims, VerifyError> {
    let invalid = |r| Err(VerifyError::Invalid(r));
    let string = |name: &str| claims.get(name).and_then(Value::as_str);
    let token_use = match string("token_use") {
        Some("id") => TokenUse::Id,
        Some("access") => TokenUse::Access,
        Some(_) => return invalid(InvalidToken::TokenUse),
        None => return invalid(InvalidToken::MissingClaim("token_use")),
    };
    if only.is_some_and(|only| only != token_use) {
        return invalid(InvalidToken::TokenUse);
    }
    match token_use {
        TokenUse::Id => {
            let ok = match claims.get("aud") {
                Some(Value::String(aud)) => *aud == client_id,
                Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(client_id)),
                Some(_) => false,
                None => return invalid(InvalidToken::MissingClaim("aud")),
            };
            if !ok {
                return invalid(InvalidToken::Audience);
            }
        }
        TokenUse::Access => match string("client_id") {
            Some(id) if id == client_id => {}
            Some(_) => return invalid(InvalidToken::ClientId),
            None => return invalid(InvalidToken::MissingClaim("client_id")),
        },
    }
    let Some(sub) = string("sub") else {
        return invalid(InvalidToken::MissingClaim("sub"));
    };
    // jsonwebtoken has checked `exp` is a number in the future.
    let exp = claims
        .get("exp")
        .and_then(|v| v.as_u64().or(v.as_f64().map(|f| f as u64)));
    let Some(exp) = exp else {
        return invalid(InvalidToken::Malformed);
    };
    let username = match token_use {
        TokenUse::Id => string("cognito:username"),
        TokenUse::Access => string("username"),
    };
    let groups = claims
        .get("cognito:groups")
        .and_then(Value::as_array)
        .map(|g| {
            g.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    Ok(CognitoClaims {
        sub: sub.to_owned(),
        username: username.map(String::from),
        token_use,
        client_id: client_id.to_owned(),
        exp,
        groups,
        claims,
    })
}
