//! The sweep: aborts expired uploads at the provider, finishes what a crashed
//! sweep or completer left, deletes old finished records, and (on request)
//! aborts orphaned provider uploads the database does not know.
//!
//! Database first, then storage, safe to re-run: a batch is claimed with
//! `FOR UPDATE SKIP LOCKED` and moved to `expiring` (with a lease) before the
//! provider is called, and only then marked `expired`. A crash anywhere leaves
//! rows that the next run finishes; several sweepers never share an upload.

use crate::broker::record::{self, CompletedBy, ExpiredBy, SettleError, Settled};
use crate::db::{self, DbError, Fence};
use crate::domain::upload::{Upload, UploadStatus};
use crate::storage::{AbortOutcome, Storage, StorageError};
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use std::time::Duration;

mod report;

pub use report::SweepReport;

pub use crate::config::SweepSettings;

#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<SettleError> for SweepError {
    fn from(e: SettleError) -> Self {
        match e {
            SettleError::Db(e) => Self::Db(e),
            SettleError::Storage(e) => Self::Storage(e),
        }
    }
}

/// Options of one run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub dry_run: bool,
    /// Also scan for orphans older than this.
    pub orphans_older_than: Option<Duration>,
}

#[derive(Clone)]
pub struct Sweeper {
    db: PgPool,
    storage: Storage,
    settings: SweepSettings,
}

impl Sweeper {
    pub fn new(db: PgPool, storage: Storage, settings: SweepSettings) -> Self {
        Self {
            db,
            storage,
            settings,
        }
    }

    /// One batch: claim expired uploads, abort them at the provider, record the
    /// outcome. Returns how many were claimed and what became of them.
    pub async fn expire_step(
        &self,
        now: DateTime<Utc>,
    ) -> Result<(usize, SweepReport), SweepError> {
        let claimed =
            db::claim_expired(&self.db, now, self.settings.lease, self.settings.batch_size).await?;
        let n = claimed.len();
        let mut report = SweepReport::default();
        // The provider calls of a batch run concurrently, a bounded number at a time.
        let mut tasks = tokio::task::JoinSet::new();
        for (upload, previous) in claimed {
            while tasks.len() >= ABORT_CONCURRENCY {
                tally(&mut report, tasks.join_next().await);
            }
            let this = self.clone();
            tasks.spawn(async move {
                let r = this.expire_one(&upload, previous).await;
                (upload.id, r)
            });
        }
        while !tasks.is_empty() {
            tally(&mut report, tasks.join_next().await);
        }
        Ok((n, report))
    }

    async fn expire_one(
        &self,
        upload: &Upload,
        previous: UploadStatus,
    ) -> Result<Outcome, SweepError> {
        let storage = self.storage.with_bucket(upload.bucket.clone());
        let fence = Fence::of(upload);
        if previous == UploadStatus::Completing {
            // A completer died (its lease ran out, so no call of its is still in
            // flight): its CompleteMultipartUpload may have gone through.
            if let Some(done) = self.completed_already(&storage, upload, fence).await? {
                return Ok(done);
            }
        }
        match storage
            .abort_multipart_upload(&upload.key, &upload.provider_upload_id)
            .await?
        {
            AbortOutcome::Aborted => {
                record::expired(&self.db, upload, fence, ExpiredBy::Sweep).await?;
                Ok(Outcome::Aborted)
            }
            // Gone: aborted elsewhere, or completed. Never lose an object.
            AbortOutcome::AlreadyGone => self.settle(&storage, upload, fence).await,
        }
    }

    /// If a completion of `upload` got through (its object is there, of the
    /// size its parts make), records it: the outcome, or `None` to go on.
    async fn completed_already(
        &self,
        storage: &Storage,
        upload: &Upload,
        fence: Fence,
    ) -> Result<Option<Outcome>, SweepError> {
        let Some(obj) = storage.head_object(&upload.key).await? else {
            return Ok(None);
        };
        if !record::fits(upload, &obj) {
            return Ok(None);
        }
        let done =
            record::found_completed(&self.db, upload, fence, obj, CompletedBy::Sweep).await?;
        Ok(Some(
            done.map_or(Outcome::AlreadyGone, |_| Outcome::Completed),
        ))
    }

    /// The one reaction to a provider upload that is gone (as everywhere).
    async fn settle(
        &self,
        storage: &Storage,
        upload: &Upload,
        fence: Fence,
    ) -> Result<Outcome, SweepError> {
        Ok(
            match record::settle_gone(&self.db, storage, upload, fence, CompletedBy::Sweep).await? {
                Settled::Completed(_) => Outcome::Completed,
                Settled::Expired | Settled::Moved => Outcome::AlreadyGone,
            },
        )
    }

