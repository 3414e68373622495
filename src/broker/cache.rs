//! What signing a part needs of an active upload — its key, provider upload
//! id, plan, owner and expiry, none of which changes while it is active —
//! kept in memory so that a part request costs no database round trip.
//!
//! Its status is what can change, on any instance. Every change of an upload
//! row is announced at commit (`db::notify`); each instance listens on one
//! connection of its own and drops the upload when it hears of it. The cache
//! answers only while it is sure to have heard everything:
//!
//! * **Connected and recent.** A heartbeat goes round every
//!   [`HEARTBEAT_EVERY`]; notifications arrive in commit order, so hearing one
//!   means every change committed before it has been heard. When nothing was
//!   heard for [`STALE_AFTER`] (a stalled or silently cut connection) the cache
//!   is bypassed; when the connection is lost it is emptied and starts over
//!   once listening again.
//! * **No stale fill.** A reader notes the cache's epoch before its database
//!   read and stores the row only if no change was heard since: a change that
//!   commits between the read and the store cannot be overwritten by it.
//! * **Own changes at once.** This instance's own status changes drop the
//!   upload as soon as they commit, before their response is sent.
//!
//! A change made on another instance reaches this one's cache within the time
//! Postgres takes to deliver a notification (about a millisecond on one host).

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

/// Signing facts of active uploads, by id and by provider upload id.
pub struct UploadCache {
    capacity: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    by_id: HashMap<Uuid, Arc<Upload>>,
    /// Companion uploads, by the provider's upload id.
    by_provider: HashMap<String, Uuid>,
    /// Bumped by every change heard and every (re)connection.
    epoch: u64,
    listening: bool,
    heard: Option<Instant>,
}

impl State {
    fn trusted(&self) -> bool {
        self.listening && self.heard.is_some_and(|t| t.elapsed() < STALE_AFTER)
    }

    fn forget(&mut self, id: Uuid) {
        self.epoch += 1;
        if let Some(u) = self.by_id.remove(&id) {
            if u.origin == Origin::Companion {
                self.by_provider.remove(&u.provider_upload_id);
            }
        }
    }

