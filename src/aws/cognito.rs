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

use crate::CircuitBreakerRegistry;
use crate::error::CircuitOpen;
use crate::{
    BoxError, Circuit, CircuitBreaker, CircuitBreakerConfig, CircuitBreakerLayer, CircuitState,
};
use aws_smithy_http_client::tls;
use aws_smithy_runtime_api::client::http::{HttpConnector, SharedHttpConnector};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_types::body::SdkBody;
use http_body_util::{BodyExt, Limited};
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};
use tokio::time::Instant;
use tower::ServiceBuilder;
use tower::timeout::Timeout;
use tower::timeout::error::Elapsed;
use tower_service::Service;

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

/// Tokens longer than this are rejected before any decoding.
const MAX_TOKEN_LEN: usize = 32 * 1024;
/// Key set bodies longer than this are an unusable key set.
const MAX_JWKS_LEN: usize = 64 * 1024;

// ===== claims =====

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

// ===== errors =====

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

// ===== builder =====

/// Builds a [`CognitoVerifier`]. From [`CognitoVerifier::builder`].
#[must_use]
pub struct CognitoVerifierBuilder {
    region: String,
    user_pool_id: String,
    client_id: String,
    jwks_url: Option<String>,
    circuit: Option<Circuit>,
    fetch_timeout: Duration,
    refetch_cooldown: Duration,
    key_max_age: Duration,
    key_hard_max_age: Duration,
    leeway: Duration,
    token_use: Option<TokenUse>,
    connector: Option<SharedHttpConnector>,
}

impl fmt::Debug for CognitoVerifierBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CognitoVerifierBuilder")
            .field("region", &self.region)
            .field("user_pool_id", &self.user_pool_id)
            .field("client_id", &self.client_id)
            .field("jwks_url", &self.jwks_url)
            .field("circuit", &self.circuit.as_ref().map(Circuit::name))
            .field("fetch_timeout", &self.fetch_timeout)
            .field("refetch_cooldown", &self.refetch_cooldown)
            .field("key_max_age", &self.key_max_age)
            .field("key_hard_max_age", &self.key_hard_max_age)
            .field("leeway", &self.leeway)
            .field("token_use", &self.token_use)
            .finish_non_exhaustive()
    }
}

impl CognitoVerifierBuilder {
    /// Fetch the key set from this URL instead of the pool's (the issuer is unchanged).
    /// For tests against a local server: moto serves it at
    /// `{endpoint}/{userPoolId}/.well-known/jwks.json`.
    pub fn jwks_url(mut self, url: impl Into<String>) -> Self {
        self.jwks_url = Some(url.into());
        self
    }

    /// Fetch through this circuit (share it, watch it, control it by hand). Default: a new
    /// circuit `cognito/verifyJWT` with [`CircuitBreakerConfig::cognito`].
    pub fn circuit(mut self, circuit: Circuit) -> Self {
        self.circuit = Some(circuit);
        self
    }

    /// Fetch through the registry's circuit `("cognito", "verifyJWT")`, created with
    /// [`CircuitBreakerConfig::cognito`] if it does not exist yet: its stats then show
    /// next to the backend's other circuits, as in the seed.
    pub fn registry(self, registry: &CircuitBreakerRegistry) -> Self {
        let circuit = registry.circuit(
            REGISTRY_SERVICE,
            REGISTRY_OPERATION,
            &CircuitBreakerConfig::cognito(),
        );
        self.circuit(circuit)
    }

    /// Time limit of one fetch, connection included (default 2 s). A fetch that takes
    /// longer is abandoned and counted as a failure.
    pub fn fetch_timeout(mut self, timeout: Duration) -> Self {
        self.fetch_timeout = timeout;
        self
    }

    /// After a fetch that did not hold the `kid` a token asked for, unknown `kid`s cause no
    /// new fetch for this long (default 10 s, at least [`MIN_REFETCH_COOLDOWN`], 1 s:
    /// [`build`](Self::build) refuses less, since zero meant a fetch per made-up `kid`).
    /// Keep it short: meanwhile a token signed with a key Cognito has just published is
    /// rejected too. While the circuit is not Closed the cooldown does not apply: the
    /// fetch is left to the circuit, which rejects it while Open (the token is then
    /// [`Unavailable`](VerifyError::Unavailable), never [`Invalid`](VerifyError::Invalid)).
    pub fn refetch_cooldown(mut self, cooldown: Duration) -> Self {
        self.refetch_cooldown = cooldown;
        self
    }

