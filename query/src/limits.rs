//! What one query may take (`[limits]`): memory, time, a turn among the queries running at once,
//! and each principal's share. A limit hit is a `ResourcesExhausted` error before or instead of
//! a result, never a shortened one.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::QueryError;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitSettings {
    /// Memory one query's operators may hold, in MiB: past it, sorts, aggregates and joins that
    /// can spill go to disk, and the others fail the query. 0: no limit.
    pub query_memory_mb: u64,
    /// Seconds from a query's start to its last batch (results computed whole, such as
    /// protected ones, within it too). 0: no limit.
    pub query_timeout_secs: u64,
    /// Queries executing at once; more wait for a turn.
    pub max_concurrent_queries: usize,
    /// Seconds a query waits for a turn (its principal's, then the server's) before it is
    /// refused.
    pub queue_timeout_secs: u64,
    /// Queries one principal may have executing at once; more wait for a turn.
    pub principal_concurrent_queries: usize,
    /// Queries one principal may start in any minute. 0: no quota.
    pub principal_queries_per_minute: usize,
    /// On SIGTERM, how long running queries may go on before they are stopped.
    pub shutdown_grace_secs: u64,
}

impl Default for LimitSettings {
    fn default() -> Self {
        LimitSettings {
            query_memory_mb: 4096,
            query_timeout_secs: 900,
            max_concurrent_queries: 32,
            queue_timeout_secs: 120,
            principal_concurrent_queries: 8,
            principal_queries_per_minute: 0,
            shutdown_grace_secs: 25,
        }
    }
}

impl LimitSettings {
    pub fn validate(&self) -> Result<(), String> {
        if self.max_concurrent_queries == 0 {
            return Err("limits.max_concurrent_queries must be at least 1".into());
        }
        if self.principal_concurrent_queries == 0 {
            return Err("limits.principal_concurrent_queries must be at least 1".into());
        }
        Ok(())
    }

    /// Bytes of the per-query memory pool, if limited.
    pub fn query_memory_bytes(&self) -> Option<usize> {
        (self.query_memory_mb > 0).then(|| (self.query_memory_mb as usize).saturating_mul(1 << 20))
    }

    pub fn query_timeout(&self) -> Option<Duration> {
        (self.query_timeout_secs > 0).then(|| Duration::from_secs(self.query_timeout_secs))
    }

    /// The error of a query past its time limit.
    pub(crate) fn timed_out(&self) -> QueryError {
        QueryError::ResourcesExhausted(format!(
            "the query ran past its time limit of {} s",
            self.query_timeout_secs
        ))
    }
}

/// The server's admission of queries: turns among all principals, and each principal's share.
pub(crate) struct Limits {
    settings: LimitSettings,
    turns: Arc<Semaphore>,
    principals: Arc<Mutex<HashMap<String, Share>>>,
    /// The server's shutdown: `Closing` refuses new queries, `Stopping` ends running ones.
    shutdown: tokio::sync::watch::Sender<Shutdown>,
    running: Arc<std::sync::atomic::AtomicUsize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Shutdown {
    Serving,
    Closing,
    Stopping,
}

/// What ends a running query early: its time limit, or the server stopping.
pub(crate) type End = Pin<Box<dyn Future<Output = QueryError> + Send>>;

/// One principal's share: turns among its own queries, and the start times of the last minute's.
struct Share {
    turns: Arc<Semaphore>,
    started: VecDeque<Instant>,
}

impl Share {
    /// Whether nothing holds the share's turns and its last minute holds no start. Waiting and
    /// admitted queries hold the semaphore, and clones are made under the map's lock.
    fn idle(&mut self, now: Instant) -> bool {
        self.forget_before(now);
        Arc::strong_count(&self.turns) == 1 && self.started.is_empty()
    }

