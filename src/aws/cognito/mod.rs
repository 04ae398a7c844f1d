//! Cognito JWT verification with a circuit breaker around the JWKS fetch (feature
//! `cognito`).
//!
//! A [`CognitoVerifier`] checks ID and access tokens of one user pool and one app client,
//! as `aws-jwt-verify`'s `CognitoJwtVerifier` does for the seed's TypeScript backend:
//!
//! * **Signature:** RS256 only, with the pool's signing key picked by the token's `kid`.
//! * **Claims:** `iss` is `https://cognito-idp.{region}.amazonaws.com/{userPoolId}`, `exp`
//!   has not passed, `token_use` is `id` or `access`; an ID token's `aud`, or an access
//!   token's `client_id` (access tokens have no `aud`), is the app client id.
//!
//! The only network call is the key set fetch,
//! `GET https://cognito-idp.{region}.amazonaws.com/{userPoolId}/.well-known/jwks.json`.
//! It goes through a tower stack with the breaker outside a timeout, so a hung fetch is a
//! failure the breaker counts:
//!
//! ```text
//! ServiceBuilder::new()
//!     .layer(CircuitBreakerLayer::from_circuit(circuit))   // ("cognito", "verifyJWT"), cognito() preset
//!     .timeout(2s)
//!     .service(JWKS client)                               // the AWS SDK's HTTPS connector
//! ```
//!
//! # Keys and the breaker
//!
//! * Keys are cached in the verifier, so across invocations when the verifier lives as long
//!   as the process (built once in a Lambda function's `main`, or kept in a
//!   `static`/`OnceLock`). Clones share the cache and the circuit.
//! * A token whose `kid` is not cached triggers one fetch (concurrent misses share it:
//!   one fetch is in flight at a time, and whoever waited takes its outcome). The fetched
//!   set replaces the cache, so keys Cognito withdraws stop verifying.
//! * **Key age:** cached keys are used without a fetch for
//!   [`key_max_age`](CognitoVerifierBuilder::key_max_age) (1 h by default, the default
//!   lifetime of a Cognito token). The first verification after that refreshes the set
//!   through the circuit, so a withdrawn (say, leaked) key stops verifying within an hour
//!   even when no unknown `kid` ever forces a fetch. If the refresh fails, the cached keys
//!   keep verifying until [`key_hard_max_age`](CognitoVerifierBuilder::key_hard_max_age)
//!   (24 h by default, the longest token lifetime Cognito allows), each verification
//!   asking the circuit for a refresh (an open circuit answers at once, without I/O);
//!   past it every token is [`Unavailable`](VerifyError::Unavailable). Ages count from
//!   when the fetch was sent, on tokio's clock.
//! * **Cooldown:** when a fresh key set does not hold the `kid` a token asked for, the
//!   token is [`Invalid`](VerifyError::Invalid) ([`InvalidToken::UnknownKeyId`]) and no
//!   unknown `kid` causes a fetch for
//!   [`refetch_cooldown`](CognitoVerifierBuilder::refetch_cooldown) (10 s by default, as
//!   `aws-jwt-verify`'s penalty box; at least 1 s). A flood of made-up `kid`s costs
//!   Cognito at most one fetch per cooldown, while a key rotated in after a fetch that
//!   found its key is picked up at once. Failed fetches start no cooldown; the breaker
//!   limits those. The cooldown holds only while the circuit is Closed: otherwise the
//!   fetch is the circuit's to admit or reject, so while it is open an unknown `kid` is
//!   [`Unavailable`](VerifyError::Unavailable), never `Invalid` (the verifier cannot
//!   tell what the pool holds now), and a half-open circuit may admit it as its probe.
//! * **Fail closed:** a token is accepted only with a key from a set younger than the max
//!   age, or younger than the hard max age while the refresh fails. When the key cannot
//!   be had (circuit open, timeout, connection error, 5xx, unusable key set, keys past
//!   the hard max age) the token is rejected with [`VerifyError::Unavailable`], never
//!   accepted.
//! * **What the circuit counts:** JWKS fetches, and only them. Every failed fetch is a
//!   failure, a 4xx included (a wrong pool id then trips the breaker instead of sending a
//!   fetch per request). A bad token is never a failure: the seed counted every failed
//!   verification, so anyone could open the circuit with garbage tokens. Verifications
//!   served from the cache record nothing.
//!
//! Nothing here logs a token, a claim or a response body. Error messages are fixed texts.
//!
//! # Example
//!
//! ```no_run
//! use tower_circuit_breaker::CircuitBreakerRegistry;
//! use tower_circuit_breaker::aws::cognito::{CognitoVerifier, VerifyError};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let registry = CircuitBreakerRegistry::new();
//! // Once per process (in `main`, before the Lambda runtime starts).
//! let verifier = CognitoVerifier::builder("eu-west-1", "eu-west-1_AbCdEf123", "1example23456789")
//!     .registry(&registry) // circuit ("cognito", "verifyJWT") with the cognito() preset
//!     .build()?;
//!
//! # let token = "";
//! match verifier.verify(token).await {
//!     Ok(claims) => println!("user {}", claims.sub),
//!     // Bad, expired, or for another client: 401.
//!     Err(VerifyError::Invalid(_) | VerifyError::Expired) => { /* reject */ }
//!     // Keys unreachable: reject too (503), never let the user in.
//!     Err(VerifyError::Unavailable(_)) => { /* reject */ }
//!     Err(_) => { /* reject */ }
//! }
//! # Ok(())
//! # }
//! ```

