//! [`CognitoVerifierBuilder`]: the verifier's settings, checked when it is built.

use super::claims::TokenUse;
use super::error::CognitoConfigError;
use super::jwks::JwksFetcher;
use super::key_cache::KeyCache;
use super::{
    CognitoVerifier, DEFAULT_FETCH_TIMEOUT, DEFAULT_KEY_HARD_MAX_AGE, DEFAULT_KEY_MAX_AGE,
    DEFAULT_REFETCH_COOLDOWN, Inner, MIN_KEY_MAX_AGE, MIN_REFETCH_COOLDOWN, REGISTRY_OPERATION,
    REGISTRY_SERVICE, verify,
};
use crate::{Circuit, CircuitBreakerConfig, CircuitBreakerRegistry};
use aws_smithy_runtime_api::client::http::{HttpConnector, SharedHttpConnector};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

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
    /// The defaults, for [`CognitoVerifier::builder`].
    pub(super) fn new(region: String, user_pool_id: String, client_id: String) -> Self {
        CognitoVerifierBuilder {
            region,
            user_pool_id,
            client_id,
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
    /// [`Unavailable`](super::VerifyError::Unavailable), never [`Invalid`](super::VerifyError::Invalid)).
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
    /// [`Unavailable`](super::VerifyError::Unavailable), and how long a withdrawn key can still
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
        let bad = CognitoConfigError::new;
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

        let validation = verify::validation(&issuer, self.leeway);

        let circuit = self.circuit.unwrap_or_else(|| {
            Circuit::for_operation(
                REGISTRY_SERVICE,
                REGISTRY_OPERATION,
                CircuitBreakerConfig::cognito(),
            )
        });
        let fetcher = JwksFetcher::new(jwks_url, &circuit, self.fetch_timeout, self.connector);
        let keys = KeyCache::new(
            circuit,
            fetcher,
            self.refetch_cooldown,
            self.key_max_age,
            self.key_hard_max_age,
        );

        Ok(CognitoVerifier {
            inner: Arc::new(Inner {
                issuer,
                client_id: self.client_id,
                validation,
                token_use: self.token_use,
                keys,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