    /// The age at which the cached key set is refreshed (default [`DEFAULT_KEY_MAX_AGE`],
    /// 1 h; at least [`MIN_KEY_MAX_AGE`], 1 s). The first verification that finds the keys
    /// this old fetches the set again through the circuit (concurrent ones wait for that
    /// one fetch), so a key Cognito withdraws stops verifying within this long. The age
    /// counts from when the fetch that brought the keys was sent.
    ///
    /// When the refresh fails (circuit open, timeout, error status, unusable body), the
    /// cached keys keep verifying until [`key_hard_max_age`](Self::key_hard_max_age).
    pub fn key_max_age(mut self, age: Duration) -> Self {
        self.key_max_age = age;
        self
    }

    /// The age past which cached keys are never used (default
    /// [`DEFAULT_KEY_HARD_MAX_AGE`], 24 h; at least [`key_max_age`](Self::key_max_age)).
    /// Between the two ages a key is used only while its refresh fails: this is how long
    /// a JWKS outage can last before every token is rejected as
    /// [`Unavailable`](VerifyError::Unavailable), and how long a withdrawn key can still
    /// verify while Cognito cannot be reached.
    pub fn key_hard_max_age(mut self, age: Duration) -> Self {
        self.key_hard_max_age = age;
        self
    }

    /// Clock skew allowed on `exp` and `nbf` (default 0, as `aws-jwt-verify`; whole
    /// seconds count).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Accept only ID tokens or only access tokens (default: both).
    pub fn token_use(mut self, token_use: TokenUse) -> Self {
        self.token_use = Some(token_use);
        self
    }

    /// Send the fetch through this connector instead of the AWS SDK's default HTTPS one
    /// (rustls with aws-lc, the system's trusted roots), e.g. one built with a proxy or a
    /// custom trust store by `aws_smithy_http_client::Builder`.
    pub fn http_connector(mut self, connector: impl HttpConnector + 'static) -> Self {
        self.connector = Some(SharedHttpConnector::new(connector));
        self
    }

    /// Checks the settings and builds the verifier. No network I/O (the default connector
    /// loads the system's trusted root certificates).
    ///
    /// # Errors
    ///
    /// A [`CognitoConfigError`] when the region, pool id or client id is empty or holds
    /// characters no real one does, the JWKS URL is not an absolute `http`/`https` URL,
    /// the fetch timeout is zero, the refetch cooldown or the key max age is under 1 s,
    /// or the hard max age is below the max age.
    pub fn build(self) -> Result<CognitoVerifier, CognitoConfigError> {
        let bad = |field, rule| CognitoConfigError { field, rule };
        let token_chars = |s: &str, extra: &[char]| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || extra.contains(&c))
        };
        if !token_chars(&self.region, &[]) {
            return Err(bad("region", "must be a region name such as `eu-west-1`"));
        }
        if !token_chars(&self.user_pool_id, &['_']) || !self.user_pool_id.contains('_') {
            return Err(bad(
                "user_pool_id",
                "must be a user pool id such as `eu-west-1_AbCdEf123`",
            ));
        }
        if !token_chars(&self.client_id, &[]) {
            return Err(bad(
                "client_id",
                "must be an app client id (letters and digits)",
            ));
        }
        if self.fetch_timeout.is_zero() {
            return Err(bad("fetch_timeout", "must be greater than zero"));
        }
        if self.refetch_cooldown < MIN_REFETCH_COOLDOWN {
            return Err(bad("refetch_cooldown", "must be at least 1 s"));
        }
        if self.key_max_age < MIN_KEY_MAX_AGE {
            return Err(bad("key_max_age", "must be at least 1 s"));
        }
        if self.key_hard_max_age < self.key_max_age {
            return Err(bad("key_hard_max_age", "must be at least `key_max_age`"));
        }
        let issuer = format!(
            "https://cognito-idp.{}.amazonaws.com/{}",
            self.region, self.user_pool_id
        );
        let url = self
            .jwks_url
            .unwrap_or_else(|| format!("{issuer}/.well-known/jwks.json"));
        let jwks_url: http::Uri = url
            .parse()
            .map_err(|_| bad("jwks_url", "must be an absolute URL"))?;
        match jwks_url.scheme_str() {
            Some("http" | "https") if jwks_url.authority().is_some() => {}
            _ => return Err(bad("jwks_url", "must be an absolute http or https URL")),
        }

        let mut validation = Validation::new(Algorithm::RS256);
        validation.leeway = self.leeway.as_secs();
        validation.set_issuer(&[&issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        // `aud` is checked by hand: ID tokens carry it, access tokens carry `client_id`.
        validation.validate_aud = false;

        let circuit = self.circuit.unwrap_or_else(|| {
            Circuit::for_operation(
                REGISTRY_SERVICE,
                REGISTRY_OPERATION,
                CircuitBreakerConfig::cognito(),
            )
        });
        let connector = self.connector.unwrap_or_else(default_connector);
        let fetcher = ServiceBuilder::new()
            .layer(CircuitBreakerLayer::from_circuit(circuit.clone()))
            .timeout(self.fetch_timeout)
            .service(JwksClient { connector });

        Ok(CognitoVerifier {
            inner: Arc::new(Inner {
                issuer,
                client_id: self.client_id,
                jwks_url,
                validation,
                token_use: self.token_use,
                refetch_cooldown: self.refetch_cooldown,
                key_max_age: self.key_max_age,
                key_hard_max_age: self.key_hard_max_age,
                circuit,
                fetcher,
                cache: RwLock::new(Cache::default()),
                refresh: tokio::sync::Mutex::new(()),
            }),
        })
    }
}