    /// Forgets the starts more than a minute before `now`.
    fn forget_before(&mut self, now: Instant) {
        while self
            .started
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
        {
            self.started.pop_front();
        }
    }
}

/// A query's admission, held while it executes and streams: dropping it (the query ended, failed
/// or its client went away) gives its turns back.
pub(crate) struct Admission {
    _turn: OwnedSemaphorePermit,
    _own_turn: OwnedSemaphorePermit,
    _running: Running,
}

/// One running query in the count (`strata_queries_running`): a permit count would also count
/// the permits a draining shutdown holds.
struct Running(Arc<std::sync::atomic::AtomicUsize>);

impl Running {
    fn start(count: &Arc<std::sync::atomic::AtomicUsize>) -> Self {
        count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Running(count.clone())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A query's admission as its stream holds it: given back when the stream ends or goes, or at
/// the query's deadline even if nobody polls the stream any more (a client that stopped
/// reading: its stream waits on the connection, and would hold its turn until the transport
/// gave up).
pub(crate) struct Held {
    /// Shared with the watchdog, which empties it at the deadline; dropped with the stream.
    _admission: Arc<Mutex<Option<Admission>>>,
    _watchdog: Option<datafusion::common::runtime::SpawnedTask<()>>,
}

impl Held {
    pub(crate) fn new(admission: Admission, deadline: Option<tokio::time::Instant>) -> Self {
        let admission = Arc::new(Mutex::new(Some(admission)));
        let watchdog = deadline.map(|deadline| {
            let admission = admission.clone();
            datafusion::common::runtime::SpawnedTask::spawn(async move {
                tokio::time::sleep_until(deadline).await;
                admission.lock().unwrap_or_else(|p| p.into_inner()).take();
            })
        });
        Held {
            _admission: admission,
            _watchdog: watchdog,
        }
    }
}

impl Limits {
    pub(crate) fn new(settings: LimitSettings) -> Self {
        Limits {
            turns: Arc::new(Semaphore::new(settings.max_concurrent_queries)),
            settings,
            principals: Default::default(),
            shutdown: tokio::sync::watch::Sender::new(Shutdown::Serving),
            running: Default::default(),
        }
    }

    /// When a query started now must end: at its deadline, or when the server stops.
    pub(crate) fn end(&self, deadline: Option<tokio::time::Instant>) -> End {
        let timed_out = self.settings.timed_out();
        let mut shutdown = self.shutdown.subscribe();
        Box::pin(async move {
            let stopping = async {
                if shutdown
                    .wait_for(|s| *s == Shutdown::Stopping)
                    .await
                    .is_err()
                {
                    std::future::pending::<()>().await;
                }
            };
            let deadline = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = stopping => QueryError::ShuttingDown,
                _ = deadline => timed_out,
            }
        })
    }

    /// No new queries from now on; then waits up to `shutdown_grace_secs` for the running ones,
    /// and stops those still running. Returns how many had to be stopped.
    pub(crate) async fn drain(&self) -> usize {
        self.shutdown.send_replace(Shutdown::Closing);
        let grace = Duration::from_secs(self.settings.shutdown_grace_secs);
        let all = self.settings.max_concurrent_queries as u32;
        let drained = tokio::time::timeout(grace, self.turns.acquire_many(all)).await;
        let stopped = match drained {
            Ok(_) => 0,
            Err(_) => self.running(),
        };
        // Turns the drain held go back to queries queued before it began: they start only to
        // find the server stopping.
        self.shutdown.send_replace(Shutdown::Stopping);
        stopped
    }

    pub(crate) fn settings(&self) -> &LimitSettings {
        &self.settings
    }

    /// Queries holding a turn now.
    pub(crate) fn running(&self) -> usize {
        self.running.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Admits a query of `principal`: refused at once past its quota of starts; otherwise it
    /// waits, up to the queue timeout in all, for a turn among its own queries, then for one
    /// among everyone's.
    pub(crate) async fn admit(&self, principal: &str) -> Result<Admission, QueryError> {
        if *self.shutdown.borrow() != Shutdown::Serving {
            return Err(QueryError::ShuttingDown);
        }
        let deadline =
            tokio::time::Instant::now() + Duration::from_secs(self.settings.queue_timeout_secs);
        let own = self.start(principal)?;
        let own_turn = match tokio::time::timeout_at(deadline, own.acquire_owned()).await {
            Ok(Ok(turn)) => turn,
            Ok(Err(_)) => return Err(QueryError::Internal("the query queue is closed".into())),
            Err(_) => {
                return Err(QueryError::ResourcesExhausted(format!(
                    "you have {} queries running, your limit, and none finished within {} s; \
                     wait for one to finish",
                    self.settings.principal_concurrent_queries, self.settings.queue_timeout_secs
                )));
            }
        };
        let turn = match tokio::time::timeout_at(deadline, self.turns.clone().acquire_owned()).await
        {
            Ok(Ok(turn)) => turn,
            Ok(Err(_)) => return Err(QueryError::Internal("the query queue is closed".into())),
            Err(_) => {
                return Err(QueryError::ResourcesExhausted(format!(
                    "the server is running its limit of {} queries and none finished within {} s; \
                     try again later",
                    self.settings.max_concurrent_queries, self.settings.queue_timeout_secs
                )));
            }
        };
        // Queued before the drain began, and given a turn when it ended: too late.
        if *self.shutdown.borrow() == Shutdown::Stopping {
            return Err(QueryError::ShuttingDown);
        }
        Ok(Admission {
            _turn: turn,
            _own_turn: own_turn,
            _running: Running::start(&self.running),
        })
    }

    /// Counts a start of `principal` against its quota; its share's turns.
    fn start(&self, principal: &str) -> Result<Arc<Semaphore>, QueryError> {
        let now = Instant::now();
        let mut principals = self.principals.lock().unwrap_or_else(|p| p.into_inner());
        // The map holds the principals of the last minute and those with queries, not every one
        // ever seen.
        principals.retain(|_, share| !share.idle(now));
        let share = principals
            .entry(principal.to_string())
            .or_insert_with(|| Share {
                turns: Arc::new(Semaphore::new(self.settings.principal_concurrent_queries)),
                started: VecDeque::new(),
            });
        share.forget_before(now);
        let quota = self.settings.principal_queries_per_minute;
        if quota > 0 && share.started.len() >= quota {
            return Err(QueryError::ResourcesExhausted(format!(
                "your quota of {quota} queries a minute is used up; try again in a minute"
            )));
        }
        share.started.push_back(now);
        Ok(share.turns.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(concurrent: usize, per_principal: usize, per_minute: usize) -> Limits {
        Limits::new(LimitSettings {
            max_concurrent_queries: concurrent,
            queue_timeout_secs: 1,
            principal_concurrent_queries: per_principal,
            principal_queries_per_minute: per_minute,
            ..LimitSettings::default()
        })
    }

    #[tokio::test]
    async fn a_principal_past_its_share_waits_then_is_refused() {
        let l = Arc::new(limits(8, 2, 0));
        let a = l.admit("alice").await.unwrap();
        let _b = l.admit("alice").await.unwrap();
        let refused = l
            .admit("alice")
            .await
            .err()
            .expect("a third waits, then is refused");
        assert!(
            refused.to_string().contains("2 queries running"),
            "{refused}"
        );
        // Another principal is not held back by alice's share.
        let _c = l.admit("bob").await.unwrap();
        // A third query of alice's waits for one of hers to end.
        let waiting = tokio::spawn({
            let l = l.clone();
            async move { l.admit("alice").await.map(drop) }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(a);
        waiting
            .await
            .unwrap()
            .expect("admitted once one of hers ended");
    }

    #[tokio::test]
    async fn the_queue_waits_for_a_turn_then_refuses() {
        let l = Arc::new(limits(1, 8, 0));
        let first = l.admit("alice").await.unwrap();
        let started = Instant::now();
        let refused = l
            .admit("bob")
            .await
            .err()
            .expect("no turn within the queue timeout");
        assert!(started.elapsed() >= Duration::from_millis(900));
        assert!(matches!(refused, QueryError::ResourcesExhausted(_)));
        // The refused wait gave bob's share back, and a turn freed is taken by the next.
        let waiting = tokio::spawn({
            let l = l.clone();
            async move { l.admit("bob").await.map(drop) }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(first);
        waiting
            .await
            .unwrap()
            .expect("admitted once the first query ended");
        // Bob's turns are all back (his share lasts while his starts are in the last minute).
        let principals = l.principals.lock().unwrap();
        assert_eq!(principals["bob"].turns.available_permits(), 8);
        assert_eq!(Arc::strong_count(&principals["bob"].turns), 1);
    }

    #[tokio::test]
    async fn a_shutdown_refuses_new_queries_waits_for_running_ones_then_stops_them() {
        let l = Arc::new(Limits::new(LimitSettings {
            shutdown_grace_secs: 1,
            ..LimitSettings::default()
        }));
        let running = l.admit("alice").await.unwrap();
        let end = l.end(None);
        assert_eq!(l.running(), 1);
        let drained = tokio::spawn({
            let l = l.clone();
            async move { l.drain().await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(matches!(
            l.admit("bob").await.err(),
            Some(QueryError::ShuttingDown)
        ));
        // The running query outlives the grace: it is counted as stopped, and its end fires.
        assert_eq!(drained.await.unwrap(), 1);
        assert!(matches!(end.await, QueryError::ShuttingDown));
        drop(running);
        assert_eq!(l.running(), 0);
    }

    #[tokio::test]
    async fn a_drain_ends_as_soon_as_the_last_query_does() {
        let l = Arc::new(limits(4, 4, 0));
        let running = l.admit("alice").await.unwrap();
        let drained = tokio::spawn({
            let l = l.clone();
            async move { l.drain().await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!drained.is_finished());
        drop(running);
        let stopped = tokio::time::timeout(Duration::from_secs(5), drained)
            .await
            .expect("the drain ended with the query")
            .unwrap();
        assert_eq!(stopped, 0);
    }

    #[tokio::test]
    async fn the_minute_quota_counts_starts() {
        let l = limits(8, 8, 2);
        drop(l.admit("alice").await.unwrap());
        drop(l.admit("alice").await.unwrap());
        let refused = l
            .admit("alice")
            .await
            .err()
            .expect("a third start in the minute");
        assert!(
            refused.to_string().contains("2 queries a minute"),
            "{refused}"
        );
        l.admit("bob").await.expect("bob has his own quota");
    }
}