    /// One batch of completions whose completer's lease ran out before the
    /// upload expired (the completer died, its client left): the object is
    /// there → recorded completed (with its event); the provider upload is
    /// still there → handed back `active`, to be completed again; neither →
    /// settled as gone.
    pub async fn settle_completions_step(
        &self,
        now: DateTime<Utc>,
    ) -> Result<(usize, SweepReport), SweepError> {
        let claimed = db::claim_lapsed_completions(
            &self.db,
            now,
            self.settings.lease,
            self.settings.batch_size,
        )
        .await?;
        let mut report = SweepReport::default();
        for upload in &claimed {
            match self.settle_completion(upload).await {
                Ok(Outcome::Completed) => report.recovered_completed += 1,
                Ok(Outcome::Released) => report.completions_released += 1,
                Ok(_) => report.already_gone += 1,
                Err(e) => {
                    tracing::warn!(upload_id = %upload.id, error = %e, "sweep could not settle a lapsed completion; will retry");
                    report.failed += 1;
                }
            }
        }
        Ok((claimed.len(), report))
    }

    async fn settle_completion(&self, upload: &Upload) -> Result<Outcome, SweepError> {
        let storage = self.storage.with_bucket(upload.bucket.clone());
        let fence = Fence::of(upload);
        if let Some(done) = self.completed_already(&storage, upload, fence).await? {
            return Ok(done);
        }
        match storage
            .list_parts(&upload.key, &upload.provider_upload_id)
            .await
        {
            Ok(_) => {
                let claim = upload.claim.expect("a claimed row has a claim");
                Ok(
                    if db::release_completion(&self.db, upload.id, claim).await? {
                        tracing::info!(upload_id = %upload.id, "a lapsed completion was handed back: the upload is active again");
                        Outcome::Released
                    } else {
                        Outcome::AlreadyGone
                    },
                )
            }
            Err(StorageError::NoSuchUpload) => self.settle(&storage, upload, fence).await,
            Err(e) => Err(e.into()),
        }
    }

    /// One batch of aborts whose provider call failed (or whose caller died):
    /// `aborting` past its lease. Abort at the provider again, record `aborted`.
    pub async fn abort_step(&self, now: DateTime<Utc>) -> Result<(usize, SweepReport), SweepError> {
        let claimed =
            db::claim_stale_aborts(&self.db, now, self.settings.lease, self.settings.batch_size)
                .await?;
        let mut report = SweepReport::default();
        for upload in &claimed {
            let storage = self.storage.with_bucket(upload.bucket.clone());
            match storage
                .abort_multipart_upload(&upload.key, &upload.provider_upload_id)
                .await
            {
                Ok(_) => {
                    record::aborted(&self.db, upload, Fence::of(upload)).await?;
                    report.aborts_finished += 1;
                }
                Err(e) => {
                    tracing::warn!(upload_id = %upload.id, error = %e, "sweep could not finish an abort; will retry");
                    report.failed += 1;
                }
            }
        }
        Ok((claimed.len(), report))
    }

    /// A whole run: expire in batches until none is left, apply retention, and
    /// scan for orphans if asked. `clock` gives "now" (injected in tests).
    pub async fn run(
        &self,
        clock: impl Fn() -> DateTime<Utc>,
        opts: &RunOptions,
    ) -> Result<SweepReport, SweepError> {
        let mut report = SweepReport {
            dry_run: opts.dry_run,
            ..Default::default()
        };
        let retention = chrono::Duration::from_std(self.settings.retention)
            .unwrap_or(chrono::Duration::days(30));
        if opts.dry_run {
            let now = clock();
            for u in db::list_expired(&self.db, now, 100_000).await? {
                report.planned.push(format!(
                    "would abort expired upload {} (key {}, expired {})",
                    u.id,
                    u.key.as_str(),
                    u.expires_at.to_rfc3339()
                ));
                report.aborted += 1;
            }
            report.deleted = db::count_finished(&self.db, now - retention).await?;
        } else {
            loop {
                let (claimed, step) = self.expire_step(clock()).await?;
                report.add(&step);
                if claimed > 0 {
                    tracing::info!(
                        claimed,
                        aborted = report.aborted,
                        already_gone = report.already_gone,
                        failed = report.failed,
                        "sweep progress"
                    );
                }
                // Failed rows keep their lease, so they are not claimed again in this run.
                if claimed < self.settings.batch_size as usize {
                    break;
                }
            }
            loop {
                let (claimed, step) = self.settle_completions_step(clock()).await?;
                report.add(&step);
                if claimed < self.settings.batch_size as usize {
                    break;
                }
            }
            loop {
                let (claimed, step) = self.abort_step(clock()).await?;
                report.add(&step);
                if claimed < self.settings.batch_size as usize {
                    break;
                }
            }
            db::delete_expired_grant_uses(&self.db, clock()).await?;
            loop {
                let n =
                    db::delete_finished(&self.db, clock() - retention, self.settings.batch_size)
                        .await?;
                report.deleted += n;
                if n < self.settings.batch_size as u64 {
                    break;
                }
            }
            // Events no endpoint still waits for, past the same retention.
            loop {
                let n =
                    db::delete_old_events(&self.db, clock() - retention, self.settings.batch_size)
                        .await?;
                report.events_deleted += n;
                if n < self.settings.batch_size as u64 {
                    break;
                }
            }
        }
        if let Some(grace) = opts.orphans_older_than {
            let orphans = self.scan_orphans(clock(), grace, opts.dry_run).await?;
            report.add(&orphans);
        }
        if !opts.dry_run {
            crate::metrics::sweep_run(
                &[
                    ("aborted", report.aborted),
                    ("already_gone", report.already_gone),
                    ("recovered_completed", report.recovered_completed),
                    ("aborts_finished", report.aborts_finished),
                    ("completions_released", report.completions_released),
                    ("failed", report.failed),
                ],
                report.deleted,
                &[
                    ("found", report.orphans_found),
                    ("aborted", report.orphans_aborted),
                    ("failed", report.orphans_failed),
                ],
            );
        }
        Ok(report)
    }

