//! The one writer of each status change. Every path that records an upload
//! `completed`, `aborted` or `expired` (the routes, the recovery of a completion
//! that got through before a crash, the sweep) goes through these functions:
//! a fenced conditional UPDATE and its event in one transaction, the metric,
//! the log line. `Ok(None)` means the fence no longer matched: someone else
//! holds or settled the upload (and wrote the event).

use crate::db::{self, DbError, Fence, FinishedObject};
use crate::domain::event::NewEvent;
use crate::domain::part_plan::PartPlan;
use crate::domain::upload::{StoredPart, Upload};
use crate::storage::{ObjectInfo, Storage, StorageError};
use chrono::Utc;
use sqlx::PgPool;

/// How a completion came to be recorded (for the log).
#[derive(Debug, Clone, Copy)]
pub enum CompletedBy {
    /// A `complete` call's own CompleteMultipartUpload.
    Complete,
    /// An earlier CompleteMultipartUpload that got through before its record
    /// was written (a crash, a lost lease), found by HeadObject.
    Recovery,
    /// The sweep found the object of an upload it was about to expire.
    Sweep,
}

impl CompletedBy {
    /// The event's `completedBy`: every way there is today completes (or
    /// recovers the completion of) a client's `complete` call.
    pub fn api_name(self) -> &'static str {
        match self {
            Self::Complete | Self::Recovery | Self::Sweep => "client",
        }
    }
}

/// `→ completed`.
pub async fn completed(
    db: &PgPool,
    upload: &Upload,
    fence: Fence,
    object: &FinishedObject,
    parts: &[StoredPart],
    learned: Option<PartPlan>,
    by: CompletedBy,
) -> Result<Option<Upload>, DbError> {
    let now = Utc::now();
    let mut tx = db.begin().await?;
    let done =
        db::record_completed(&mut *tx, upload.id, fence, object, parts, now, learned).await?;
    let done = with_event_by(tx, done, Some(by)).await?;
    if let Some(d) = &done {
        let bytes = d.object_size.or(d.plan.map(|p| p.size())).unwrap_or(0);
        tracing::info!(upload_id = %d.id, ?by, parts = parts.len(), bytes, "upload completed");
        crate::metrics::upload_completed(bytes);
    }
    Ok(done)
}

/// Writes the event of a change made in `tx` (if it was made) and commits both:
/// a status change is never recorded without its event, nor an event without
/// its change. Wakes this process's delivery workers.
async fn with_event(
    tx: sqlx::Transaction<'_, sqlx::Postgres>,
    changed: Option<Upload>,
) -> Result<Option<Upload>, DbError> {
    with_event_by(tx, changed, None).await
}

/// As [`with_event`]; a completion's event names who completed it.
async fn with_event_by(
    mut tx: sqlx::Transaction<'_, sqlx::Postgres>,
    changed: Option<Upload>,
    by: Option<CompletedBy>,
) -> Result<Option<Upload>, DbError> {
    let Some(u) = changed else {
        return Ok(None);
    };
    if let Some(mut e) = NewEvent::of(&u, Utc::now()) {
        if let (Some(c), Some(by)) = (e.data.completed.as_mut(), by) {
            c.completed_by = by.api_name().to_string();
        }
        db::insert_event(&mut *tx, &e).await?;
    }
    tx.commit().await?;
    crate::events::wake();
    Ok(Some(u))
}

/// `aborting → aborted`, once the provider no longer has the upload.
pub async fn aborted(
    db: &PgPool,
    upload: &Upload,
    fence: Fence,
) -> Result<Option<Upload>, DbError> {
    let mut tx = db.begin().await?;
    let done = db::record_aborted(&mut *tx, upload.id, fence).await?;
    let done = with_event(tx, done).await?;
    if done.is_some() {
        tracing::info!(upload_id = %upload.id, "upload aborted");
        crate::metrics::upload_aborted();
    }
    Ok(done)
}

/// Why an upload expired (the metric's `reason`).
#[derive(Debug, Clone, Copy)]
pub enum ExpiredBy {
    /// The sweep aborted it past its expiry.
    Sweep,
    /// The provider no longer had it (aborted behind the broker's back, R2's
    /// 7-day rule, a lifecycle rule), or its object was unusable.
    ProviderGone,
}

