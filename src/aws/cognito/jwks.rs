//! Fetching the key set through the circuit: a tower stack with the breaker outside a
//! timeout, around a JWKS client over the AWS SDK's HTTP connector, and the parsing of
//! the set into RS256 signing keys.

use super::error::Unavailable;
use crate::error::CircuitOpen;
use crate::{BoxError, Circuit, CircuitBreaker, CircuitBreakerLayer};
use aws_smithy_http_client::tls;
use aws_smithy_runtime_api::client::http::{HttpConnector, SharedHttpConnector};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_types::body::SdkBody;
use http_body_util::{BodyExt, Limited};
use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, KeyAlgorithm, PublicKeyUse};
use serde_json::Value;
use std::collections::HashMap;
use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tower::ServiceBuilder;
use tower::timeout::Timeout;
use tower::timeout::error::Elapsed;
use tower_service::Service;

/// Key set bodies longer than this are an unusable key set.
const MAX_JWKS_LEN: usize = 64 * 1024;

/// The RS256 signing keys of a key set, by `kid`.
pub(super) type Keys = HashMap<String, Arc<DecodingKey>>;

/// Fetches the key set from one URL through the circuit: `CircuitBreakerLayer` outside a
/// `Timeout` around a [`JwksClient`], so a hung fetch is a failure the breaker counts.
#[derive(Clone)]
pub(super) struct JwksFetcher {
    url: http::Uri,
    service: CircuitBreaker<Timeout<JwksClient>>,
}

impl JwksFetcher {
    /// The stack for `url` through `circuit`, each fetch limited to `timeout`, sent
    /// through `connector` (default: the AWS SDK's HTTPS connector).
    pub(super) fn new(
        url: http::Uri,
        circuit: &Circuit,
        timeout: Duration,
        connector: Option<SharedHttpConnector>,
    ) -> Self {
        let connector = connector.unwrap_or_else(default_connector);
        let service = ServiceBuilder::new()
            .layer(CircuitBreakerLayer::from_circuit(circuit.clone()))
            .timeout(timeout)
            .service(JwksClient { connector });
        JwksFetcher { url, service }
    }

    /// Where the key set is fetched from.
    pub(super) fn url(&self) -> &http::Uri {
        &self.url
    }

    /// One fetch through the breaker.
    pub(super) async fn fetch(&self) -> Result<Keys, Unavailable> {
        let mut svc = self.service.clone();
        let request = http::Request::get(self.url.clone())
            .header(http::header::ACCEPT, "application/json")
            .body(SdkBody::empty())
            .map_err(|e| Unavailable::Transport(Arc::new(e)))?;
        let result = match poll_fn(|cx| svc.poll_ready(cx)).await {
            Ok(()) => svc.call(request).await,
            Err(e) => Err(e),
        };
        result.map_err(unavailable)
    }
}

/// The AWS SDK's default HTTPS connector: rustls with aws-lc, the system's trusted roots.
fn default_connector() -> SharedHttpConnector {
    SharedHttpConnector::new(
        aws_smithy_http_client::Connector::builder()
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::AwsLc,
            ))
            .build(),
    )
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
}
