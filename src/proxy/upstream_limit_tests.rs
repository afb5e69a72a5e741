//! The gate on its own, with a stand-in connection that holds its permit as
//! the upstream client's does.

use std::sync::Mutex as StdMutex;
use std::time::Duration;

use super::*;

/// A connection: its number and its permit.
struct Conn(usize, #[allow(dead_code)] Permit<Conn>);

fn limit(max_connections: usize, max_pending: usize, timeout_ms: u64) -> UpstreamLimit {
    UpstreamLimit {
        max_connections,
        max_pending,
        pending_timeout: Duration::from_millis(timeout_ms),
    }
}

fn none(_: &mut Vec<Conn>) -> Option<Conn> {
    None
}

fn opened(gate: &Arc<Gate<Conn>>, number: usize) -> Conn {
    Conn(number, gate.try_open().expect("a permit"))
}

#[tokio::test(start_paused = true)]
async fn no_more_than_max_connections_permits_and_a_closed_one_goes_to_the_first_waiter() {
    let gate = Gate::new(limit(2, 10, 5_000));
    let first = opened(&gate, 1);
    let _second = opened(&gate, 2);
    assert!(gate.try_open().is_none(), "the third is over the limit");
    assert_eq!(gate.open(), 2);

    let (early, late) = (gate.clone(), gate.clone());
    let early = tokio::spawn(async move { early.acquire(none).await });
    tokio::task::yield_now().await;
    let late = tokio::spawn(async move { late.acquire(none).await });
    tokio::task::yield_now().await;
    assert_eq!(gate.waiting(), 2);

    drop(first);
    let granted = early.await.expect("task");
    let permit = match granted {
        Ok(Grant::Open(permit)) => permit,
        _ => panic!("the first in line gets the closed connection's permit"),
    };
    assert_eq!(gate.open(), 2, "the permit moved, none was added");
    assert!(!late.is_finished(), "the second still waits");
    drop(permit);
    assert!(matches!(late.await.expect("task"), Ok(Grant::Open(_))));
    assert_eq!(gate.waiting(), 0);
}

#[tokio::test(start_paused = true)]
async fn past_max_pending_a_request_is_refused_at_once_and_a_wait_ends_at_pending_timeout() {
    let gate = Gate::new(limit(1, 1, 2_000));
    let _busy = opened(&gate, 1);
    let waiter = gate.clone();
    let started = tokio::time::Instant::now();
    let waiting = tokio::spawn(async move { waiter.acquire(none).await });
    tokio::task::yield_now().await;
    assert!(
        matches!(gate.acquire(none).await, Err(Overflow::Full)),
        "one waits already"
    );
    assert_eq!(started.elapsed(), Duration::ZERO, "refused without waiting");
    assert!(matches!(
        waiting.await.expect("task"),
        Err(Overflow::Timeout)
    ));
    assert_eq!(started.elapsed(), Duration::from_secs(2));
    assert_eq!(gate.waiting(), 0, "the line is empty again");

    // max_pending = 0: nobody waits.
    let gate = Gate::new(limit(1, 0, 2_000));
    let _busy = opened(&gate, 1);
    assert!(matches!(gate.acquire(none).await, Err(Overflow::Full)));
}

#[tokio::test(start_paused = true)]
async fn a_connection_going_idle_is_handed_to_the_waiter_as_it_is() {
    let gate = Gate::new(limit(1, 4, 5_000));
    let pool: Arc<StdMutex<Vec<Conn>>> = Arc::default();
    let busy = opened(&gate, 7);
    let (waiter, shared) = (gate.clone(), pool.clone());
    let waiting =
        tokio::spawn(async move { waiter.acquire(|_| shared.lock().expect("pool").pop()).await });
    tokio::task::yield_now().await;
    assert!(gate.has_waiters());
    // The exchange ends: the connection goes idle, then to the waiter.
    pool.lock().expect("pool").push(busy);
    gate.serve_waiters(|_| pool.lock().expect("pool").pop());
    let conn = match waiting.await.expect("task") {
        Ok(Grant::Idle(conn)) => conn,
        _ => panic!("the idle connection is handed over"),
    };
    assert_eq!(conn.0, 7);
    assert_eq!(gate.open(), 1, "no new connection was opened");
    assert!(!gate.has_waiters());
}

#[tokio::test(start_paused = true)]
async fn at_the_limit_an_idle_connection_elsewhere_is_taken_and_stale_ones_free_their_place() {
    let gate = Gate::new(limit(2, 4, 5_000));
    let idle = opened(&gate, 1);
    let stale = opened(&gate, 2);
    let mut elsewhere = Some(idle);
    match gate.acquire(|_| elsewhere.take()).await {
        Ok(Grant::Idle(conn)) => assert_eq!(conn.0, 1),
        _ => panic!("the idle connection is used rather than waited for"),
    }
    // Only a stale one is left: closing it makes room for a new one.
    let mut stale = Some(stale);
    let granted = gate
        .acquire(|discarded| {
            discarded.extend(stale.take());
            None
        })
        .await;
    assert!(matches!(granted, Ok(Grant::Open(_))));
}

#[tokio::test(start_paused = true)]
async fn a_waiter_that_goes_away_leaves_the_line_and_its_grant_goes_on() {
    let gate = Gate::new(limit(1, 1, 60_000));
    let busy = opened(&gate, 1);
    let waiter = gate.clone();
    let cancelled = tokio::spawn(async move { waiter.acquire(none).await });
    tokio::task::yield_now().await;
    assert_eq!(gate.waiting(), 1);
    cancelled.abort();
    let _ = cancelled.await;
    assert_eq!(gate.waiting(), 0, "a cancelled wait leaves the line");
    // The line has room again; the next waiter gets the permit.
    let waiter = gate.clone();
    let next = tokio::spawn(async move { waiter.acquire(none).await });
    tokio::task::yield_now().await;
    drop(busy);
    let granted = next.await.expect("task");
    assert!(matches!(granted, Ok(Grant::Open(_))));
    assert_eq!(gate.open(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_raised_limit_lets_waiters_open_connections_at_once() {
    let gate = Gate::new(limit(1, 4, 60_000));
    let _busy = opened(&gate, 1);
    let waiter = gate.clone();
    let waiting = tokio::spawn(async move { waiter.acquire(none).await });
    tokio::task::yield_now().await;
    gate.set_limit(limit(2, 4, 60_000));
    let granted = waiting.await.expect("task");
    assert!(matches!(granted, Ok(Grant::Open(_))));
    assert_eq!(gate.open(), 2);
    assert!(gate.try_open().is_none());
}

#[test]
fn overflow_reasons_are_the_metric_labels() {
    assert_eq!(Overflow::Full.reason(), "pending_full");
    assert_eq!(Overflow::Timeout.reason(), "pending_timeout");
}
