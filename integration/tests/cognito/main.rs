//! `aws::cognito::CognitoVerifier`: JWT verification with the JWKS fetch behind a breaker.
//!
//! Local tests (always run) serve a JWKS for fixed test keys from an in-process hyper
//! server with a switchable mode and a hit counter: caching, refetch and cooldown, the
//! circuit tripping on 500s, refused connections, hangs and bad bodies, verification from
//! the cache while open, fail-closed rejections, recovery. Nothing waits for time to pass
//! except the one recovery test (a 20 ms break) and the timeout test (its 100 ms timeout).
//!
//! Moto tests (`moto_*`) get real Cognito tokens from moto (`MOTO_ENDPOINT`, set by
//! `scripts/test`) through its JSON API with plain HTTP; they skip loudly without it, and
//! fail when `TCB_AWS_INTEGRATION=1` says they must run.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_smithy_runtime_api::client::http::{HttpConnector, HttpConnectorFuture};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_types::body::SdkBody;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use support::{moto_endpoint, unique_name as unique};
use tower_circuit_breaker::aws::cognito::{
    CognitoVerifier, CognitoVerifierBuilder, InvalidToken, TokenUse, Unavailable, VerifyError,
};
use tower_circuit_breaker::{Circuit, CircuitBreakerConfig, CircuitBreakerRegistry, CircuitState};

// ===== fixed test keys =====
//
// Two RSA-2048 keys made for these tests with `openssl genpkey -algorithm RSA
// -pkeyopt rsa_keygen_bits:2048`. They sign nothing but test tokens. The JWKS entries are
// derived from them at run time (`Jwk::from_encoding_key`).

const KEY_A: &str = "-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQCgJzJGQK1cNIUx
qZ3TyxuYPu+aYRyt1mh/iWwVKA4mtxMemSeVRzy5NZbfWeEFrL//rKfbXYcLVkEN
gBTLoHt0GyNbRr63cu2pLW9hPxV9f8wH69PQN2OA/wfKYIXzqbJ0FluA0PvaqwJN
kTYv+vh78zCsEoV4cs8i3u7JT+avrx+t0Y/m0H9Plqj+25c667Sar0WBXla0SJ0Z
VXzAQspWxab9QLkcHZASJnZ2xlxbJko6WB6yJWrMJ/87Nb9lUn5lLHcz1GBIZyh9
6UXChR7XZ6cHH5eEysxRd6Txoc8YbcnPzvKlf4+ziooqlDHRQp2t+xoZ/2+haPWD
iivgmiGVAgMBAAECggEAJz7ztvuKgBnuuejS4F/Zd0mU9cPufzsXiIlojxatwRcD
/G+Tn6VBYDGds0YXOojG1CS/TaZxvXl5n5FPh0bgeedclrWTbukfDGIx9Sa8YXC7
0wUbdt7b53SXuCRHLxravE/uRHbyAPf/LHr1SHS8B8PknYY8ZvPbhrQS2ApYgZyJ
ImhY5QwjGtlluLhcPdzudLr3PCUzwGZEgHNAfLjnNvKG6+q+/t7RpYA3WdKBoWbj
5moKs8nifm/nZxcyAenYrTeWAyBi+XB1BRwNCsHUuP4o3eH0mbxU/9Fswz30PRDr
2s6vsM4yLW26Kgj6J4unclPNOt7i6pCK4x9GPfIpUQKBgQDaq7QkqrDDWSRbWGC7
bqY8JgSdue+BUY/3megUtDv5TqVNBTfu+JFL94sY7AzG1KHx57fVWZbGR80njS0X
p7sBKYtkRPkN+j5DagmRa7qrJf3k2oXFKvrPB9nSSleJpw1c2HCjXmR9ms6OxusM
gFgl4vli1PDc6Ctz7StSJpKALwKBgQC7fiuFaxlrYpO0dn+gFRFPHLe6F7NxIMKk
f368BT7tWA4Fs6f0QlDE1QOZ08PsDOqpFkcA4mYeOz8kFNa2g/RIpSY4D/liFsK1
7vBwc+I+N2SAHgS1iSwEPDAlFe+MO6vnZDtD32aEG2ntnuiFZToOv0lj5EQaky8C
Y8YOwZxlewKBgHNoA18GptuyhDmhXwwMzbcY6X7Ezt6VSUIH/DBRHwXot9z6UBbT
IPvS3Zp9mhCl0AJ3pNH4wlZLNr8VByNg5pUqc+KrdDYoSAwUPpB9JruFBYZuvgLd
OBljr1YI3kJL5AWIRYozGx4fQbygxxSF9/+m1q+OasBr1+MK3L4ylUcJAoGBALUu
iJoGU+scuIWEmXI1yaM8qiLvslzY/p7+AZdqLlQnam2CHgSBbRG4kyE8rbDXDpDV
UUn+fhYqxKp2ZMK9Ivxsc1Frxl9OhVxQiRLyOShMWRchawWOh/WTwCamWvWV2Fnj
1w2Qvb1dzHBuxl3Z40/K8/3O4S0ZHC1gA03RNPQvAoGAdAjleZst34lwRYh0dyFh
npGj6SqYENo9mlNmL5lRcix5CS8CcEIwSWKDYmh5JTipeX/jsvwUmiy1qMrY/Ttl
FA3FbY6eq/fDnTQB8yyhzry9ZuBmT04JN3Fa2IcA7iZWvR+Le+KLGOgkxfm5/cnO
icmOlWfysZejYwS5bbAjgak=
-----END PRIVATE KEY-----";

