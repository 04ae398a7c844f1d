//! `registry.execute_with`: the classifier decides what the circuit counts; the error and
//! the fallbacks are as with `execute`.

use super::*;
use tower_circuit_breaker::classify::Verdict;

/// `Unavailable` is the dependency failing; `Down` here stands for an answer the
/// dependency gave (a conditional-check failure, say).
fn unavailable_only(result: &Result<(), DbError>) -> Verdict {
    match result {
        Err(DbError::Unavailable) => Verdict::Failure,
        _ => Verdict::Success,
    }
}

async fn run(registry: &CircuitBreakerRegistry, error: DbError) -> Result<(), DbError> {
    registry
        .execute_with(
            "db",
            "put",
            &unavailable_only,
            || async { Err(error) },
            |cause: FallbackCause<DbError>| async move {
                match cause {
                    FallbackCause::Rejected(_) => Ok(()),
                    FallbackCause::Failed(e) => Err(e),
                }
            },
            &CircuitBreakerConfig::dynamodb(),
        )
        .await
}

#[tokio::test(start_paused = true)]
async fn an_err_the_classifier_calls_a_success_leaves_the_circuit_closed() {
    let registry = CircuitBreakerRegistry::new();
    for _ in 0..20 {
        assert_eq!(run(&registry, DbError::Down).await, Err(DbError::Down));
    }
    let stats = registry.stats("db", "put").unwrap();
    assert_eq!(stats.state, CircuitState::Closed);
    assert_eq!((stats.success_count, stats.failure_count), (20, 0));

    for _ in 0..20 {
        let _ = run(&registry, DbError::Unavailable).await;
    }
    let stats = registry.stats("db", "put").unwrap();
    assert_eq!(stats.state, CircuitState::Open);
    // The fallback answered the rejections.
    assert_eq!(run(&registry, DbError::Down).await, Ok(()));
}

#[tokio::test(start_paused = true)]
async fn on_failure_too_answers_every_err_whatever_its_verdict() {
    let registry = CircuitBreakerRegistry::new();
    let out: Result<u8, DbError> = registry
        .execute_with(
            "db",
            "get",
            &|_: &Result<u8, DbError>| Verdict::Success,
            || async { Err(DbError::Down) },
            on_failure_too(|_: FallbackCause<DbError>| async { Ok(7) }),
            None,
        )
        .await;
    assert_eq!(out, Ok(7));
    assert_eq!(registry.stats("db", "get").unwrap().failure_count, 0);
}