fn default_connector() -> SharedHttpConnector {
    SharedHttpConnector::new(
        aws_smithy_http_client::Connector::builder()
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::AwsLc,
            ))
            .build(),
    )
}

// ===== verifier =====

/// Verifies Cognito ID and access tokens of one user pool and app client, with the key
/// set fetch behind a circuit breaker. See the [module docs](self).
///
/// Cheap to clone; clones share the key cache and the circuit. Build it once per process.
#[derive(Clone)]
pub struct CognitoVerifier {
    inner: Arc<Inner>,
}

type Fetcher = CircuitBreaker<Timeout<JwksClient>>;
type Keys = HashMap<String, Arc<DecodingKey>>;

struct Inner {
    issuer: String,
    client_id: String,
    jwks_url: http::Uri,
    validation: Validation,
    token_use: Option<TokenUse>,
    refetch_cooldown: Duration,
    key_max_age: Duration,
    key_hard_max_age: Duration,
    circuit: Circuit,
    fetcher: Fetcher,
    cache: RwLock<Cache>,
    /// Held while fetching: one fetch at a time, concurrent misses wait for its result.
    refresh: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct Cache {
    keys: Keys,
    /// When the fetch that brought `keys` was sent; `None` before the first success.
    fetched_at: Option<Instant>,
    /// Until then, unknown `kid`s cause no fetch: the last fetch missed the `kid` asked for.
    cooldown_until: Option<Instant>,
    /// Completed fetch attempts (rejections included), to recognise one made while
    /// waiting for the fetch lock.
    attempts: u64,
    /// The outcome of the last attempt when it failed.
    last_error: Option<Unavailable>,
}

impl Cache {
    /// How old the keys are at `now`; `None` before the first successful fetch.
    fn age(&self, now: Instant) -> Option<Duration> {
        self.fetched_at.map(|at| now.saturating_duration_since(at))
    }

    /// Whether the keys are younger than `max_age`.
    fn is_fresh(&self, now: Instant, max_age: Duration) -> bool {
        self.age(now).is_some_and(|age| age < max_age)
    }