const KEY_B: &str = "-----BEGIN PRIVATE KEY-----
MIIEvAIBADANBgkqhkiG9w0BAQEFAASCBKYwggSiAgEAAoIBAQCtRwJBOewTb7fx
AO/aSlssy8l6rF2TcH8fEnFJ5A5kTSGNoCVtn82Sei/M3kypUZusUquoq6T2k5qR
gUwP/j8v4y7S4lwmkSMTyrxvasBera3Hj7b6rVWJQkWa1tXeOKbl03fp9f+6a1IR
ppShYqYSIVgtLLRxjEUyD1CDSAV8iZyshZbT56gqHRK6VGGb5JPKZ+oZgK5b+HmK
zdRc8Lo+gM79DGhC1bbqww5Bou7CCL07uysGaHROf4jK1WRr4BsM8RKpZTcSx1iF
whlwFUntNlEaGSmW0gshgv62B3OSEh0KMhNWnaOW8E1ogzWmb712na0hBvLdqXii
ZauioRvnAgMBAAECggEAERLmeaTfyokp7SPJfo9FwqPl8Mzb1POzIvhUlL0AX15r
naKXwuCJ3L1mHmAShRCXL/i0FMUCVpBJcmhKJWfzs/VFH4nRyLRpFMHXpXw1rl6b
ZAbuNxnYoX4X5l+gPUBZzwWc/ZRmzr3/x+DL08co/q+txO3Fw0vYuaEMBD5BhCQl
pZFhMiUpmtp+YvZnFmGm7TKIiquUgIsPgZIZyJyAGcuyUq96MtIISldAor5giwwk
D00XIfY9/qlzfOgnE5zP2ztqnS9Azr4Sr9qZGXnVjo8xZrODqwFHlyJckQmzcbBu
fs/W4TWC/EPWyFdzdHzMXfAeW+akM6D6B9BVhqp9kQKBgQDVpNLYDc2wEKZVhyRc
yo6g+JzAf2A1cEFNUsFx8IP/X5WRwP6yFYpFjJTkkDSn3xQx/uOJPtrzyRk2CYMC
gD2gIQ5ygsrZlhZslGHG46h9dQdVQhb/8UfpyMlZqccq76Oqf8PbJEq7dDbhffWR
k2IXDIPSMs9nH0G2YpuHjLq1CQKBgQDPoXH3C7n21IwpwBK/SvT7tJkoJ1RlyBgO
ysuRUbUaSt/RPuOrHjVD0RVSKyWZq5mZXAJB14ORDlJMNo9Qa7z7jB+1Qa8tjyE2
cqPgKbQuTjYzSCXn5fYRNXHqlCY0wgt93nJhischu3Y2PvTug0kHDDHC4Toyp9rN
b88b+NP1bwKBgFt9LvFoz9mC98gOjGrUL0oNzQq+QVQBE2Xqd360kcIti56UOD3I
7aKk9in++x2ccUiLr6LZcOgPCSXT4u+SPVGydj5hdj7BgC7VSB3k5gV7tT00hSbr
i3E5E8i65NilMMBV4Gia3QnzVYEw8JV7uPjH2jeMnLa7cueIyLO+d0IJAoGAKGdB
NxK4GFkaAVHYFBNxAr4NA6xLlxbN36sE2/1rYXdqgFxdj0HsmYrJPFkbEwE6fYZT
Bh77AjIoP55qWvrsJoMI9IuYnCP7EY5TZ16WKmCb2XTTs4GjVYvx4/T6Tk/oTpEH
7wVDZMQG591uai9v+Ygc8tBDM/JH+KwmQEo2bM8CgYB5gUcUzn7xClQvRHFmCoaT
+pzJq47IvvSQ1Bh6T/rKihLULg31s+3VfWwm5VwF8ZXgpu/bIWllt06pKWvCBQnw
cgSFErJ754yvHMFY8f7hT9Yb2WY5OOLHOFFLTck5J+N80bElPhPLgeiMxYRtoMlK
M650XbZL/ajqgQrGV3Nxlg==
-----END PRIVATE KEY-----";

const REGION: &str = "eu-west-1";
const POOL: &str = "eu-west-1_TestPool1";
const CLIENT: &str = "testclient123";

fn issuer() -> String {
    format!("https://cognito-idp.{REGION}.amazonaws.com/{POOL}")
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// The public JWK of a test key, with its `kid`.
fn jwk(pem: &str, kid: &str) -> Value {
    let key = EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap();
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::RS256).unwrap();
    jwk.common.key_id = Some(kid.to_owned());
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    serde_json::to_value(jwk).unwrap()
}

fn jwks(keys: &[(&str, &str)]) -> String {
    let keys: Vec<Value> = keys.iter().map(|(pem, kid)| jwk(pem, kid)).collect();
    json!({ "keys": keys }).to_string()
}

/// An RS256 token over `claims`, signed with `pem`, header `kid`.
fn sign(pem: &str, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = kid.map(String::from);
    jsonwebtoken::encode(
        &header,
        claims,
        &EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
    )
    .unwrap()
}

/// ID token claims as Cognito writes them.
fn id_claims() -> Value {
    json!({
        "iss": issuer(),
        "sub": "7f1c-user-1",
        "aud": CLIENT,
        "token_use": "id",
        "iat": now(),
        "auth_time": now(),
        "exp": now() + 3600,
        "cognito:username": "alice",
        "cognito:groups": ["admins", "chat"],
        "email": "alice@example.com",
    })
}

/// Access token claims as Cognito writes them (no `aud`).
fn access_claims() -> Value {
    json!({
        "iss": issuer(),
        "sub": "7f1c-user-1",
        "client_id": CLIENT,
        "token_use": "access",
        "iat": now(),
        "exp": now() + 3600,
        "username": "alice",
        "scope": "aws.cognito.signin.user.admin",
    })
}

fn with(mut claims: Value, name: &str, value: Value) -> Value {
    claims[name] = value;
    claims
}

fn without(mut claims: Value, name: &str) -> Value {
    claims.as_object_mut().unwrap().remove(name);
    claims
}

fn id_token() -> String {
    sign(KEY_A, Some("a"), &id_claims())
}

fn access_token() -> String {
    sign(KEY_A, Some("a"), &access_claims())
}

// ===== a JWKS server we control =====

#[derive(Clone, Debug)]
enum Mode {
    /// 200 with this body.
    Serve(String),
    /// This status, empty body.
    Status(u16),
    /// Accept the request and never answer.
    Hang,
}

struct JwksServer {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    mode: Arc<Mutex<Mode>>,
}