    fn clear(&mut self) {
        self.epoch += 1;
        self.by_id.clear();
        self.by_provider.clear();
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
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-changed
        // in a way that matters: every operation is a single insert or remove.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The active upload `id`, if cached and the cache is trusted.
    pub fn get(&self, id: Uuid) -> Option<Arc<Upload>> {
        let s = self.state();
        s.trusted().then(|| s.by_id.get(&id).cloned()).flatten()
    }

    /// The active Companion upload with this provider upload id.
    pub fn get_by_provider(&self, provider_upload_id: &str) -> Option<Arc<Upload>> {
        let s = self.state();
        if !s.trusted() {
            return None;
        }
        let id = s.by_provider.get(provider_upload_id)?;
        s.by_id.get(id).cloned()
    }

    /// To note before reading an upload from the database.
    pub fn epoch(&self) -> Epoch {
        let s = self.state();
        Epoch(s.trusted().then_some(s.epoch))
    }

    /// Keeps an upload read after `epoch` was noted, if it is active and no
    /// change was heard since.
    pub fn fill(&self, epoch: Epoch, upload: &Upload) {
        if upload.status != UploadStatus::Active || self.capacity == 0 {
            return;
        }
        let mut s = self.state();
        if epoch.0 != Some(s.epoch) || !s.trusted() {
            return;
        }
        if s.by_id.len() >= self.capacity {
            // Full: start over rather than track recency on the hot path.
            s.by_id.clear();
            s.by_provider.clear();
        }
        if upload.origin == Origin::Companion {
            s.by_provider
                .insert(upload.provider_upload_id.clone(), upload.id);
        }
        s.by_id.insert(upload.id, Arc::new(upload.clone()));
    }

    /// Drops an upload whose row changed (heard, or changed by this instance).
    pub fn forget(&self, id: Uuid) {
        self.state().forget(id);
    }

    fn heard(&self, what: crate::db::notify::Heard) {
        let mut s = self.state();
        if let crate::db::notify::Heard::Changed(id) = what {
            s.forget(id);
        }
        s.heard = Some(Instant::now());
    }

    fn listening(&self, on: bool) {
        let mut s = self.state();
        s.clear();
        s.listening = on;
        s.heard = on.then(Instant::now);
    }

    /// How many uploads it holds.
    pub fn len(&self) -> usize {
        self.state().by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Listens for changes for ever, reconnecting after a lost connection,
    /// and sends the heartbeat. Run it in a task of its own; until it
    /// listens (and whenever it is not sure to have heard everything) the cache
    /// answers nothing and every read goes to the database.
    pub async fn keep_fresh(self: Arc<Self>, pool: PgPool) {
        if self.capacity == 0 {
            return;
        }
        let beat = {
            let pool = pool.clone();
            async move {
                let mut every = tokio::time::interval(HEARTBEAT_EVERY);
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    every.tick().await;
                    if let Err(e) = crate::db::notify::heartbeat(&pool).await {
                        tracing::debug!(error = %e, "could not send the upload cache heartbeat");
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
                        while let Some(heard) = crate::db::notify::next(&mut listener).await {
                            self.heard(heard);
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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::notify::Heard;

    fn upload(status: UploadStatus) -> Upload {
        crate::domain::upload::sample(status)
    }

    fn trusted_cache() -> UploadCache {
        let c = UploadCache::new(10);
        c.listening(true);
        c
    }

    #[test]
    fn answers_nothing_until_it_listens() {
        let c = UploadCache::new(10);
        let u = upload(UploadStatus::Active);
        c.fill(c.epoch(), &u);
        assert!(c.get(u.id).is_none());
        c.listening(true);
        c.fill(c.epoch(), &u);
        assert_eq!(c.get(u.id).unwrap().id, u.id);
    }

    #[test]
    fn a_change_heard_between_read_and_fill_wins() {
        let c = trusted_cache();
        let u = upload(UploadStatus::Active);
        let before = c.epoch();
        c.heard(Heard::Changed(u.id)); // the row changed after it was read
        c.fill(before, &u);
        assert!(c.get(u.id).is_none());
        // A change of another upload also refuses the fill: being conservative costs a read.
        let other = upload(UploadStatus::Active);
        let before = c.epoch();
        c.heard(Heard::Changed(Uuid::now_v7()));
        c.fill(before, &other);
        assert!(c.get(other.id).is_none());
        // A heartbeat does not.
        let before = c.epoch();
        c.heard(Heard::Other);
        c.fill(before, &other);
        assert!(c.get(other.id).is_some());
    }

    #[test]
    fn a_change_heard_drops_the_upload_by_id_and_by_provider_id() {
        let c = trusted_cache();
        let mut u = upload(UploadStatus::Active);
        u.origin = Origin::Companion;
        c.fill(c.epoch(), &u);
        assert!(c.get_by_provider(&u.provider_upload_id).is_some());
        c.heard(Heard::Changed(u.id));
        assert!(c.get(u.id).is_none());
        assert!(c.get_by_provider(&u.provider_upload_id).is_none());
    }

    #[test]
    fn only_active_uploads_are_kept() {
        let c = trusted_cache();
        for status in UploadStatus::ALL
            .into_iter()
            .filter(|s| *s != UploadStatus::Active)
        {
            let u = upload(status);
            c.fill(c.epoch(), &u);
            assert!(c.get(u.id).is_none(), "{status:?} was kept");
        }
    }

    #[test]
    fn a_lost_connection_empties_it_and_nothing_is_filled_until_it_listens_again() {
        let c = trusted_cache();
        let u = upload(UploadStatus::Active);
        let before = c.epoch();
        c.fill(before, &u);
        c.listening(false);
        assert!(c.is_empty());
        c.fill(before, &u);
        assert!(c.get(u.id).is_none());
        c.listening(true);
        c.fill(before, &u); // noted before the reconnection: refused
        assert!(c.is_empty());
    }

    #[test]
    fn silence_longer_than_stale_after_bypasses_it() {
        let c = trusted_cache();
        let u = upload(UploadStatus::Active);
        c.fill(c.epoch(), &u);
        c.state().heard = Some(Instant::now() - STALE_AFTER);
        assert!(c.get(u.id).is_none());
        assert!(c.epoch().0.is_none());
        c.heard(Heard::Other);
        assert!(c.get(u.id).is_some());
    }

    #[test]
    fn it_never_holds_more_than_its_capacity() {
        let c = UploadCache::new(3);
        c.listening(true);
        for _ in 0..10 {
            c.fill(c.epoch(), &upload(UploadStatus::Active));
            assert!(c.len() <= 3);
        }
        let off = UploadCache::new(0);
        off.listening(true);
        off.fill(off.epoch(), &upload(UploadStatus::Active));
        assert!(off.is_empty());
    }
}
