//! What signing a part needs of an active upload — its key, provider upload
//! id, plan, owner and expiry, none of which changes while it is active —
//! kept in memory so that a part request costs no database round trip.
//!
//! Its status is what can change, on any instance. Every change of an upload
//! row is announced at commit (`db::notify`); each instance listens on one
//! connection of its own and drops the upload when it hears of it. The cache
//! answers only while it is sure to have heard everything:
//!
//! * **Connected and caught up.** Each instance sends its own heartbeat every
//!   [`HEARTBEAT_EVERY`], stamped with when it was sent; notifications arrive
//!   in commit order, so hearing its own heartbeat means every change committed
//!   before it was sent has been heard. The cache answers only while the last
//!   own heartbeat heard was sent less than [`STALE_AFTER`] ago (a backlog, a
//!   stall or a silently cut connection turns it off); a listener that hears
//!   nothing for that long is dropped and replaced. A lost connection empties
//!   the cache until it listens again, and it only listens once it has checked
//!   that the triggers announcing changes are there and enabled.
//! * **No stale fill.** A reader notes the cache's epoch before its database
//!   read and stores the row only if no change was heard since: a change that
//!   commits between the read and the store cannot be overwritten by it.
//! * **Own changes at once.** This instance's own status changes drop the
//!   upload as soon as they commit, before their response is sent.
//!
//! * **Checked again.** The triggers are checked every [`TRIGGER_CHECK_EVERY`]
//!   while it listens (turned off, the cache stops answering and listens anew
//!   once they are back), and no entry is trusted longer than [`MAX_ENTRY_AGE`]:
//!   a change missed while a trigger was off briefly is read within that.
//!
//! A change made on another instance reaches this one's cache within the time
//! Postgres takes to deliver a notification (about a millisecond on one host);
//! a part request signed in that moment gets a URL for an upload storage no
//! longer has. When delivery stalls, the cache stops answering within
//! [`STALE_AFTER`].

use crate::db::notify::Heard;
use crate::domain::upload::{Origin, Upload, UploadStatus};
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// How often each instance sends a heartbeat on the channel.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
/// How long the cache is trusted after the last thing heard.
pub const STALE_AFTER: Duration = Duration::from_secs(3);
/// How often the triggers are checked while listening.
pub const TRIGGER_CHECK_EVERY: Duration = Duration::from_secs(5);
/// Longest an upload is served from the cache before it is read again.
pub const MAX_ENTRY_AGE: Duration = Duration::from_secs(10);

/// Signing facts of active uploads, by id and by provider upload id.
pub struct UploadCache {
    capacity: usize,
    state: Mutex<State>,
    /// Tells this instance's heartbeats from others'.
    me: Uuid,
    /// What heartbeats are stamped against.
    clock: Instant,
}

/// An upload as cached, and when it was read.
type Entry = (Arc<Upload>, Instant);
type Maps = (HashMap<Uuid, Entry>, HashMap<String, Uuid>);

#[derive(Default)]
struct State {
    by_id: HashMap<Uuid, Entry>,
    /// Companion uploads, by the provider's upload id.
    by_provider: HashMap<String, Uuid>,
    /// Bumped by every change heard and every (re)connection.
    epoch: u64,
    listening: bool,
    /// When the last own heartbeat heard was sent.
    caught_up: Option<Instant>,
}

impl State {
    fn trusted(&self) -> bool {
        self.listening && self.caught_up.is_some_and(|t| t.elapsed() < STALE_AFTER)
    }

    fn forget(&mut self, id: Uuid) {
        self.epoch += 1;
        if let Some((u, _)) = self.by_id.remove(&id) {
            if u.origin == Origin::Companion {
                self.by_provider.remove(&u.provider_upload_id);
            }
        }
    }

    /// Empties the maps: everything may have changed. Their contents are
    /// handed back, to be dropped once the lock is released.
    fn clear(&mut self) -> Maps {
        self.epoch += 1;
        self.take()
    }

    /// A cached upload young enough to be served.
    fn fresh(&self, id: &Uuid) -> Option<Arc<Upload>> {
        self.by_id
            .get(id)
            .filter(|(_, at)| at.elapsed() < MAX_ENTRY_AGE)
            .map(|(u, _)| u.clone())
    }

    fn take(&mut self) -> Maps {
        (
            std::mem::take(&mut self.by_id),
            std::mem::take(&mut self.by_provider),
        )
    }
}

/// What a reader notes before its database read (see [`UploadCache::fill`]).
#[derive(Debug, Clone, Copy)]
pub struct Epoch(Option<u64>);