    /// Provider uploads under the broker's prefix that the database does not
    /// know and that are older than `grace`: reported, and aborted unless dry.
    pub async fn scan_orphans(
        &self,
        now: DateTime<Utc>,
        grace: Duration,
        dry_run: bool,
    ) -> Result<SweepReport, SweepError> {
        let mut report = SweepReport {
            dry_run,
            ..Default::default()
        };
        let cutoff = now - chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::hours(24));
        let in_progress = self
            .storage
            .list_multipart_uploads(&self.settings.key_prefix)
            .await?;
        for chunk in in_progress.chunks(500) {
            let ids: Vec<String> = chunk.iter().map(|u| u.upload_id.clone()).collect();
            let known =
                db::known_provider_upload_ids(&self.db, self.storage.bucket(), &ids).await?;
            for u in chunk {
                // Never outside the prefix, never one we know, never a young one.
                if !u.key.as_str().starts_with(&self.settings.key_prefix)
                    || known.contains(&u.upload_id)
                {
                    continue;
                }
                if u.initiated.is_none_or(|t| t > cutoff) {
                    continue;
                }
                report.orphans_found += 1;
                if dry_run {
                    report.planned.push(format!(
                        "would abort orphaned upload at key {} (initiated {})",
                        u.key.as_str(),
                        u.initiated.map(|t| t.to_rfc3339()).unwrap_or_default()
                    ));
                    continue;
                }
                match self
                    .storage
                    .abort_multipart_upload(&u.key, &u.upload_id)
                    .await
                {
                    Ok(_) => {
                        tracing::info!(key = u.key.as_str(), "orphaned provider upload aborted");
                        report.orphans_aborted += 1;
                    }
                    Err(e) => {
                        tracing::warn!(key = u.key.as_str(), error = %e, "could not abort an orphaned provider upload");
                        report.orphans_failed += 1;
                    }
                }
            }
        }
        Ok(report)
    }
}

enum Outcome {
    Aborted,
    AlreadyGone,
    Completed,
    /// A lapsed completion handed back `active`.
    Released,
}

/// Provider calls in flight at once during a sweep batch.
const ABORT_CONCURRENCY: usize = 16;

type Joined = Option<Result<(uuid::Uuid, Result<Outcome, SweepError>), tokio::task::JoinError>>;

fn tally(report: &mut SweepReport, joined: Joined) {
    match joined {
        Some(Ok((_, Ok(Outcome::Aborted)))) => report.aborted += 1,
        Some(Ok((_, Ok(Outcome::AlreadyGone)))) => report.already_gone += 1,
        Some(Ok((_, Ok(Outcome::Completed)))) => report.recovered_completed += 1,
        Some(Ok((_, Ok(Outcome::Released)))) => report.completions_released += 1,
        Some(Ok((id, Err(e)))) => {
            // Stays `expiring`; the next run takes it again once the lease ends.
            tracing::warn!(upload_id = %id, error = %e, "sweep could not expire an upload; will retry");
            report.failed += 1;
        }
        Some(Err(e)) => {
            tracing::error!(error = %e, "a sweep task failed");
            report.failed += 1;
        }
        None => {}
    }
}

/// The periodic sweep inside `serve`: every `interval` (± 10% jitter, so that
/// instances spread out), until the task is dropped.
pub async fn periodic(sweeper: Sweeper, interval: Duration) {
    loop {
        tokio::time::sleep(jittered(interval)).await;
        match sweeper.run(Utc::now, &RunOptions::default()).await {
            Ok(r) if r == (SweepReport::default()) => {
                tracing::debug!("periodic sweep: nothing to do")
            }
            Ok(r) => tracing::info!(report = ?r, "{}", r.summary()),
            Err(e) => tracing::warn!(error = %e, "periodic sweep failed; will try again"),
        }
    }
}

fn jittered(interval: Duration) -> Duration {
    let mut b = [0u8; 4];
    let r = getrandom::getrandom(&mut b)
        .map(|_| u32::from_le_bytes(b))
        .unwrap_or(0);
    let factor = 0.9 + 0.2 * (r as f64 / u32::MAX as f64);
    interval.mul_f64(factor)
}