    /// The key for `kid` if cached and younger than `max_age` (the max age: no fetch
    /// needed; the hard max age: usable when the fetch failed).
    fn usable_key(&self, kid: &str, now: Instant, max_age: Duration) -> Option<Arc<DecodingKey>> {
        if !self.is_fresh(now, max_age) {
            return None;
        }
        self.keys.get(kid).cloned()
    }
}

impl fmt::Debug for CognitoVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("CognitoVerifier")
            .field("issuer", &i.issuer)
            .field("client_id", &i.client_id)
            .field("jwks_url", &i.jwks_url)
            .field("circuit", &i.circuit.name())
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
        CognitoVerifierBuilder {
            region: region.into(),
            user_pool_id: user_pool_id.into(),
            client_id: client_id.into(),
            jwks_url: None,
            circuit: None,
            fetch_timeout: DEFAULT_FETCH_TIMEOUT,
            refetch_cooldown: DEFAULT_REFETCH_COOLDOWN,
            key_max_age: DEFAULT_KEY_MAX_AGE,
            key_hard_max_age: DEFAULT_KEY_HARD_MAX_AGE,
            leeway: Duration::ZERO,
            token_use: None,
            connector: None,
        }
    }

    /// The circuit the fetch goes through.
    pub fn circuit(&self) -> &Circuit {
        &self.inner.circuit
    }

    /// The issuer tokens must carry.
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// Where the key set is fetched from.
    pub fn jwks_url(&self) -> &http::Uri {
        &self.inner.jwks_url
    }

    /// How many signing keys are cached (whatever their age).
    pub fn cached_key_count(&self) -> usize {
        self.inner.read_cache().keys.len()
    }

    /// How old the cached key set is: the time since the fetch that brought it was sent,
    /// or `None` when no fetch has succeeded yet. Past
    /// [`key_max_age`](CognitoVerifierBuilder::key_max_age) the next verification
    /// refreshes it; past [`key_hard_max_age`](CognitoVerifierBuilder::key_hard_max_age)
    /// it is not used.
    pub fn cached_keys_age(&self) -> Option<Duration> {
        let fetched_at = self.inner.read_cache().fetched_at?;
        Some(Instant::now().saturating_duration_since(fetched_at))
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
        let inner = &*self.inner;
        if inner
            .read_cache()
            .is_fresh(Instant::now(), inner.key_max_age)
        {
            return Ok(());
        }
        let _fetching = inner.refresh.lock().await;
        if inner
            .read_cache()
            .is_fresh(Instant::now(), inner.key_max_age)
        {
            return Ok(());
        }
        inner.fetch_and_store().await
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
        if token.len() > MAX_TOKEN_LEN {
            return Err(VerifyError::Invalid(InvalidToken::Malformed));
        }
        let header = jsonwebtoken::decode_header(token).map_err(|e| map_jwt_error(&e))?;
        if header.alg != Algorithm::RS256 {
            return Err(VerifyError::Invalid(InvalidToken::Algorithm));
        }
        let kid = header
            .kid
            .ok_or(VerifyError::Invalid(InvalidToken::MissingKeyId))?;
        let key = inner.key(&kid).await?;
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &inner.validation)
            .map_err(|e| map_jwt_error(&e))?;
        inner.check_claims(data.claims)
    }
}