impl UploadCache {
    /// A cache of at most `capacity` uploads (0: never used). It answers once
    /// [`UploadCache::keep_fresh`] listens.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            state: Mutex::default(),
            me: Uuid::new_v4(),
            clock: Instant::now(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock can at worst leave a Companion upload
        // in one map and not the other: a cache miss, nothing wrong served.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The active upload `id`, if cached and the cache is trusted.
    pub fn get(&self, id: Uuid) -> Option<Arc<Upload>> {
        let s = self.state();
        s.trusted().then(|| s.fresh(&id)).flatten()
    }

    /// The active Companion upload with this provider upload id.
    pub fn get_by_provider(&self, provider_upload_id: &str) -> Option<Arc<Upload>> {
        let s = self.state();
        if !s.trusted() {
            return None;
        }
        let id = s.by_provider.get(provider_upload_id)?;
        s.fresh(id)
    }

    /// To note before reading an upload from the database.
    pub fn epoch(&self) -> Epoch {
        let s = self.state();
        Epoch(s.trusted().then_some(s.epoch))
    }

    /// Keeps an upload read after `epoch` was noted, if it is active and no
    /// change was heard since.
    pub fn fill(&self, epoch: Epoch, upload: &Upload) {
        if upload.status != UploadStatus::Active || self.capacity == 0 || epoch.0.is_none() {
            return;
        }
        let kept = Arc::new(upload.clone());
        let mut s = self.state();
        if epoch.0 != Some(s.epoch) || !s.trusted() {
            return;
        }
        // Full: start over rather than track recency on the hot path.
        let _dropped_after_unlock = (s.by_id.len() >= self.capacity).then(|| s.take());
        if upload.origin == Origin::Companion {
            s.by_provider
                .insert(upload.provider_upload_id.clone(), upload.id);
        }
        s.by_id.insert(upload.id, (kept, Instant::now()));
    }

    /// Drops an upload whose row changed (heard, or changed by this instance).
    pub fn forget(&self, id: Uuid) {
        self.state().forget(id);
    }

    /// Drops an upload read in a status other than active, if it is held:
    /// the notification of that change may not have arrived yet.
    pub fn saw(&self, upload: &Upload) {
        if upload.status != UploadStatus::Active {
            let mut s = self.state();
            if s.by_id.contains_key(&upload.id) {
                s.forget(upload.id);
            }
        }
    }

    fn heard(&self, what: Heard) {
        let mut s = self.state();
        let _dropped_after_unlock = match what {
            Heard::Changed(id) => {
                s.forget(id);
                None
            }
            Heard::All => Some(s.clear()),
            Heard::Beat { from, at_ms } if from == self.me => {
                let sent = self.clock + Duration::from_millis(at_ms);
                s.caught_up = Some(s.caught_up.map_or(sent, |t| t.max(sent)));
                None
            }
            Heard::Beat { .. } | Heard::Other => None,
        };
    }

    fn listening(&self, on: bool) {
        let mut s = self.state();
        let _dropped_after_unlock = s.clear();
        s.listening = on;
        // Listening from now on: whatever commits later will be heard.
        s.caught_up = on.then(Instant::now);
    }

    /// This instance's next heartbeat.
    fn beat(&self) -> String {
        Heard::beat(self.me, self.clock.elapsed().as_millis() as u64)
    }

    /// The triggers were found off while listening: stop answering, and have
    /// the listener start over (it listens again once they are back).
    fn triggers_lost(&self) {
        let mut s = self.state();
        let _dropped_after_unlock = s.clear();
        s.listening = false;
        s.caught_up = None;
    }

    /// How many uploads it holds.
    pub fn len(&self) -> usize {
        self.state().by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Listens for changes for ever, reconnecting after a lost connection,
    /// and sends the heartbeat, on a small pool of its own to `pool`'s
    /// database. Run it in a task of its own; until it listens (and whenever
    /// it is not sure to have heard everything, or once the task is dropped)
    /// the cache answers nothing and every read goes to the database.
    pub async fn keep_fresh(self: Arc<Self>, pool: PgPool) {
        if self.capacity == 0 {
            return;
        }
        let main = pool;
        let pool = crate::db::notify::listener_pool(&main);
        // However this ends (aborted at shutdown, a panic), stop answering.
        struct Deaf(Arc<UploadCache>);
        impl Drop for Deaf {
            fn drop(&mut self) {
                self.0.listening(false);
            }
        }
        let _deaf_when_dropped = Deaf(self.clone());
        // Set when the triggers are found off: the listener starts over.
        let relisten = tokio::sync::Notify::new();
        let beat = async {
            let mut every = tokio::time::interval(HEARTBEAT_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last_check = Instant::now();
            loop {
                every.tick().await;
                if let Err(e) = crate::db::notify::heartbeat(&pool, &self.beat()).await {
                    tracing::debug!(error = %e, "could not send the upload cache heartbeat");
                }
                if last_check.elapsed() >= TRIGGER_CHECK_EVERY {
                    last_check = Instant::now();
                    if let Ok(false) = crate::db::notify::triggers_enabled(&pool).await {
                        self.triggers_lost();
                        relisten.notify_one();
                        tracing::warn!("the triggers that announce upload changes are off; the upload cache reads from the database until they are back");
                    }
                }
            }
        };
        let listen = async {
            let mut backoff = Duration::from_millis(100);
            loop {
                match crate::db::notify::listen(&pool).await {
                    Ok(mut listener) => {
                        backoff = Duration::from_millis(100);
                        self.listening(true);
                        tracing::debug!("the upload cache listens for changes");
                        // Own heartbeats come every second: silence this long
                        // means a connection that is gone without saying so.
                        loop {
                            let heard = tokio::select! {
                                h = tokio::time::timeout(
                                    STALE_AFTER,
                                    crate::db::notify::next(&mut listener),
                                ) => h,
                                _ = relisten.notified() => break,
                            };
                            match heard {
                                Ok(Some(heard)) => self.heard(heard),
                                _ => break,
                            }
                        }
                        self.listening(false);
                        tracing::warn!("the upload cache lost its listening connection; reading from the database until it is back");
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "the upload cache cannot listen for changes; reading from the database");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            }
        };
        tokio::select! {
            _ = beat => {}
            _ = listen => {}
            // The application's pool closed: the listener's goes with it.
            _ = main.close_event() => {}
        }
        pool.close().await;
    }
}

#[cfg(test)]
#[path = "cache_tests.rs"]
mod tests;
