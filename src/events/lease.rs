//! Which replica reports lifecycle events: the one named in a datastore key with a TTL
//! ([`LifecycleConfig::lease_key`]). Its holder renews it every third of the TTL; the others
//! read it as often and take it once it is gone (st2 removed it) or past its
//! `expire_timestamp` (st2's MongoDB sweeps expired keys only about once a minute).
//!
//! A holder that cannot renew stops reporting two thirds of a TTL after its last renewal,
//! before another replica may take the key over. st2's datastore has no compare-and-set, so
//! two replicas that take a free key at the same moment both write it; each reads it back,
//! and the one whose write was overwritten steps down at its next renewal at the latest.
//! During that overlap both report: JetStream drops the second copy by `Nats-Msg-Id`, and
//! the HTTP receiver may see an event twice, under the same id.

use std::future::Future;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::watch;
use tokio::time::Instant;

use super::config::LeaseConfig;
use st2_basics::sleep_until_some;
use st2_client::St2Client;

/// What one look at the lease found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Look {
    /// This replica holds it (renewed or just taken).
    Held,
    /// Another replica holds it.
    Taken,
}

/// The holder's side of the TTL: held until two thirds of a TTL after the last renewal.
#[derive(Debug, Clone, Copy)]
pub struct Tenure {
    ttl: Duration,
    renewed: Option<Instant>,
}

impl Tenure {
    /// Not held yet.
    pub fn new(ttl: Duration) -> Self {
        Self { ttl, renewed: None }
    }

    /// How often the lease is looked at: a third of the TTL.
    pub fn period(&self) -> Duration {
        self.ttl / 3
    }

    /// The outcome of a look at `at`; an error changes nothing (the tenure runs out).
    pub fn record(&mut self, look: Option<Look>, at: Instant) {
        match look {
            Some(Look::Held) => self.renewed = Some(at),
            Some(Look::Taken) => self.renewed = None,
            None => {}
        }
    }

    /// When reporting must stop unless renewed: two thirds of a TTL after the last renewal.
    pub fn ends(&self) -> Option<Instant> {
        self.renewed.map(|r| r + self.ttl.mul_f64(2.0 / 3.0))
    }

    /// Whether this replica may report at `now`.
    pub fn held(&self, now: Instant) -> bool {
        self.ends().is_some_and(|end| now < end)
    }
}

/// This replica's name: the configured one, else `$HOSTNAME`, else a random one.
pub fn replica_name(config: &LeaseConfig) -> String {
    config
        .replica
        .clone()
        .or_else(|| {
            std::env::var("HOSTNAME")
                .ok()
                .filter(|h| !h.is_empty() && h.len() <= 128)
        })
        .unwrap_or_else(|| format!("replica-{:016x}", fastrand::u64(..)))
}

/// One look at the lease in st2: renew it when ours, take it when free or expired, else
/// leave it. After taking, it is read back, so a simultaneous taker that wrote last wins.
pub async fn look(
    client: &St2Client,
    key: &str,
    me: &str,
    ttl: Duration,
) -> Result<Look, st2_client::St2Error> {
    let keys = client.keys();
    let (ours, free) = match keys.get(key).await? {
        None => (false, true),
        Some(p) if p.value == me => (true, false),
        Some(p) => (
            false,
            p.expire_timestamp
                .is_some_and(|e| e < OffsetDateTime::now_utc()),
        ),
    };
    if !ours && !free {
        return Ok(Look::Taken);
    }
    keys.put(key, me, Some(ttl)).await?;
    if ours {
        return Ok(Look::Held);
    }
    let back = keys.get(key).await?;
    Ok(if back.is_some_and(|p| p.value == me) {
        Look::Held
    } else {
        Look::Taken
    })
}