/// `→ expired`.
pub async fn expired(
    db: &PgPool,
    upload: &Upload,
    fence: Fence,
    by: ExpiredBy,
) -> Result<Option<Upload>, DbError> {
    let mut tx = db.begin().await?;
    let done = db::record_expired(&mut *tx, upload.id, fence).await?;
    let done = with_event(tx, done).await?;
    if done.is_some() {
        let reason = match by {
            ExpiredBy::Sweep => "sweep",
            ExpiredBy::ProviderGone => "provider_gone",
        };
        tracing::info!(upload_id = %upload.id, reason, "upload expired");
        crate::metrics::upload_expired(reason);
    }
    Ok(done)
}

/// What became of an upload the provider no longer has as a multipart upload.
#[derive(Debug)]
pub enum Settled {
    /// Its object is there with the planned size: a completion got through.
    Completed(Box<Upload>),
    /// There is no usable object: the upload is gone, recorded `expired`.
    Expired,
    /// The fence no longer matched: someone else moved the upload first.
    Moved,
}

#[derive(Debug, thiserror::Error)]
pub enum SettleError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// The one reaction to NoSuchUpload, wherever it is met (ListParts, Complete,
/// Abort in the sweep): look for the object. With the planned size, an earlier
/// completion got through: record it. Without it (or with another size, which
/// is deleted, so that the bucket holds no object that no completed record
/// accounts for), the upload is gone: record it expired.
pub async fn settle_gone(
    db: &PgPool,
    storage: &Storage,
    upload: &Upload,
    fence: Fence,
    by: CompletedBy,
) -> Result<Settled, SettleError> {
    let found = storage.head_object(&upload.key).await?;
    match found {
        Some(obj) if fits(upload, &obj) => Ok(found_completed(db, upload, fence, obj, by)
            .await?
            .map_or(Settled::Moved, |u| Settled::Completed(Box::new(u)))),
        other => Ok(unusable(db, storage, upload, fence, other.as_ref())
            .await?
            .map_or(Settled::Moved, |_| Settled::Expired)),
    }
}

/// Whether an object found at an upload's key is that upload's (its planned size).
pub fn fits(upload: &Upload, obj: &ObjectInfo) -> bool {
    upload.plan.is_none_or(|p| obj.size == p.size())
}

/// An earlier CompleteMultipartUpload got through (a crash, a lost lease): the
/// object `obj`, which [`fits`] the upload, is recorded as its completion.
pub async fn found_completed(
    db: &PgPool,
    upload: &Upload,
    fence: Fence,
    obj: ObjectInfo,
    by: CompletedBy,
) -> Result<Option<Upload>, DbError> {
    tracing::warn!(upload_id = %upload.id, "the provider upload was already completed; recording it");
    let object = FinishedObject {
        etag: obj.etag,
        checksum: None,
        size: Some(obj.size),
    };
    completed(db, upload, fence, &object, &[], None, by).await
}

/// The provider upload is gone and `found` (the object at its key, if any) is
/// not the upload's: the object is deleted, so that the bucket holds nothing
/// no completed record accounts for, and the upload is recorded expired.
pub async fn unusable(
    db: &PgPool,
    storage: &Storage,
    upload: &Upload,
    fence: Fence,
    found: Option<&ObjectInfo>,
) -> Result<Option<Upload>, SettleError> {
    match found {
        Some(obj) => {
            tracing::error!(upload_id = %upload.id, size = obj.size, expected = ?upload.plan.map(|p| p.size()),
                "the upload's object has the wrong size; deleting it and expiring the upload");
            storage.delete_object(&upload.key).await?;
        }
        None => {
            tracing::warn!(upload_id = %upload.id, "the storage provider no longer has this upload; marking it expired")
        }
    }
    Ok(expired(db, upload, fence, ExpiredBy::ProviderGone).await?)
}

impl From<SettleError> for crate::error::ApiError {
    fn from(e: SettleError) -> Self {
        match e {
            SettleError::Db(e) => e.into(),
            SettleError::Storage(e) => e.into(),
        }
    }
}