impl JwksServer {
    async fn start(mode: Mode) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let mode = Arc::new(Mutex::new(mode));
        let (h, m) = (hits.clone(), mode.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (h, m) = (h.clone(), m.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |_req: http::Request<hyper::body::Incoming>| {
                        let (h, m) = (h.clone(), m.clone());
                        async move {
                            h.fetch_add(1, Ordering::SeqCst);
                            let mode = m.lock().unwrap().clone();
                            let (status, body) = match mode {
                                Mode::Serve(body) => (200, body),
                                Mode::Status(code) => (code, String::new()),
                                Mode::Hang => std::future::pending().await,
                            };
                            Ok::<_, Infallible>(
                                http::Response::builder()
                                    .status(status)
                                    .header("content-type", "application/json")
                                    .body(Full::new(Bytes::from(body)))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        JwksServer { addr, hits, mode }
    }

    /// Serving the JWKS of key A (`kid` "a").
    async fn serving_key_a() -> Self {
        Self::start(Mode::Serve(jwks(&[(KEY_A, "a")]))).await
    }

    fn url(&self) -> String {
        format!("http://{}/{POOL}/.well-known/jwks.json", self.addr)
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }
}

/// A verifier for the test pool fetching from `url`, with its own cognito-preset circuit.
fn builder(url: &str) -> CognitoVerifierBuilder {
    CognitoVerifier::builder(REGION, POOL, CLIENT).jwks_url(url)
}

fn invalid(result: Result<impl std::fmt::Debug, VerifyError>) -> InvalidToken {
    match result {
        Err(VerifyError::Invalid(reason)) => reason,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

fn unavailable(result: Result<impl std::fmt::Debug, VerifyError>) -> Unavailable {
    match result {
        Err(VerifyError::Unavailable(why)) => why,
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

/// A port nothing listens on: bound, then closed.
async fn refused_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}/{POOL}/.well-known/jwks.json")
}

// ===== local tests =====

#[tokio::test]
async fn verifies_id_and_access_tokens_with_one_fetch() {
    let server = JwksServer::serving_key_a().await;
    let verifier = builder(&server.url()).build().unwrap();
    assert_eq!(
        verifier.cached_key_count(),
        0,
        "no I/O before the first verification"
    );
    assert_eq!(server.hits(), 0);

    let id = verifier.verify(&id_token()).await.unwrap();
    assert_eq!(id.sub, "7f1c-user-1");
    assert_eq!(id.username.as_deref(), Some("alice"));
    assert_eq!(id.token_use, TokenUse::Id);
    assert_eq!(id.client_id, CLIENT);
    assert_eq!(id.groups, ["admins", "chat"]);
    assert_eq!(id.get("email"), Some(&json!("alice@example.com")));
    assert!(id.exp > now());

    let access = verifier.verify(&access_token()).await.unwrap();
    assert_eq!(access.token_use, TokenUse::Access);
    assert_eq!(access.username.as_deref(), Some("alice"));
    assert_eq!(access.client_id, CLIENT);
    assert!(access.groups.is_empty());
    assert_eq!(
        access.get("scope"),
        Some(&json!("aws.cognito.signin.user.admin"))
    );

    // Many more verifications, from clones too: the cache answers.
    for _ in 0..20 {
        verifier.clone().verify(&id_token()).await.unwrap();
        verifier.verify(&access_token()).await.unwrap();
    }
    assert_eq!(server.hits(), 1, "one JWKS fetch for 42 verifications");
    assert_eq!(verifier.cached_key_count(), 1);
    let stats = verifier.circuit().stats();
    assert_eq!(
        stats.total_requests, 1,
        "the circuit counts fetches, not verifications"
    );
    assert_eq!(stats.success_count, 1);
    assert_eq!(verifier.circuit().name(), "cognito/verifyJWT");
    assert_eq!(verifier.circuit().config(), CircuitBreakerConfig::cognito());
}

#[tokio::test]
async fn prefetch_loads_keys_once() {
    let server = JwksServer::serving_key_a().await;
    let verifier = builder(&server.url()).build().unwrap();
    verifier.prefetch().await.unwrap();
    verifier.prefetch().await.unwrap();
    assert_eq!(server.hits(), 1);
    verifier.verify(&id_token()).await.unwrap();
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn rejects_bad_tokens_and_never_counts_them_against_cognito() {
    let server = JwksServer::serving_key_a().await;
    let verifier = builder(&server.url()).build().unwrap();
    verifier.verify(&id_token()).await.unwrap();

    // Tampered payload: the signature no longer matches.
    let token = id_token();
    let mut parts: Vec<&str> = token.split('.').collect();
    let forged = sign(
        KEY_A,
        Some("a"),
        &with(id_claims(), "sub", json!("someone-else")),
    );
    parts[1] = forged.split('.').nth(1).unwrap();
    let tampered = parts.join(".");
    assert_eq!(
        invalid(verifier.verify(&tampered).await),
        InvalidToken::Signature
    );

    // Signed by another key under key A's kid.
    let wrong_key = sign(KEY_B, Some("a"), &id_claims());
    assert_eq!(
        invalid(verifier.verify(&wrong_key).await),
        InvalidToken::Signature
    );

    // Another app client.
    let other_aud = sign(
        KEY_A,
        Some("a"),
        &with(id_claims(), "aud", json!("otherclient")),
    );
    assert_eq!(
        invalid(verifier.verify(&other_aud).await),
        InvalidToken::Audience
    );
    let other_client = sign(
        KEY_A,
        Some("a"),
        &with(access_claims(), "client_id", json!("otherclient")),
    );
    assert_eq!(
        invalid(verifier.verify(&other_client).await),
        InvalidToken::ClientId
    );
    let no_aud = sign(KEY_A, Some("a"), &without(id_claims(), "aud"));
    assert_eq!(
        invalid(verifier.verify(&no_aud).await),
        InvalidToken::MissingClaim("aud")
    );
    // An access token has no `aud`; one that names the client only in `aud` is refused.
    let access_with_aud = sign(
        KEY_A,
        Some("a"),
        &with(without(access_claims(), "client_id"), "aud", json!(CLIENT)),
    );
    assert_eq!(
        invalid(verifier.verify(&access_with_aud).await),
        InvalidToken::MissingClaim("client_id")
    );

    // Another pool, or no issuer.
    let other_pool = sign(
        KEY_A,
        Some("a"),
        &with(
            id_claims(),
            "iss",
            json!("https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Other"),
        ),
    );
    assert_eq!(
        invalid(verifier.verify(&other_pool).await),
        InvalidToken::Issuer
    );
    let no_iss = sign(KEY_A, Some("a"), &without(id_claims(), "iss"));
    assert_eq!(
        invalid(verifier.verify(&no_iss).await),
        InvalidToken::MissingClaim("iss")
    );

    // Expired (an hour ago), and not yet valid.
    let expired = sign(
        KEY_A,
        Some("a"),
        &with(id_claims(), "exp", json!(now() - 3600)),
    );
    assert!(matches!(
        verifier.verify(&expired).await,
        Err(VerifyError::Expired)
    ));
    let future = sign(
        KEY_A,
        Some("a"),
        &with(id_claims(), "nbf", json!(now() + 3600)),
    );
    assert_eq!(
        invalid(verifier.verify(&future).await),
        InvalidToken::NotYetValid
    );

    // token_use.
    let refresh = sign(
        KEY_A,
        Some("a"),
        &with(id_claims(), "token_use", json!("refresh")),
    );
    assert_eq!(
        invalid(verifier.verify(&refresh).await),
        InvalidToken::TokenUse
    );
    let no_use = sign(KEY_A, Some("a"), &without(id_claims(), "token_use"));
    assert_eq!(
        invalid(verifier.verify(&no_use).await),
        InvalidToken::MissingClaim("token_use")
    );

    // Header: no kid, another algorithm.
    let no_kid = sign(KEY_A, None, &id_claims());
    assert_eq!(
        invalid(verifier.verify(&no_kid).await),
        InvalidToken::MissingKeyId
    );
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some("a".into());
    let hs256 = jsonwebtoken::encode(&hs, &id_claims(), &EncodingKey::from_secret(b"k")).unwrap();
    assert_eq!(
        invalid(verifier.verify(&hs256).await),
        InvalidToken::Algorithm
    );

    // Not a JWT at all, or absurdly long.
    for garbage in ["", "abc", "a.b.c", "Bearer x.y.z"] {
        assert_eq!(
            invalid(verifier.verify(garbage).await),
            InvalidToken::Malformed
        );
    }
    let huge = format!("{}.{}.x", "e".repeat(40_000), "e");
    assert_eq!(
        invalid(verifier.verify(&huge).await),
        InvalidToken::Malformed
    );

    // None of that reached Cognito or counted as a failure of it.
    assert_eq!(server.hits(), 1);
    let stats = verifier.circuit().stats();
    assert_eq!((stats.total_requests, stats.failure_count), (1, 0));
    assert_eq!(stats.state, CircuitState::Closed);
}

#[tokio::test]
async fn accepted_token_use_can_be_restricted() {
    let server = JwksServer::serving_key_a().await;
    let ids_only = builder(&server.url())
        .token_use(TokenUse::Id)
        .build()
        .unwrap();
    ids_only.verify(&id_token()).await.unwrap();
    assert_eq!(
        invalid(ids_only.verify(&access_token()).await),
        InvalidToken::TokenUse
    );
    let access_only = builder(&server.url())
        .token_use(TokenUse::Access)
        .build()
        .unwrap();
    access_only.verify(&access_token()).await.unwrap();
    assert_eq!(
        invalid(access_only.verify(&id_token()).await),
        InvalidToken::TokenUse
    );
}

#[tokio::test]
async fn errors_never_quote_the_token() {
    let server = JwksServer::serving_key_a().await;
    let verifier = builder(&server.url()).build().unwrap();
    let marker = "SECRET-MARKER-42";
    let claims = with(id_claims(), "sub", json!(marker));
    let cases = [
        sign(KEY_B, Some("a"), &claims),
        sign(
            KEY_A,
            Some("a"),
            &with(claims.clone(), "aud", json!(marker)),
        ),
        sign(
            KEY_A,
            Some("a"),
            &with(claims.clone(), "iss", json!(marker)),
        ),
        sign(
            KEY_A,
            Some("a"),
            &with(claims.clone(), "exp", json!(marker)),
        ),
        sign(
            KEY_A,
            Some("a"),
            &with(claims.clone(), "token_use", json!(marker)),
        ),
        sign(KEY_A, Some(marker), &claims),
        format!("{marker}.{marker}.{marker}"),
    ];
    for token in cases {
        let err = verifier.verify(&token).await.unwrap_err();
        assert!(!format!("{err} {err:?}").contains(marker), "{err:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn unknown_kid_refetches_once_then_is_invalid() {
    // In-process endpoint under paused time: the cooldown (its 1 s minimum) is waited
    // out with `advance`.
    let server = JwksDouble::serving(&[(KEY_A, "a")]);
    let cooldown = Duration::from_secs(1);
    let verifier = server.builder().refetch_cooldown(cooldown).build().unwrap();
    verifier.verify(&id_token()).await.unwrap();
    assert_eq!(server.hits(), 1);

    // A kid the pool does not have: one refetch, still unknown, rejected as invalid.
    let stranger = sign(KEY_B, Some("b"), &id_claims());
    assert_eq!(
        invalid(verifier.verify(&stranger).await),
        InvalidToken::UnknownKeyId
    );
    assert_eq!(server.hits(), 2);

    // Key rotation: Cognito publishes key b next to a; once the cooldown is over a token
    // signed by b triggers a refetch that finds it.
    server.set(Mode::Serve(jwks(&[(KEY_A, "a"), (KEY_B, "b")])));
    tokio::time::advance(cooldown).await;
    let rotated = verifier.verify(&stranger).await.unwrap();
    assert_eq!(rotated.sub, "7f1c-user-1");
    assert_eq!(server.hits(), 3);
    assert_eq!(verifier.cached_key_count(), 2);

    // Key a withdrawn: the next fetch replaces the cache, and a's tokens stop verifying.
    server.set(Mode::Serve(jwks(&[(KEY_B, "b")])));
    let other = sign(KEY_B, Some("c"), &id_claims());
    assert_eq!(
        invalid(verifier.verify(&other).await),
        InvalidToken::UnknownKeyId
    );
    assert_eq!(server.hits(), 4);
    assert_eq!(verifier.cached_key_count(), 1);
    tokio::time::advance(cooldown).await;
    assert_eq!(
        invalid(verifier.verify(&id_token()).await),
        InvalidToken::UnknownKeyId
    );
    assert_eq!(server.hits(), 5);
    assert_eq!(verifier.circuit().stats().failure_count, 0);
}

#[tokio::test]
async fn refetch_cooldown_stops_a_flood_of_unknown_kids() {
    let server = JwksServer::serving_key_a().await;
    let verifier = builder(&server.url())
        .refetch_cooldown(Duration::from_secs(3600))
        .build()
        .unwrap();
    verifier.verify(&id_token()).await.unwrap();
    assert_eq!(server.hits(), 1);

    // No cooldown yet (every fetch so far found its kid): a key rotated in is fetched.
    server.set(Mode::Serve(jwks(&[(KEY_A, "a"), (KEY_B, "b")])));
    verifier
        .verify(&sign(KEY_B, Some("b"), &id_claims()))
        .await
        .unwrap();
    assert_eq!(server.hits(), 2);

    // Made-up kids: the first one costs a fetch that misses it, which starts the cooldown.
    for i in 0..100 {
        let token = sign(KEY_B, Some(&format!("made-up-{i}")), &id_claims());
        assert_eq!(
            invalid(verifier.verify(&token).await),
            InvalidToken::UnknownKeyId
        );
    }
    assert_eq!(server.hits(), 3, "one fetch for 100 unknown kids");

    // The price: a key published during the cooldown is not seen until it ends.
    server.set(Mode::Serve(jwks(&[
        (KEY_A, "a"),
        (KEY_B, "b"),
        (KEY_B, "c"),
    ])));
    let rotated = sign(KEY_B, Some("c"), &id_claims());
    assert_eq!(
        invalid(verifier.verify(&rotated).await),
        InvalidToken::UnknownKeyId
    );
    assert_eq!(server.hits(), 3);
    // Known keys are unaffected.
    verifier.verify(&access_token()).await.unwrap();
    assert_eq!(verifier.circuit().stats().failure_count, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_cold_misses_share_one_fetch() {
    let server = JwksServer::serving_key_a().await;
    let verifier = builder(&server.url()).build().unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..32 {
        let v = verifier.clone();
        let token = if i % 2 == 0 {
            id_token()
        } else {
            access_token()
        };
        tasks.spawn(async move { v.verify(&token).await.map(|c| c.sub) });
    }
    while let Some(result) = tasks.join_next().await {
        assert_eq!(result.unwrap().unwrap(), "7f1c-user-1");
    }
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn failing_jwks_trips_the_cognito_circuit_and_fails_closed() {
    let server = JwksServer::start(Mode::Status(500)).await;
    let verifier = builder(&server.url()).build().unwrap();
    let circuit = verifier.circuit().clone();
    // The preset: opens at 3 consecutive failures once the window holds 5 calls.
    for n in 1..=5 {
        assert_eq!(circuit.state(), CircuitState::Closed, "before fetch {n}");
        let why = unavailable(verifier.verify(&id_token()).await);
        assert!(matches!(why, Unavailable::Status(500)), "{why:?}");
        assert_eq!(server.hits(), n);
    }
    assert_eq!(circuit.state(), CircuitState::Open);
    assert_eq!(circuit.stats().failure_count, 5);

    // Open: no fetch, the token is rejected, never accepted.
    for _ in 0..10 {
        let err = verifier.verify(&access_token()).await.unwrap_err();
        assert!(err.is_unavailable());
        assert!(err.circuit_open().is_some(), "{err:?}");
    }
    assert_eq!(server.hits(), 5, "no fetch while open");
    assert_eq!(circuit.stats().rejected_count, 10);
}

#[tokio::test]
async fn open_circuit_keeps_verifying_cached_keys() {
    let server = JwksServer::serving_key_a().await;
    let verifier = builder(&server.url()).build().unwrap();
    let circuit = verifier.circuit().clone();
    verifier.verify(&id_token()).await.unwrap();

    // Cognito starts failing; tokens with unknown kids keep asking for the keys (a failed
    // fetch starts no cooldown: the breaker is what limits them).
    server.set(Mode::Status(503));
    let unknown = sign(KEY_B, Some("b"), &id_claims());
    let mut failed_fetches = 0;
    while circuit.state() == CircuitState::Closed {
        let why = unavailable(verifier.verify(&unknown).await);
        assert!(matches!(why, Unavailable::Status(503)), "{why:?}");
        failed_fetches += 1;
        assert!(
            failed_fetches <= 4,
            "the preset opens after 1 success + 4 failures"
        );
    }
    assert_eq!(failed_fetches, 4);
    assert_eq!(server.hits(), 5);

    // Open: cached keys still verify; unknown kids fail closed without a fetch.
    for _ in 0..5 {
        verifier.verify(&id_token()).await.unwrap();
        verifier.verify(&access_token()).await.unwrap();
        let err = verifier.verify(&unknown).await.unwrap_err();
        assert!(
            matches!(err, VerifyError::Unavailable(Unavailable::CircuitOpen(_))),
            "{err:?}"
        );
    }
    assert_eq!(server.hits(), 5);
    assert_eq!(circuit.state(), CircuitState::Open);
    assert_eq!(
        verifier.cached_key_count(),
        1,
        "a failed fetch keeps the cache"
    );
}

#[tokio::test]
async fn refused_connections_trip_the_circuit() {
    let verifier = builder(&refused_url().await).build().unwrap();
    for _ in 0..5 {
        let why = unavailable(verifier.verify(&id_token()).await);
        assert!(matches!(why, Unavailable::Transport(_)), "{why:?}");
    }
    assert_eq!(verifier.circuit().state(), CircuitState::Open);
    assert!(
        verifier
            .verify(&id_token())
            .await
            .unwrap_err()
            .circuit_open()
            .is_some()
    );
}

#[tokio::test]
async fn hung_jwks_endpoint_times_out_as_a_failure() {
    let server = JwksServer::start(Mode::Hang).await;
    let config = CircuitBreakerConfig::cognito()
        .to_builder()
        .minimum_request_count(2)
        .failure_threshold(2)
        .build()
        .unwrap();
    let verifier = builder(&server.url())
        .circuit(Circuit::named("cognito-test", config))
        .fetch_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    for _ in 0..2 {
        let why = unavailable(verifier.verify(&id_token()).await);
        assert!(matches!(why, Unavailable::Timeout), "{why:?}");
    }
    assert_eq!(server.hits(), 2);
    assert_eq!(verifier.circuit().state(), CircuitState::Open);
    assert!(
        verifier
            .verify(&id_token())
            .await
            .unwrap_err()
            .circuit_open()
            .is_some()
    );
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn unusable_key_sets_count_as_failures() {
    for body in [
        "<html>oops</html>",
        r#"{"keys":[]}"#,
        r#"{"keys":[{"kty":"EC"}]}"#,
    ] {
        let server = JwksServer::start(Mode::Serve(body.into())).await;
        let verifier = builder(&server.url()).build().unwrap();
        let why = unavailable(verifier.verify(&id_token()).await);
        assert!(matches!(why, Unavailable::BadKeySet(_)), "{body}: {why:?}");
        assert_eq!(verifier.circuit().stats().failure_count, 1);
    }
    // 4xx counts too (a wrong pool id then trips instead of fetching per request).
    let server = JwksServer::start(Mode::Status(404)).await;
    let verifier = builder(&server.url()).build().unwrap();
    let why = unavailable(verifier.verify(&id_token()).await);
    assert!(matches!(why, Unavailable::Status(404)), "{why:?}");
    assert_eq!(verifier.circuit().stats().failure_count, 1);
}

#[tokio::test]
async fn recovers_once_the_break_is_over() {
    let recovery = Duration::from_millis(20);
    let config = CircuitBreakerConfig::cognito()
        .to_builder()
        .recovery_timeout(recovery)
        .build()
        .unwrap();
    let server = JwksServer::start(Mode::Status(500)).await;
    let verifier = builder(&server.url())
        .circuit(Circuit::named("cognito-recovery", config))
        .build()
        .unwrap();
    for _ in 0..5 {
        let _ = verifier.verify(&id_token()).await.unwrap_err();
    }
    assert_eq!(verifier.circuit().state(), CircuitState::Open);
    assert!(
        verifier
            .verify(&id_token())
            .await
            .unwrap_err()
            .circuit_open()
            .is_some()
    );
    assert_eq!(server.hits(), 5);

    // Cognito is back; once the break is over the next miss is the half-open probe.
    server.set(Mode::Serve(jwks(&[(KEY_A, "a")])));
    tokio::time::sleep(recovery).await;
    verifier.verify(&id_token()).await.unwrap();
    assert_eq!(server.hits(), 6);
    assert_eq!(verifier.circuit().state(), CircuitState::Closed);
}

#[tokio::test]
async fn registry_circuit_is_the_seeds_cognito_verify_jwt() {
    let server = JwksServer::serving_key_a().await;
    let registry = CircuitBreakerRegistry::new();
    let verifier = builder(&server.url()).registry(&registry).build().unwrap();
    verifier.verify(&id_token()).await.unwrap();
    let circuit = registry.get("cognito", "verifyJWT").expect("created");
    assert!(circuit.ptr_eq(verifier.circuit()));
    assert_eq!(circuit.config(), CircuitBreakerConfig::cognito());
    assert_eq!(
        registry
            .stats("cognito", "verifyJWT")
            .unwrap()
            .success_count,
        1
    );

    // Forced open by hand (e.g. by an operator): cached keys verify, unknown kids fail
    // closed without a fetch.
    registry.force_open("cognito", "verifyJWT");
    verifier.verify(&access_token()).await.unwrap();
    let err = verifier
        .verify(&sign(KEY_B, Some("b"), &id_claims()))
        .await
        .unwrap_err();
    assert!(err.circuit_open().is_some(), "{err:?}");
    assert_eq!(server.hits(), 1);
}

// ===== key age, cooldown floor, open circuit (issue 11, 5a) =====
//
// These run under paused tokio time, so the JWKS "server" is the same switchable mode and
// hit counter served in-process through the verifier's `http_connector` hook: a real
// socket under a paused clock lets tokio jump the fetch timeout while a response is in
// flight.

/// The JWKS server's modes and hit counter, answered in-process (no socket).
#[derive(Clone, Debug)]
struct JwksDouble {
    hits: Arc<AtomicUsize>,
    mode: Arc<Mutex<Mode>>,
    /// How long each answer takes (tokio time).
    delay: Arc<Mutex<Duration>>,
}

impl JwksDouble {
    fn new(mode: Mode) -> Self {
        JwksDouble {
            hits: Arc::new(AtomicUsize::new(0)),
            mode: Arc::new(Mutex::new(mode)),
            delay: Arc::new(Mutex::new(Duration::ZERO)),
        }
    }

    fn serving(keys: &[(&str, &str)]) -> Self {
        Self::new(Mode::Serve(jwks(keys)))
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn set_delay(&self, delay: Duration) {
        *self.delay.lock().unwrap() = delay;
    }

    /// A verifier for the test pool fetching from this double.
    fn builder(&self) -> CognitoVerifierBuilder {
        builder(&format!("http://jwks.test/{POOL}/.well-known/jwks.json"))
            .http_connector(self.clone())
    }
}

impl HttpConnector for JwksDouble {
    fn call(&self, _request: HttpRequest) -> HttpConnectorFuture {
        let hits = self.hits.clone();
        let mode = self.mode.lock().unwrap().clone();
        let delay = *self.delay.lock().unwrap();
        HttpConnectorFuture::new(async move {
            hits.fetch_add(1, Ordering::SeqCst);
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let (status, body) = match mode {
                Mode::Serve(body) => (200, body),
                Mode::Status(code) => (code, String::new()),
                Mode::Hang => std::future::pending().await,
            };
            Ok(HttpResponse::new(
                status.try_into().unwrap(),
                SdkBody::from(body),
            ))
        })
    }
}

/// The default soft maximum key age (written out: the test also runs on c3fdb08, which
/// has no such setting).
const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test(start_paused = true)]
async fn withdrawn_key_stops_verifying_after_the_max_age() {
    let cognito = JwksDouble::serving(&[(KEY_A, "a"), (KEY_B, "b")]);
    let verifier = cognito.builder().build().unwrap();
    verifier.verify(&id_token()).await.unwrap();
    assert_eq!(cognito.hits(), 1);

    // Key a is withdrawn (say it leaked). Within the max age the cache still trusts it.
    cognito.set(Mode::Serve(jwks(&[(KEY_B, "b")])));
    tokio::time::advance(HOUR - Duration::from_secs(1)).await;
    verifier.verify(&id_token()).await.unwrap();
    assert_eq!(cognito.hits(), 1, "no fetch within the max age");

    // Past it: 1 000 distinct tokens under the withdrawn kid.
    tokio::time::advance(Duration::from_secs(2)).await;
    let mut accepted = 0;
    let mut unknown = 0;
    for i in 0..1000 {
        let token = sign(
            KEY_A,
            Some("a"),
            &with(id_claims(), "sub", json!(format!("u{i}"))),
        );
        match verifier.verify(&token).await {
            Ok(_) => accepted += 1,
            Err(VerifyError::Invalid(InvalidToken::UnknownKeyId)) => unknown += 1,
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        accepted, 0,
        "{accepted} of 1000 tokens with a withdrawn kid accepted"
    );
    assert_eq!(unknown, 1000);
    assert_eq!(cognito.hits(), 2, "one refetch; then the cooldown holds");
    // The key still published verifies from the refreshed cache.
    verifier
        .verify(&sign(KEY_B, Some("b"), &id_claims()))
        .await
        .unwrap();
    assert_eq!(cognito.hits(), 2);
    assert_eq!(verifier.cached_key_count(), 1);
    assert_eq!(verifier.circuit().stats().failure_count, 0);
}

#[tokio::test(start_paused = true)]
async fn refetch_cooldown_below_one_second_is_refused_and_bounds_a_fetch_storm() {
    let cognito = JwksDouble::serving(&[(KEY_A, "a")]);
    // The smallest cooldown the builder accepts.
    let verifier = match cognito.builder().refetch_cooldown(Duration::ZERO).build() {
        Ok(v) => v,
        Err(e) => {
            assert_eq!(e.field(), "refetch_cooldown");
            let e = cognito
                .builder()
                .refetch_cooldown(Duration::from_millis(999))
                .build()
                .unwrap_err();
            assert_eq!(e.field(), "refetch_cooldown");
            assert!(e.to_string().contains("refetch_cooldown"), "{e}");
            cognito
                .builder()
                .refetch_cooldown(Duration::from_secs(1))
                .build()
                .unwrap()
        }
    };
    verifier.verify(&id_token()).await.unwrap();
    assert_eq!(cognito.hits(), 1);

    // 300 garbage tokens (well formed, made-up kids), 10 ms apart: 2.99 s.
    for i in 0..300 {
        let token = sign(KEY_B, Some(&format!("garbage-{i}")), &id_claims());
        assert_eq!(
            invalid(verifier.verify(&token).await),
            InvalidToken::UnknownKeyId
        );
        tokio::time::advance(Duration::from_millis(10)).await;
    }
    let fetches = cognito.hits() - 1;
    assert!(
        fetches <= 3,
        "{fetches} fetches for 300 garbage tokens in 3 s (one per cooldown expected)"
    );
    assert_eq!(fetches, 3);
}

#[tokio::test(start_paused = true)]
async fn unknown_kid_during_the_cooldown_is_unavailable_while_the_circuit_is_open() {
    let cognito = JwksDouble::serving(&[(KEY_A, "a")]);
    let verifier = cognito.builder().build().unwrap();
    verifier.verify(&id_token()).await.unwrap();
    // An unknown kid: one fetch misses it, which starts the cooldown (10 s).
    let stranger = sign(KEY_B, Some("b"), &id_claims());
    assert_eq!(
        invalid(verifier.verify(&stranger).await),
        InvalidToken::UnknownKeyId
    );
    assert_eq!(cognito.hits(), 2);

    // Within the cooldown, the circuit is opened (by an operator, or a registry peer).
    verifier.circuit().force_open();
    tokio::time::advance(Duration::from_secs(1)).await;
    for kid in ["b", "c", "d"] {
        let token = sign(KEY_B, Some(kid), &id_claims());
        let err = verifier.verify(&token).await.unwrap_err();
        assert!(
            matches!(err, VerifyError::Unavailable(Unavailable::CircuitOpen(_))),
            "kid {kid} while open within the cooldown: {err:?}"
        );
    }
    // Cached keys still verify; nothing reached the endpoint.
    verifier.verify(&id_token()).await.unwrap();
    assert_eq!(cognito.hits(), 2);

    // Closed again (still within the cooldown): unknown kids are invalid without a fetch.
    verifier.circuit().reset();
    assert_eq!(
        invalid(verifier.verify(&stranger).await),
        InvalidToken::UnknownKeyId
    );
    assert_eq!(cognito.hits(), 2);
}

#[tokio::test(start_paused = true)]
async fn cached_keys_serve_while_open_up_to_the_hard_max_age() {
    let cognito = JwksDouble::serving(&[(KEY_A, "a")]);
    let verifier = cognito.builder().build().unwrap();
    verifier.verify(&id_token()).await.unwrap();
    verifier.circuit().force_open();

    // Open, keys past the soft age and short of the hard one (24 h): still served.
    tokio::time::advance(HOUR + Duration::from_secs(1)).await;
    verifier.verify(&id_token()).await.unwrap();
    tokio::time::advance(22 * HOUR).await;
    verifier.verify(&access_token()).await.unwrap();
    tokio::time::advance(HOUR - Duration::from_secs(2)).await;
    verifier.verify(&id_token()).await.unwrap();

    // At the hard age: fail closed.
    tokio::time::advance(Duration::from_secs(1)).await;
    let err = verifier.verify(&id_token()).await.unwrap_err();
    assert!(
        matches!(err, VerifyError::Unavailable(Unavailable::CircuitOpen(_))),
        "a key 24 h old while the circuit is open: {err:?}"
    );
    let err = verifier.verify(&access_token()).await.unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
    assert_eq!(cognito.hits(), 1, "nothing reached the endpoint while open");

    // Closed again: one fetch, and the keys are fresh.
    verifier.circuit().reset();
    verifier.verify(&id_token()).await.unwrap();
    assert_eq!(cognito.hits(), 2);
}

#[tokio::test(start_paused = true)]
async fn failing_refreshes_trip_the_circuit_and_keys_expire_at_the_hard_max_age() {
    let cognito = JwksDouble::serving(&[(KEY_A, "a")]);
    let verifier = cognito
        .builder()
        .refetch_cooldown(2 * HOUR)
        .build()
        .unwrap();
    let circuit = verifier.circuit().clone();
    verifier.verify(&id_token()).await.unwrap();
    // An unknown kid starts a 2 h cooldown.
    let stranger = sign(KEY_B, Some("b"), &id_claims());
    assert_eq!(
        invalid(verifier.verify(&stranger).await),
        InvalidToken::UnknownKeyId
    );
    assert_eq!(cognito.hits(), 2);

    // Cognito fails; past the soft age each verification tries a refresh, the cached key
    // is served meanwhile, and the preset opens after 5 failures in its window.
    cognito.set(Mode::Status(500));
    tokio::time::advance(HOUR + Duration::from_secs(1)).await;
    for n in 1..=5 {
        verifier.verify(&id_token()).await.unwrap();
        assert_eq!(cognito.hits(), 2 + n);
    }
    assert_eq!(circuit.state(), CircuitState::Open);
    // Still within the cooldown, but open: an unknown kid is unavailable, not invalid.
    let err = verifier.verify(&stranger).await.unwrap_err();
    assert!(err.circuit_open().is_some(), "{err:?}");
    verifier.verify(&id_token()).await.unwrap();
    assert_eq!(cognito.hits(), 7);

    // Every break ends with one probe, which fails; the cache keeps serving until 24 h.
    let mut age = HOUR + Duration::from_secs(1);
    while age + HOUR < 24 * HOUR {
        tokio::time::advance(HOUR).await;
        age += HOUR;
        verifier.verify(&id_token()).await.unwrap();
    }
    let probes = cognito.hits() - 7;
    assert_eq!(probes, 22, "one failed probe per hour of outage");
    tokio::time::advance(24 * HOUR - age).await;
    let err = verifier.verify(&id_token()).await.unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
    assert!(
        matches!(err, VerifyError::Unavailable(Unavailable::Status(500))),
        "{err:?}"
    );
    assert!(
        verifier
            .verify(&id_token())
            .await
            .unwrap_err()
            .circuit_open()
            .is_some()
    );

    // Cognito is back: the next probe refreshes the keys.
    cognito.set(Mode::Serve(jwks(&[(KEY_A, "a")])));
    tokio::time::advance(Duration::from_secs(30)).await;
    verifier.verify(&id_token()).await.unwrap();
    assert_eq!(circuit.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn hostile_durations_neither_panic_nor_open_a_hole() {
    let cognito = JwksDouble::serving(&[(KEY_A, "a")]);
    let verifier = cognito
        .builder()
        .refetch_cooldown(Duration::MAX)
        .key_max_age(Duration::MAX)
        .key_hard_max_age(Duration::MAX)
        .build()
        .unwrap();
    verifier.verify(&id_token()).await.unwrap();
    let stranger = sign(KEY_B, Some("b"), &id_claims());
    for _ in 0..3 {
        assert_eq!(
            invalid(verifier.verify(&stranger).await),
            InvalidToken::UnknownKeyId
        );
    }
    tokio::time::advance(1000 * 24 * HOUR).await;
    assert_eq!(
        invalid(verifier.verify(&stranger).await),
        InvalidToken::UnknownKeyId
    );
    verifier.verify(&id_token()).await.unwrap();
    assert_eq!(
        cognito.hits(),
        2,
        "one miss fetch, then the (endless) cooldown"
    );
    assert!(verifier.cached_keys_age().unwrap() >= 1000 * 24 * HOUR);

    // The smallest ages allowed: one refresh per second of use, no more.
    let cognito = JwksDouble::serving(&[(KEY_A, "a")]);
    let second = Duration::from_secs(1);
    let verifier = cognito
        .builder()
        .key_max_age(second)
        .key_hard_max_age(second)
        .build()
        .unwrap();
    for _ in 0..100 {
        verifier.verify(&id_token()).await.unwrap();
        tokio::time::advance(Duration::from_millis(100)).await;
    }
    assert_eq!(cognito.hits(), 10, "10 s of use, one refresh a second");
    // Equal ages: no grace once the refresh fails.
    verifier.circuit().force_open();
    tokio::time::advance(second).await;
    assert!(
        verifier
            .verify(&id_token())
            .await
            .unwrap_err()
            .circuit_open()
            .is_some()
    );
}

#[tokio::test(start_paused = true)]
async fn concurrent_stale_refreshes_share_one_fetch() {
    let cognito = JwksDouble::serving(&[(KEY_A, "a")]);
    let verifier = cognito.builder().build().unwrap();
    verifier.verify(&id_token()).await.unwrap();
    cognito.set_delay(Duration::from_millis(300));

    let burst = |verifier: &CognitoVerifier| {
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..32 {
            let v = verifier.clone();
            let token = if i % 2 == 0 {
                id_token()
            } else {
                access_token()
            };
            tasks.spawn(async move { v.verify(&token).await.map(|c| c.sub) });
        }
        tasks
    };

    // Stale keys, a slow endpoint: 32 verifications, one refresh.
    tokio::time::advance(HOUR + Duration::from_secs(1)).await;
    let mut tasks = burst(&verifier);
    while let Some(result) = tasks.join_next().await {
        assert_eq!(result.unwrap().unwrap(), "7f1c-user-1");
    }
    assert_eq!(cognito.hits(), 2, "one fetch for 32 stale verifications");

    // Stale again and the refresh fails: still one fetch, its failure shared, the
    // cached key served to all 32.
    cognito.set(Mode::Status(503));
    tokio::time::advance(HOUR + Duration::from_secs(1)).await;
    let mut tasks = burst(&verifier);
    while let Some(result) = tasks.join_next().await {
        assert_eq!(result.unwrap().unwrap(), "7f1c-user-1");
    }
    assert_eq!(
        cognito.hits(),
        3,
        "one failed fetch for 32 stale verifications"
    );
    assert_eq!(verifier.circuit().stats().failure_count, 1);
}

// ===== moto =====

/// One Cognito Identity Provider API call against moto: JSON 1.1, a fake SigV4
/// `Authorization` whose credential scope names `cognito-idp` (moto routes by it).
async fn cognito(endpoint: &str, action: &str, body: Value) -> Value {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let request = http::Request::post(format!("{endpoint}/"))
        .header(
            "x-amz-target",
            format!("AWSCognitoIdentityProviderService.{action}"),
        )
        .header("content-type", "application/x-amz-json-1.1")
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/cognito-idp/aws4_request, \
             SignedHeaders=host, Signature=0000",
        )
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let response = client.request(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    assert!(status.is_success(), "{action}: HTTP {status}");
    serde_json::from_slice(&bytes).unwrap()
}

struct MotoPool {
    endpoint: String,
    pool_id: String,
    client_id: String,
}

impl MotoPool {
    async fn create(endpoint: &str, name: &str) -> Self {
        let pool = cognito(endpoint, "CreateUserPool", json!({ "PoolName": name })).await;
        let pool_id = pool["UserPool"]["Id"].as_str().unwrap().to_owned();
        let client_id = Self::add_client(endpoint, &pool_id, "chat-web").await;
        let p = MotoPool {
            endpoint: endpoint.to_owned(),
            pool_id,
            client_id,
        };
        cognito(
            endpoint,
            "AdminCreateUser",
            json!({
                "UserPoolId": p.pool_id,
                "Username": "alice",
                "TemporaryPassword": "Temp-Passw0rd!",
                "MessageAction": "SUPPRESS",
                "UserAttributes": [{ "Name": "email", "Value": "alice@example.com" }],
            }),
        )
        .await;
        cognito(
            endpoint,
            "AdminSetUserPassword",
            json!({
                "UserPoolId": p.pool_id,
                "Username": "alice",
                "Password": "Correct-Horse-9!",
                "Permanent": true,
            }),
        )
        .await;
        p
    }

    async fn add_client(endpoint: &str, pool_id: &str, name: &str) -> String {
        let client = cognito(
            endpoint,
            "CreateUserPoolClient",
            json!({
                "UserPoolId": pool_id,
                "ClientName": name,
                "ExplicitAuthFlows": ["ALLOW_ADMIN_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
            }),
        )
        .await;
        client["UserPoolClient"]["ClientId"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Real (id, access) tokens of alice for `client_id`.
    async fn tokens(&self, client_id: &str) -> (String, String) {
        let auth = cognito(
            &self.endpoint,
            "AdminInitiateAuth",
            json!({
                "UserPoolId": self.pool_id,
                "ClientId": client_id,
                "AuthFlow": "ADMIN_USER_PASSWORD_AUTH",
                "AuthParameters": { "USERNAME": "alice", "PASSWORD": "Correct-Horse-9!" },
            }),
        )
        .await;
        let result = &auth["AuthenticationResult"];
        (
            result["IdToken"].as_str().unwrap().to_owned(),
            result["AccessToken"].as_str().unwrap().to_owned(),
        )
    }

    fn region(&self) -> &str {
        self.pool_id.split('_').next().unwrap()
    }

    fn verifier(&self) -> CognitoVerifierBuilder {
        CognitoVerifier::builder(self.region(), &self.pool_id, &self.client_id).jwks_url(format!(
            "{}/{}/.well-known/jwks.json",
            self.endpoint, self.pool_id
        ))
    }
}

#[tokio::test]
async fn moto_id_and_access_tokens_verify() {
    let Some(endpoint) = moto_endpoint("moto_id_and_access_tokens_verify") else {
        return;
    };
    let pool = MotoPool::create(&endpoint, &unique("tcb-cognito")).await;
    let (id, access) = pool.tokens(&pool.client_id).await;
    let verifier = pool.verifier().build().unwrap();

    let id = verifier.verify(&id).await.unwrap();
    assert_eq!(id.token_use, TokenUse::Id);
    assert_eq!(id.username.as_deref(), Some("alice"));
    assert_eq!(id.client_id, pool.client_id);
    assert!(!id.sub.is_empty());

    let access = verifier.verify(&access).await.unwrap();
    assert_eq!(access.token_use, TokenUse::Access);
    assert_eq!(access.username.as_deref(), Some("alice"));
    assert_eq!(access.sub, id.sub);

    let stats = verifier.circuit().stats();
    assert_eq!(
        (stats.success_count, stats.failure_count),
        (1, 0),
        "one JWKS fetch"
    );
    assert_eq!(
        verifier.issuer(),
        format!(
            "https://cognito-idp.{}.amazonaws.com/{}",
            pool.region(),
            pool.pool_id
        )
    );
}

#[tokio::test]
async fn moto_rejects_other_clients_tampering_and_unknown_kids() {
    let Some(endpoint) = moto_endpoint("moto_rejects_other_clients_tampering_and_unknown_kids")
    else {
        return;
    };
    let pool = MotoPool::create(&endpoint, &unique("tcb-cognito")).await;
    let verifier = pool.verifier().build().unwrap();
    let (id, _) = pool.tokens(&pool.client_id).await;
    verifier.verify(&id).await.unwrap();

    // Tokens of the same pool issued to another app client.
    let other = MotoPool::add_client(&endpoint, &pool.pool_id, "admin-cli").await;
    let (other_id, other_access) = pool.tokens(&other).await;
    assert_eq!(
        invalid(verifier.verify(&other_id).await),
        InvalidToken::Audience
    );
    assert_eq!(
        invalid(verifier.verify(&other_access).await),
        InvalidToken::ClientId
    );

    // A real token with its payload swapped for another's: the signature breaks.
    let mut parts: Vec<&str> = id.split('.').collect();
    parts[1] = other_id.split('.').nth(1).unwrap();
    assert_eq!(
        invalid(verifier.verify(&parts.join(".")).await),
        InvalidToken::Signature
    );

    // A well-formed token for this pool and client under a kid moto does not serve:
    // refetched once, still unknown, invalid.
    let claims = json!({
        "iss": verifier.issuer(),
        "sub": "intruder",
        "aud": pool.client_id,
        "token_use": "id",
        "exp": now() + 600,
    });
    let forged = sign(KEY_A, Some("not-moto"), &claims);
    assert_eq!(
        invalid(verifier.verify(&forged).await),
        InvalidToken::UnknownKeyId
    );
    let stats = verifier.circuit().stats();
    assert_eq!(stats.success_count, 2, "the unknown kid caused one refetch");
    assert_eq!(stats.failure_count, 0);
}