/// Looks at the lease every [`Tenure::period`] with `look` and publishes on `held` whether
/// this replica may report, until `stop` turns true. Answers whether it held the lease at
/// the end (the caller then releases it).
pub async fn keep<F, Fut, E>(
    ttl: Duration,
    mut look: F,
    held: watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Look, E>>,
    E: std::fmt::Display,
{
    let mut tenure = Tenure::new(ttl);
    loop {
        // A look that hangs (st2 slow) must not stretch the tenure: reporting stops at its
        // end even while the look is still waiting for st2.
        let mut pending = std::pin::pin!(look());
        let outcome = loop {
            let end = tenure.ends().filter(|_| *held.borrow());
            tokio::select! {
                o = &mut pending => break o,
                _ = sleep_until_some(end) => {
                    tracing::info!(held = false, "lifecycle lease changed hands");
                    held.send_replace(false);
                }
                _ = stop.wait_for(|s| *s) => {
                    held.send_replace(false);
                    return tenure.held(Instant::now());
                }
            }
        };
        let now = Instant::now();
        let was = *held.borrow();
        match outcome {
            Ok(l) => tenure.record(Some(l), now),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read or renew the lifecycle lease in st2's datastore; retrying")
            }
        }
        let is = tenure.held(now);
        if was != is {
            tracing::info!(held = is, "lifecycle lease changed hands");
        }
        held.send_replace(is);
        // Wake at the next look, or when the tenure runs out if that comes first.
        let next = now + tenure.period();
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    let end = tenure.held(Instant::now());
    held.send_replace(false);
    end
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    const TTL: Duration = Duration::from_secs(15);

    /// A datastore holding one key with a TTL on tokio's clock, as st2's does on its own.
    #[derive(Clone, Default)]
    struct Store(Arc<Mutex<Option<(String, Instant)>>>);

    impl Store {
        fn look(&self, me: &str) -> Result<Look, String> {
            let mut key = self.0.lock().unwrap();
            let now = Instant::now();
            match key.as_ref() {
                Some((holder, expires)) if holder != me && *expires > now => Ok(Look::Taken),
                _ => {
                    *key = Some((me.to_string(), now + TTL));
                    Ok(Look::Held)
                }
            }
        }
    }

    fn replica(
        store: &Store,
        me: &'static str,
    ) -> (
        watch::Receiver<bool>,
        watch::Sender<bool>,
        tokio::task::JoinHandle<bool>,
    ) {
        let (held_tx, held) = watch::channel(false);
        let (stop, stop_rx) = watch::channel(false);
        let store = store.clone();
        let task = tokio::spawn(keep(
            TTL,
            move || {
                let store = store.clone();
                async move { store.look(me) }
            },
            held_tx,
            stop_rx,
        ));
        (held, stop, task)
    }

    #[tokio::test(start_paused = true)]
    async fn a_holder_that_cannot_renew_stops_before_the_key_expires() {
        let mut tenure = Tenure::new(TTL);
        let t0 = Instant::now();
        assert!(!tenure.held(t0));
        tenure.record(Some(Look::Held), t0);
        assert!(tenure.held(t0 + Duration::from_secs(9)));
        // Two failed renewals later the key is not yet expired, yet reporting has stopped.
        tenure.record(None, t0 + TTL / 3);
        assert!(!tenure.held(t0 + TTL * 2 / 3));
        assert!(t0 + TTL * 2 / 3 < t0 + TTL);
        tenure.record(Some(Look::Held), t0 + TTL);
        assert!(tenure.held(t0 + TTL));
        tenure.record(Some(Look::Taken), t0 + TTL + Duration::from_secs(1));
        assert!(!tenure.held(t0 + TTL + Duration::from_secs(1)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_renewal_that_hangs_ends_reporting_on_time() {
        let (held_tx, mut held) = watch::channel(false);
        let (stop, stop_rx) = watch::channel(false);
        let looks = Arc::new(Mutex::new(0));
        let counted = looks.clone();
        let task = tokio::spawn(keep(
            TTL,
            move || {
                let first = {
                    let mut n = counted.lock().unwrap();
                    *n += 1;
                    *n == 1
                };
                async move {
                    if !first {
                        // st2 stops answering.
                        std::future::pending::<()>().await;
                    }
                    Ok::<_, String>(Look::Held)
                }
            },
            held_tx,
            stop_rx,
        ));
        let t0 = Instant::now();
        held.wait_for(|h| *h).await.unwrap();
        held.wait_for(|h| !*h).await.unwrap();
        assert_eq!(
            Instant::now() - t0,
            TTL * 2 / 3,
            "stopped at the end of the tenure"
        );
        assert_eq!(
            *looks.lock().unwrap(),
            2,
            "the second look is still hanging"
        );
        stop.send_replace(true);
        assert!(
            !task.await.unwrap(),
            "not held at the end: nothing to release"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_lease_passes_to_the_standby_once_the_holder_dies_and_only_one_holds() {
        let store = Store::default();
        let (a_held, _a_stop, a) = replica(&store, "a");
        tokio::time::sleep(Duration::from_millis(1)).await;
        let (b_held, b_stop, b) = replica(&store, "b");
        // Both settle: exactly one holds, for many renewal periods.
        for _ in 0..10 {
            tokio::time::sleep(TTL / 3).await;
            assert!(*a_held.borrow() && !*b_held.borrow());
        }
        // The holder dies without releasing; the standby takes over once the key expires,
        // within one TTL and one look.
        a.abort();
        let died = Instant::now();
        let mut b_watch = b_held.clone();
        b_watch.wait_for(|h| *h).await.unwrap();
        let after = Instant::now() - died;
        assert!(after <= TTL + TTL / 3, "took over after {after:?}");
        assert!(
            after >= TTL - TTL / 3,
            "not before the key could expire: {after:?}"
        );
        // Stopping answers that it held the lease, for the release.
        b_stop.send_replace(true);
        assert!(b.await.unwrap());
        assert!(!*b_held.borrow());
    }
}