impl Inner {
    fn read_cache(&self) -> std::sync::RwLockReadGuard<'_, Cache> {
        self.cache.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The key for `kid`: cached and younger than the max age, or fetched (subject to
    /// the cooldown and the breaker), or, when that fetch fails, cached and younger than
    /// the hard max age. Nothing else: authentication fails closed.
    async fn key(&self, kid: &str) -> Result<Arc<DecodingKey>, VerifyError> {
        let seen = {
            let cache = self.read_cache();
            if let Some(key) = cache.usable_key(kid, Instant::now(), self.key_max_age) {
                return Ok(key);
            }
            cache.attempts
        };
        // One fetch at a time: whoever waits here shares the outcome of the fetch ahead.
        let _fetching = self.refresh.lock().await;
        {
            let cache = self.read_cache();
            let now = Instant::now();
            if let Some(key) = cache.usable_key(kid, now, self.key_max_age) {
                return Ok(key);
            }
            if cache.attempts != seen {
                // Another task fetched while this one waited: its outcome answers this one.
                return match &cache.last_error {
                    None => match cache.usable_key(kid, now, self.key_hard_max_age) {
                        Some(key) => Ok(key),
                        None => Err(VerifyError::Invalid(InvalidToken::UnknownKeyId)),
                    },
                    Some(e) => self.stale_or(&cache, kid, now, e.clone()),
                };
            }
            // The cooldown spares Cognito a fetch per made-up `kid`, but only when the
            // keys are fresh (a stale set is refreshed anyway) and the circuit is Closed:
            // otherwise the circuit decides, and an Open one makes the answer
            // `Unavailable`, since the verifier cannot tell what the pool holds now.
            if cache.is_fresh(now, self.key_max_age)
                && cache.cooldown_until.is_some_and(|until| now < until)
                && self.circuit.state() == CircuitState::Closed
            {
                tracing::debug!(
                    circuit = %self.circuit.name(),
                    "unknown key id within the refetch cooldown; not fetching"
                );
                return Err(VerifyError::Invalid(InvalidToken::UnknownKeyId));
            }
        }
        let outcome = self.fetch_and_store().await;
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        match outcome {
            Ok(()) => match cache.keys.get(kid) {
                Some(key) => Ok(key.clone()),
                None => {
                    // A fresh set without it: made up, withdrawn, or from another pool.
                    // Fetch no more for a while.
                    cache.cooldown_until = Some(later(now, self.refetch_cooldown));
                    Err(VerifyError::Invalid(InvalidToken::UnknownKeyId))
                }
            },
            Err(e) => self.stale_or(&cache, kid, now, e),
        }
    }

    /// After a failed fetch: the cached key while younger than the hard max age, else
    /// `Unavailable` with the fetch's error.
    fn stale_or(
        &self,
        cache: &Cache,
        kid: &str,
        now: Instant,
        error: Unavailable,
    ) -> Result<Arc<DecodingKey>, VerifyError> {
        match cache.usable_key(kid, now, self.key_hard_max_age) {
            Some(key) => {
                tracing::debug!(
                    circuit = %self.circuit.name(),
                    "key refresh failed; using the cached key until its hard max age"
                );
                Ok(key)
            }
            None => Err(VerifyError::Unavailable(error)),
        }
    }

    /// One fetch through the breaker; the cache takes the outcome. Call with `refresh` held.
    async fn fetch_and_store(&self) -> Result<(), Unavailable> {
        let sent = Instant::now();
        let outcome = self.fetch().await;
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        cache.attempts += 1;
        match outcome {
            Ok(keys) => {
                tracing::debug!(circuit = %self.circuit.name(), keys = keys.len(), "JWKS fetched");
                cache.keys = keys;
                cache.fetched_at = Some(sent);
                cache.cooldown_until = None;
                cache.last_error = None;
                Ok(())
            }
            Err(e) => {
                match &e {
                    Unavailable::CircuitOpen(_) => tracing::debug!(
                        circuit = %self.circuit.name(),
                        "JWKS fetch not attempted: circuit open"
                    ),
                    other => tracing::warn!(
                        circuit = %self.circuit.name(),
                        state = %self.circuit.state(),
                        error = %other,
                        "JWKS fetch failed"
                    ),
                }
                cache.last_error = Some(e.clone());
                Err(e)
            }
        }
    }

    async fn fetch(&self) -> Result<Keys, Unavailable> {
        let mut svc = self.fetcher.clone();
        let request = http::Request::get(self.jwks_url.clone())
            .header(http::header::ACCEPT, "application/json")
            .body(SdkBody::empty())
            .map_err(|e| Unavailable::Transport(Arc::new(e)))?;
        let result = match poll_fn(|cx| svc.poll_ready(cx)).await {
            Ok(()) => svc.call(request).await,
            Err(e) => Err(e),
        };
        result.map_err(unavailable)
    }

    fn check_claims(&self, claims: Map<String, Value>) -> Result<CognitoClaims, VerifyError> {
        let invalid = |r| Err(VerifyError::Invalid(r));
        let string = |name: &str| claims.get(name).and_then(Value::as_str);
        let token_use = match string("token_use") {
            Some("id") => TokenUse::Id,
            Some("access") => TokenUse::Access,
            Some(_) => return invalid(InvalidToken::TokenUse),
            None => return invalid(InvalidToken::MissingClaim("token_use")),
        };
        if self.token_use.is_some_and(|only| only != token_use) {
            return invalid(InvalidToken::TokenUse);
        }
        match token_use {
            TokenUse::Id => {
                let ok = match claims.get("aud") {
                    Some(Value::String(aud)) => *aud == self.client_id,
                    Some(Value::Array(auds)) => auds
                        .iter()
                        .any(|a| a.as_str() == Some(self.client_id.as_str())),
                    Some(_) => false,
                    None => return invalid(InvalidToken::MissingClaim("aud")),
                };
                if !ok {
                    return invalid(InvalidToken::Audience);
                }
            }
            TokenUse::Access => match string("client_id") {
                Some(id) if id == self.client_id => {}
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
            client_id: self.client_id.clone(),
            exp,
            groups,
            claims,
        })
    }
}

/// `now + span`, or about 30 years from now when that overflows (a cooldown of
/// `Duration::MAX` then means "for the life of the process", not a panic).
fn later(now: Instant, span: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(30 * 365 * 24 * 60 * 60);
    now.checked_add(span)
        .or_else(|| now.checked_add(FAR))
        .unwrap_or(now)
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

/// The error out of the breaker stack as an [`Unavailable`].
fn unavailable(e: BoxError) -> Unavailable {
    let e = match e.downcast::<CircuitOpen>() {
        Ok(open) => return Unavailable::CircuitOpen(*open),
        Err(e) => e,
    };
    if e.is::<Elapsed>() {
        return Unavailable::Timeout;
    }
    match e.downcast::<FetchError>() {
        Ok(fetch) => fetch.0,
        Err(other) => Unavailable::Transport(Arc::from(other)),
    }
}

// ===== the JWKS client: a tower service over the SDK's HTTP connector =====

/// `GET` the key set and parse it, as one tower call: the timeout above covers the body
/// too, and the breaker counts an unusable body as a failure.
#[derive(Clone, Debug)]
struct JwksClient {
    connector: SharedHttpConnector,
}

/// A failed fetch, carried through the tower stack's `BoxError`.
#[derive(Debug)]
struct FetchError(Unavailable);

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for FetchError {}

impl Service<http::Request<SdkBody>> for JwksClient {
    type Response = Keys;
    type Error = FetchError;
    type Future = Pin<Box<dyn Future<Output = Result<Keys, FetchError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), FetchError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<SdkBody>) -> Self::Future {
        let connector = self.connector.clone();
        Box::pin(async move {
            let fail = |e: Unavailable| FetchError(e);
            let request = HttpRequest::try_from(request)
                .map_err(|e| fail(Unavailable::Transport(Arc::new(e))))?;
            let response = connector
                .call(request)
                .await
                .map_err(|e| fail(Unavailable::Transport(Arc::new(e))))?;
            let status = response.status();
            if !status.is_success() {
                return Err(fail(Unavailable::Status(status.as_u16())));
            }
            let body = Limited::new(response.into_body(), MAX_JWKS_LEN)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        fail(Unavailable::BadKeySet("body too large"))
                    } else {
                        fail(Unavailable::Transport(Arc::from(e)))
                    }
                })?
                .to_bytes();
            parse_jwks(&body).map_err(|why| fail(Unavailable::BadKeySet(why)))
        })
    }
}