// One concern per file: `builder` checks the settings and assembles the verifier; `verify`
// is the JWT side (header, signature, standard claims); `claims` the Cognito claims and
// their checks; `key_cache` keeps the signing keys (ages, cooldown, one fetch at a time);
// `jwks` fetches them through the circuit; `error` says why a token was refused.

mod builder;
mod claims;
mod error;
mod jwks;
mod key_cache;
mod verify;

pub use builder::CognitoVerifierBuilder;
pub use claims::{CognitoClaims, TokenUse};
pub use error::{CognitoConfigError, InvalidToken, Unavailable, VerifyError};

use crate::Circuit;
use jsonwebtoken::Validation;
use key_cache::KeyCache;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// The registry service the verifier's circuit is kept under, as the seed keys it.
pub const REGISTRY_SERVICE: &str = "cognito";
/// The registry operation the verifier's circuit is kept under, as the seed keys it.
pub const REGISTRY_OPERATION: &str = "verifyJWT";
/// Default time limit of one JWKS fetch, the cognito preset's expected response time.
pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(2);
/// Default time after a successful fetch during which an unknown `kid` causes no refetch.
pub const DEFAULT_REFETCH_COOLDOWN: Duration = Duration::from_secs(10);
/// The shortest refetch cooldown the builder accepts: a flood of made-up `kid`s then costs
/// Cognito at most one fetch a second.
pub const MIN_REFETCH_COOLDOWN: Duration = Duration::from_secs(1);
/// Default age at which cached keys are refreshed before use: 1 h, the default lifetime of
/// a Cognito ID or access token. A key Cognito withdraws stops verifying within this long.
pub const DEFAULT_KEY_MAX_AGE: Duration = Duration::from_secs(60 * 60);
/// Default age past which cached keys are not used at all, even when they cannot be
/// refreshed: 24 h, the longest lifetime Cognito allows an ID or access token.
pub const DEFAULT_KEY_HARD_MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);
/// The shortest key max age the builder accepts (at most one refresh a second).
pub const MIN_KEY_MAX_AGE: Duration = Duration::from_secs(1);

/// Verifies Cognito ID and access tokens of one user pool and app client, with the key
/// set fetch behind a circuit breaker. See the [module docs](self).
///
/// Cheap to clone; clones share the key cache and the circuit. Build it once per process.
#[derive(Clone)]
pub struct CognitoVerifier {
    inner: Arc<Inner>,
}

struct Inner {
    issuer: String,
    client_id: String,
    validation: Validation,
    token_use: Option<TokenUse>,
    keys: KeyCache,
}

impl fmt::Debug for CognitoVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("CognitoVerifier")
            .field("issuer", &i.issuer)
            .field("client_id", &i.client_id)
            .field("jwks_url", i.keys.jwks_url())
            .field("circuit", &i.keys.circuit().name())
            .field("cached_keys", &self.cached_key_count())
            .finish_non_exhaustive()
    }
}

impl CognitoVerifier {
    /// A builder for the pool `user_pool_id` in `region` and the app client `client_id`.
    pub fn builder(
        region: impl Into<String>,
        user_pool_id: impl Into<String>,
        client_id: impl Into<String>,
    ) -> CognitoVerifierBuilder {
        CognitoVerifierBuilder::new(region.into(), user_pool_id.into(), client_id.into())
    }

    /// The circuit the fetch goes through.
    pub fn circuit(&self) -> &Circuit {
        self.inner.keys.circuit()
    }

    /// The issuer tokens must carry.
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// Where the key set is fetched from.
    pub fn jwks_url(&self) -> &http::Uri {
        self.inner.keys.jwks_url()
    }

    /// How many signing keys are cached (whatever their age).
    pub fn cached_key_count(&self) -> usize {
        self.inner.keys.cached_key_count()
    }

    /// or `None` when no fetch has succeeded yet. Past
    /// [`key_max_age`](CognitoVerifierBuilder::key_max_age) the next verification
    /// refreshes it; past [`key_hard_max_age`](CognitoVerifierBuilder::key_hard_max_age)
    /// it is not used.
    pub fn cached_keys_age(&self) -> Option<Duration> {
        self.inner.keys.cached_keys_age()
    }

    /// Fetches the key set now unless keys younger than
    /// [`key_max_age`](CognitoVerifierBuilder::key_max_age) are cached already: call it
    /// at cold start (outside the request path) so the first request does not wait for
    /// the fetch.
    ///
    /// # Errors
    ///
    /// Why the keys could not be fetched; the verifier stays usable (with the keys it
    /// had) and will fetch on demand.
    pub async fn prefetch(&self) -> Result<(), Unavailable> {
        self.inner.keys.prefetch().await
    }

    /// Verifies `token` (an ID or access token, without a `Bearer ` prefix) and returns
    /// its claims.
    ///
    /// # Errors
    ///
    /// [`VerifyError::Invalid`] or [`VerifyError::Expired`] for tokens to reject as such,
    /// [`VerifyError::Unavailable`] when the signing key could not be had (the token is
    /// rejected too: authentication fails closed).
    pub async fn verify(&self, token: &str) -> Result<CognitoClaims, VerifyError> {
        let inner = &*self.inner;
        let kid = verify::key_id(token)?;
        let key = inner.keys.key(&kid).await?;
        let claims = verify::decode(token, &key, &inner.validation)?;
        claims::check(claims, &inner.client_id, inner.token_use)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifier_is_shareable() {
        fn check<T: Send + Sync + Clone + 'static>() {}
        check::<CognitoVerifier>();
        check::<VerifyError>();
    }
}