/// The RS256 signing keys of a JWKS document, by `kid`. Keys of other types or uses are
/// skipped, so a set that also lists, say, an EC key still yields its RSA keys.
fn parse_jwks(body: &[u8]) -> Result<Keys, &'static str> {
    #[derive(serde::Deserialize)]
    struct Set {
        keys: Vec<Value>,
    }
    let set: Set = serde_json::from_slice(body).map_err(|_| "not a JSON key set")?;
    let mut keys = Keys::new();
    for value in set.keys {
        let Ok(jwk) = serde_json::from_value::<Jwk>(value) else {
            continue;
        };
        let usable = matches!(jwk.algorithm, AlgorithmParameters::RSA(_))
            && matches!(jwk.common.key_algorithm, None | Some(KeyAlgorithm::RS256))
            && matches!(
                jwk.common.public_key_use,
                None | Some(PublicKeyUse::Signature)
            );
        let (true, Some(kid)) = (usable, jwk.common.key_id.clone()) else {
            continue;
        };
        if let Ok(key) = DecodingKey::from_jwk(&jwk) {
            keys.insert(kid, Arc::new(key));
        }
    }
    if keys.is_empty() {
        return Err("no RS256 signing key with a key id");
    }
    Ok(keys)
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

    #[test]
    fn parse_jwks_keeps_rsa_signing_keys_only() {
        let body = br#"{"keys":[
            {"kty":"RSA","kid":"a","alg":"RS256","use":"sig","n":"sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw","e":"AQAB"},
            {"kty":"RSA","kid":"enc","use":"enc","n":"sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw","e":"AQAB"},
            {"kty":"EC","kid":"ec","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty":"RSA","n":"AQAB","e":"AQAB"},
            {"kty":"weird"}
        ]}"#;
        let keys = parse_jwks(body).unwrap();
        assert_eq!(keys.keys().collect::<Vec<_>>(), ["a"]);
        assert!(parse_jwks(b"{\"keys\":[]}").is_err());
        assert!(parse_jwks(b"<html>").is_err());
    }

    #[test]
    fn builder_checks_settings() {
        let ok = CognitoVerifier::builder("eu-west-1", "eu-west-1_AbC123", "client1")
            .build()
            .unwrap();
        assert_eq!(
            ok.issuer(),
            "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC123"
        );
        assert_eq!(
            ok.jwks_url().to_string(),
            "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC123/.well-known/jwks.json"
        );
        assert_eq!(ok.circuit().name(), "cognito/verifyJWT");
        let field = |b: CognitoVerifierBuilder| b.build().unwrap_err().field();
        assert_eq!(field(CognitoVerifier::builder("", "a_b", "c")), "region");
        assert_eq!(
            field(CognitoVerifier::builder("eu/x", "a_b", "c")),
            "region"
        );
        assert_eq!(
            field(CognitoVerifier::builder("r", "nopool", "c")),
            "user_pool_id"
        );
        assert_eq!(
            field(CognitoVerifier::builder("r", "a_b/../x", "c")),
            "user_pool_id"
        );
        assert_eq!(field(CognitoVerifier::builder("r", "a_b", "")), "client_id");
        assert_eq!(
            field(CognitoVerifier::builder("r", "a_b", "c").jwks_url("/relative")),
            "jwks_url"
        );
        assert_eq!(
            field(CognitoVerifier::builder("r", "a_b", "c").jwks_url("ftp://h/x")),
            "jwks_url"
        );
        assert_eq!(
            field(CognitoVerifier::builder("r", "a_b", "c").fetch_timeout(Duration::ZERO)),
            "fetch_timeout"
        );
    }

    #[test]
    fn builder_checks_key_ages_and_cooldown() {
        let b = || CognitoVerifier::builder("eu-west-1", "eu-west-1_AbC123", "client1");
        let field = |b: CognitoVerifierBuilder| b.build().unwrap_err().field();
        let ms = Duration::from_millis;
        // Defaults: 10 s cooldown, 1 h soft age, 24 h hard age.
        let d = format!("{:?}", b());
        assert!(d.contains("refetch_cooldown: 10s"), "{d}");
        assert!(d.contains("key_max_age: 3600s"), "{d}");
        assert!(d.contains("key_hard_max_age: 86400s"), "{d}");
        assert!(b().build().is_ok());

        assert_eq!(
            field(b().refetch_cooldown(Duration::ZERO)),
            "refetch_cooldown"
        );
        assert_eq!(field(b().refetch_cooldown(ms(999))), "refetch_cooldown");
        assert!(b().refetch_cooldown(ms(1000)).build().is_ok());

        assert_eq!(field(b().key_max_age(Duration::ZERO)), "key_max_age");
        assert_eq!(field(b().key_max_age(ms(999))), "key_max_age");
        // Hard below soft, explicitly or by raising soft past the default hard age.
        assert_eq!(
            field(b().key_max_age(ms(2000)).key_hard_max_age(ms(1999))),
            "key_hard_max_age"
        );
        assert_eq!(
            field(b().key_max_age(DEFAULT_KEY_HARD_MAX_AGE * 2)),
            "key_hard_max_age"
        );
        let e = b().key_hard_max_age(Duration::ZERO).build().unwrap_err();
        assert_eq!(e.field(), "key_hard_max_age");
        assert_eq!(
            e.to_string(),
            "invalid Cognito verifier setting: `key_hard_max_age` must be at least `key_max_age`"
        );
        // Equal ages are allowed (no grace while the refresh fails); huge ones too.
        assert!(
            b().key_max_age(ms(1000))
                .key_hard_max_age(ms(1000))
                .build()
                .is_ok()
        );
        assert!(
            b().key_max_age(Duration::MAX)
                .key_hard_max_age(Duration::MAX)
                .refetch_cooldown(Duration::MAX)
                .build()
                .is_ok()
        );
    }

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
