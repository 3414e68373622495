//! All SQL lives here. Functions take an executor so they work inside a
//! transaction. A state change is a conditional UPDATE: no row back means
//! someone else got there first.

use crate::domain::checksum::ChecksumAlgorithm;
use crate::domain::object_key::ObjectKey;
use crate::domain::part_plan::PartPlan;
use crate::domain::upload::{Origin, StoredPart, Upload, UploadStatus};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::PgExecutor;
use std::collections::BTreeMap;
use std::time::Duration;
use uuid::Uuid;

/// What the provider says of a finished object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FinishedObject {
    pub etag: String,
    pub checksum: Option<String>,
    pub size: Option<u64>,
}

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A database failure.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The database cannot be reached (or the pool timed out waiting for it).
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// A row the broker wrote cannot be read back as an upload.
    #[error("corrupt upload row {id}: {what}")]
    Corrupt { id: Uuid, what: &'static str },
    #[error("database error: {0}")]
    Other(#[source] sqlx::Error),
}

impl From<sqlx::Error> for DbError {
    fn from(e: sqlx::Error) -> Self {
        if is_connection_failure(&e) {
            Self::Unavailable(e)
        } else {
            Self::Other(e)
        }
    }
}

/// Whether an error means the database could not be reached or talked to (the
/// client should retry: 503), rather than that a statement failed. Every
/// connection-level failure counts: refused, reset, a peer that hangs up before
/// the handshake (a proxy or failover in between), TLS, a protocol error, the
/// pool timing out, and the server saying it is shutting down, starting up or
/// out of connections.
pub fn is_connection_failure(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(d) => d.code().is_some_and(|c| {
            // 08: connection exception; 57P01-03: shutdown, crash, cannot connect
            // now; 53300: too many connections.
            c.starts_with("08") || matches!(c.as_ref(), "57P01" | "57P02" | "57P03" | "53300")
        }),
        _ => false,
    }
}

/// A pool that connects lazily, so the broker starts (and answers 503) while
/// the database is down.
pub fn pool(url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy(url)
}

#[derive(sqlx::FromRow)]
struct UploadRow {
    id: Uuid,
    tenant: String,
    status: String,
    bucket: String,
    object_key: String,
    provider_upload_id: String,
    filename: String,
    content_type: String,
    size: Option<i64>,
    part_size: Option<i64>,
    part_count: Option<i32>,
    metadata: sqlx::types::Json<BTreeMap<String, String>>,
    fingerprint_mac: Option<String>,
    origin: String,
    checksum_algorithm: Option<String>,
    etag: Option<String>,
    checksum: Option<String>,
    object_size: Option<i64>,
    completed_parts: Option<sqlx::types::Json<Vec<PartJson>>>,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    lease_until: Option<DateTime<Utc>>,
    claim: Option<Uuid>,
}

#[derive(Serialize, Deserialize)]
struct PartJson {
    n: u32,
    etag: String,
    size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    checksum: Option<String>,
}

impl TryFrom<UploadRow> for Upload {
    type Error = DbError;
    fn try_from(r: UploadRow) -> Result<Self, DbError> {
        let corrupt = |what| DbError::Corrupt { id: r.id, what };
        let status = UploadStatus::parse(&r.status).ok_or_else(|| corrupt("status"))?;
        let plan = match (r.size, r.part_size, r.part_count) {
            (Some(size), Some(part_size), Some(count)) => Some(
                PartPlan::from_stored(
                    u64::try_from(size).map_err(|_| corrupt("size"))?,
                    u64::try_from(part_size).map_err(|_| corrupt("part_size"))?,
                    u32::try_from(count).map_err(|_| corrupt("part_count"))?,
                )
                .ok_or_else(|| corrupt("part plan"))?,
            ),
            (None, None, None) => None,
            _ => return Err(corrupt("part plan")),
        };
        Ok(Upload {
            id: r.id,
            tenant: r.tenant,
            status,
            bucket: r.bucket,
            key: ObjectKey::from_stored(r.object_key),
            provider_upload_id: r.provider_upload_id,
            filename: r.filename,
            content_type: r.content_type,
            plan,
            metadata: r.metadata.0,
            fingerprint_mac: r.fingerprint_mac,
            origin: Origin::parse(&r.origin).ok_or_else(|| corrupt("origin"))?,
            checksum_algorithm: match r.checksum_algorithm {
                Some(a) => Some(
                    ChecksumAlgorithm::parse(&a).ok_or_else(|| corrupt("checksum_algorithm"))?,
                ),
                None => None,
            },
            etag: r.etag,
            checksum: r.checksum,
            object_size: r.object_size.and_then(|n| u64::try_from(n).ok()),
            completed_parts: r.completed_parts.map(|j| {
                j.0.into_iter()
                    .map(|p| StoredPart {
                        part_number: p.n,
                        etag: p.etag,
                        size: p.size,
                        checksum: p.checksum,
                    })
                    .collect()
            }),
            created_at: r.created_at,
            expires_at: r.expires_at,
            lease_until: r.lease_until,
            claim: r.claim,
        })
    }
}

fn one(row: Option<UploadRow>) -> Result<Option<Upload>, DbError> {
    row.map(Upload::try_from).transpose()
}

const COLUMNS: &str = "id, tenant, status, bucket, object_key, provider_upload_id, filename, \
    content_type, size, part_size, part_count, metadata, fingerprint_mac, origin, checksum_algorithm, \
    etag, checksum, object_size, completed_parts, created_at, expires_at, lease_until, claim";

pub async fn insert_upload(db: impl PgExecutor<'_>, u: &Upload) -> Result<(), DbError> {
    sqlx::query(
        "insert into uploads (id, tenant, status, bucket, object_key, provider_upload_id, \
         filename, content_type, size, part_size, part_count, metadata, fingerprint_mac, \
         created_at, expires_at, checksum_algorithm, origin) \
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
    )
    .bind(u.id)
    .bind(&u.tenant)
    .bind(u.status.as_str())
    .bind(&u.bucket)
    .bind(u.key.as_str())
    .bind(&u.provider_upload_id)
    .bind(&u.filename)
    .bind(&u.content_type)
    .bind(u.plan.map(|p| p.size() as i64))
    .bind(u.plan.map(|p| p.part_size() as i64))
    .bind(u.plan.map(|p| p.part_count() as i32))
    .bind(sqlx::types::Json(&u.metadata))
    .bind(&u.fingerprint_mac)
    .bind(u.created_at)
    .bind(u.expires_at)
    .bind(u.checksum_algorithm.map(|a| a.as_str()))
    .bind(u.origin.as_str())
    .execute(db)
    .await?;
    Ok(())
}

pub async fn get_upload(db: impl PgExecutor<'_>, id: Uuid) -> Result<Option<Upload>, DbError> {
    let row =
        sqlx::query_as::<_, UploadRow>(&format!("select {COLUMNS} from uploads where id = $1"))
            .bind(id)
            .fetch_optional(db)
            .await?;
    one(row)
}

/// Who may write an upload's next status: the row must still have `status` and
/// be held by `claim` (`None` for statuses nobody holds, such as `active`). A
/// claimant whose lease ran out and whose row was claimed since matches nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fence {
    pub status: UploadStatus,
    pub claim: Option<Uuid>,
}

impl Fence {
    /// The upload as it was read (or as its claim returned it).
    pub fn of(u: &Upload) -> Self {
        Self {
            status: u.status,
            claim: u.claim,
        }
    }
}

const FENCED: &str = "id = $1 and status = $2 and claim is not distinct from $3";

fn until(now: DateTime<Utc>, lease: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::minutes(5))
}

/// Takes the right to complete: an unexpired `active` upload, or a `completing`
/// one whose completer's lease ran out (it asked before expiry). The claim is
/// fresh: the previous completer's writes no longer match.
pub async fn claim_completion(
    db: impl PgExecutor<'_>,
    id: Uuid,
    now: DateTime<Utc>,
    lease: Duration,
) -> Result<Option<Upload>, DbError> {
    let row = sqlx::query_as::<_, UploadRow>(&format!(
        "update uploads set status = 'completing', lease_until = $3, claim = gen_random_uuid(), \
         updated_at = now() \
         where id = $1 \
           and ((status = 'active' and expires_at > $2) \
                or (status = 'completing' and lease_until <= $2)) \
         returning {COLUMNS}"
    ))
    .bind(id)
    .bind(now)
    .bind(until(now, lease))
    .fetch_optional(db)
    .await?;
    one(row)
}

/// Takes the right to abort: an unexpired `active` upload, or an `aborting` one
/// (aborting at the provider again is harmless: its provider abort is idempotent).
pub async fn claim_abort(
    db: impl PgExecutor<'_>,
    id: Uuid,
    now: DateTime<Utc>,
    lease: Duration,
) -> Result<Option<Upload>, DbError> {
    let row = sqlx::query_as::<_, UploadRow>(&format!(
        "update uploads set status = 'aborting', lease_until = $3, claim = gen_random_uuid(), \
         updated_at = now() \
         where id = $1 and ((status = 'active' and expires_at > $2) or status = 'aborting') \
         returning {COLUMNS}"
    ))
    .bind(id)
    .bind(now)
    .bind(until(now, lease))
    .fetch_optional(db)
    .await?;
    one(row)
}

/// Extends a claim's lease; false if the claim is no longer held.
pub async fn renew_lease(
    db: impl PgExecutor<'_>,
    id: Uuid,
    fence: Fence,
    now: DateTime<Utc>,
    lease: Duration,
) -> Result<bool, DbError> {
    let r = sqlx::query(&format!(
        "update uploads set lease_until = $4 where {FENCED} and claim is not null"
    ))
    .bind(id)
    .bind(fence.status.as_str())
    .bind(fence.claim)
    .bind(until(now, lease))
    .execute(db)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// `→ completed`, recording the object's ETag, checksum and size, its parts, and
/// the plan an upload without a declared size turned out to have. Only
/// [`crate::broker::record`] calls it.
pub async fn record_completed(
    db: impl PgExecutor<'_>,
    id: Uuid,
    fence: Fence,
    object: &FinishedObject,
    parts: &[StoredPart],
    now: DateTime<Utc>,
    learned: Option<PartPlan>,
) -> Result<Option<Upload>, DbError> {
    let parts: Vec<PartJson> = parts
        .iter()
        .map(|p| PartJson {
            n: p.part_number,
            etag: p.etag.clone(),
            size: p.size,
            checksum: p.checksum.clone(),
        })
        .collect();
    let row = sqlx::query_as::<_, UploadRow>(&format!(
        "update uploads set status = 'completed', etag = $4, completed_parts = $5, \
         completed_at = $6, lease_until = null, claim = null, updated_at = now(), checksum = $7, \
         object_size = $8, size = coalesce(size, $9), part_size = coalesce(part_size, $10), \
         part_count = coalesce(part_count, $11) \
         where {FENCED} returning {COLUMNS}"
    ))
    .bind(id)
    .bind(fence.status.as_str())
    .bind(fence.claim)
    .bind(&object.etag)
    .bind(sqlx::types::Json(parts))
    .bind(now)
    .bind(&object.checksum)
    .bind(object.size.map(|n| n as i64))
    .bind(learned.map(|p| p.size() as i64))
    .bind(learned.map(|p| p.part_size() as i64))
    .bind(learned.map(|p| p.part_count() as i32))
    .fetch_optional(db)
    .await?;
    one(row)
}

/// `completing → active`: the completion failed and may be tried again. Only
/// the claim's holder can release it.
pub async fn release_completion(
    db: impl PgExecutor<'_>,
    id: Uuid,
    claim: Uuid,
) -> Result<bool, DbError> {
    let r = sqlx::query(
        "update uploads set status = 'active', lease_until = null, claim = null, updated_at = now() \
         where id = $1 and status = 'completing' and claim = $2",
    )
    .bind(id)
    .bind(claim)
    .execute(db)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// `→ aborted` (from the claim of an abort). Only [`crate::broker::record`] calls it.
pub async fn record_aborted(
    db: impl PgExecutor<'_>,
    id: Uuid,
    fence: Fence,
) -> Result<Option<Upload>, DbError> {
    let row = sqlx::query_as::<_, UploadRow>(&format!(
        "update uploads set status = 'aborted', lease_until = null, claim = null, updated_at = now() \
         where {FENCED} returning {COLUMNS}"
    ))
    .bind(id)
    .bind(fence.status.as_str())
    .bind(fence.claim)
    .fetch_optional(db)
    .await?;
    one(row)
}

/// `→ expired` (the sweep's claim, or the provider no longer has the upload).
/// Only [`crate::broker::record`] calls it.
pub async fn record_expired(
    db: impl PgExecutor<'_>,
    id: Uuid,
    fence: Fence,
) -> Result<Option<Upload>, DbError> {
    let row = sqlx::query_as::<_, UploadRow>(&format!(
        "update uploads set status = 'expired', lease_until = null, claim = null, updated_at = now() \
         where {FENCED} returning {COLUMNS}"
    ))
    .bind(id)
    .bind(fence.status.as_str())
    .bind(fence.claim)
    .fetch_optional(db)
    .await?;
    one(row)
}

/// Deletes a row: only for undoing an insert whose upload could not be set up.
pub async fn delete_upload(db: impl PgExecutor<'_>, id: Uuid) -> Result<(), DbError> {
    sqlx::query("delete from uploads where id = $1")
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}

pub async fn ping(db: impl PgExecutor<'_>) -> Result<(), DbError> {
    sqlx::query("select 1").execute(db).await?;
    Ok(())
}

// ------------------------------------------------------------------ sweep

/// Claims up to `limit` uploads to expire: `active` past expiry, and `expiring`
/// or `completing` rows past expiry whose claimer's lease ran out (a sweep or a
/// completer that died). Rows locked by another sweeper are skipped, so
/// concurrent sweeps never work on the same upload. Returns each upload with
/// the status it had before the claim.
pub async fn claim_expired(
    db: impl PgExecutor<'_>,
    now: DateTime<Utc>,
    lease: Duration,
    limit: i64,
) -> Result<Vec<(Upload, UploadStatus)>, DbError> {
    let lease_until =
        now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::minutes(5));
    let cols = COLUMNS
        .split(", ")
        .map(|c| format!("u.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let rows = sqlx::query_as::<_, ClaimedRow>(&format!(
        "with c as ( \
           select id, status as prev_status from uploads \
           where expires_at <= $1 \
             and (status = 'active' \
                  or (status in ('expiring', 'completing') and lease_until <= $1)) \
           order by expires_at \
           limit $3 \
           for update skip locked) \
         update uploads u set status = 'expiring', lease_until = $2, claim = gen_random_uuid(), \
         updated_at = now() \
         from c where u.id = c.id \
         returning {cols}, c.prev_status"
    ))
    .bind(now)
    .bind(lease_until)
    .bind(limit)
    .fetch_all(db)
    .await?;
    rows.into_iter()
        .map(|r| {
            let prev = UploadStatus::parse(&r.prev_status).ok_or(DbError::Corrupt {
                id: r.row.id,
                what: "status",
            })?;
            Ok((Upload::try_from(r.row)?, prev))
        })
        .collect()
}

#[derive(sqlx::FromRow)]
struct ClaimedRow {
    #[sqlx(flatten)]
    row: UploadRow,
    prev_status: String,
}

/// What a sweep would claim now, without claiming it (dry runs).
pub async fn list_expired(
    db: impl PgExecutor<'_>,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<Upload>, DbError> {
    let rows = sqlx::query_as::<_, UploadRow>(&format!(
        "select {COLUMNS} from uploads \
         where expires_at <= $1 \
           and (status = 'active' or (status in ('expiring', 'completing') and lease_until <= $1)) \
         order by expires_at limit $2"
    ))
    .bind(now)
    .bind(limit)
    .fetch_all(db)
    .await?;
    rows.into_iter().map(Upload::try_from).collect()
}

/// Claims up to `limit` aborts whose claimant's provider call failed or died
/// (`aborting` past its lease), with a fresh claim, for the sweep to finish.
pub async fn claim_stale_aborts(
    db: impl PgExecutor<'_>,
    now: DateTime<Utc>,
    lease: Duration,
    limit: i64,
) -> Result<Vec<Upload>, DbError> {
    let rows = sqlx::query_as::<_, UploadRow>(&format!(
        "with c as ( \
           select id from uploads where status = 'aborting' and lease_until <= $1 \
           order by lease_until limit $3 for update skip locked) \
         update uploads u set lease_until = $2, claim = gen_random_uuid(), updated_at = now() \
         from c where u.id = c.id returning {}",
        COLUMNS
            .split(", ")
            .map(|c| format!("u.{c}"))
            .collect::<Vec<_>>()
            .join(", ")
    ))
    .bind(now)
    .bind(until(now, lease))
    .bind(limit)
    .fetch_all(db)
    .await?;
    rows.into_iter().map(Upload::try_from).collect()
}

/// Deletes up to `limit` finished rows (completed, aborted, expired) last
/// changed before `cutoff`.
pub async fn delete_finished(
    db: impl PgExecutor<'_>,
    cutoff: DateTime<Utc>,
    limit: i64,
) -> Result<u64, DbError> {
    let r = sqlx::query(
        "delete from uploads where id in ( \
           select id from uploads \
           where status in ('completed', 'aborted', 'expired') and updated_at < $1 \
           limit $2 for update skip locked)",
    )
    .bind(cutoff)
    .bind(limit)
    .execute(db)
    .await?;
    Ok(r.rows_affected())
}

/// How many finished rows a retention pass would delete (dry runs).
pub async fn count_finished(
    db: impl PgExecutor<'_>,
    cutoff: DateTime<Utc>,
) -> Result<u64, DbError> {
    let n: i64 = sqlx::query_scalar(
        "select count(*) from uploads \
         where status in ('completed', 'aborted', 'expired') and updated_at < $1",
    )
    .bind(cutoff)
    .fetch_one(db)
    .await?;
    Ok(n as u64)
}

/// Which of these provider upload ids the broker has a record of.
pub async fn known_provider_upload_ids(
    db: impl PgExecutor<'_>,
    bucket: &str,
    ids: &[String],
) -> Result<std::collections::HashSet<String>, DbError> {
    let rows: Vec<String> = sqlx::query_scalar(
        "select provider_upload_id from uploads where bucket = $1 and provider_upload_id = any($2)",
    )
    .bind(bucket)
    .bind(ids)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().collect())
}

/// A tenant's active, unexpired uploads created with a fingerprint (its keyed
/// hash), newest first.
pub async fn find_by_fingerprint(
    db: impl PgExecutor<'_>,
    tenant: &str,
    fingerprint_mac: &str,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<Upload>, DbError> {
    let rows = sqlx::query_as::<_, UploadRow>(&format!(
        "select {COLUMNS} from uploads \
         where tenant = $1 and fingerprint_mac = $2 and status = 'active' and expires_at > $3 \
         order by created_at desc, id desc limit $4"
    ))
    .bind(tenant)
    .bind(fingerprint_mac)
    .bind(now)
    .bind(limit)
    .fetch_all(db)
    .await?;
    rows.into_iter().map(Upload::try_from).collect()
}

/// The upload created through the Companion-compatible routes with this
/// provider upload id in `bucket`, if any (never a native upload).
pub async fn get_companion_upload(
    db: impl PgExecutor<'_>,
    bucket: &str,
    provider_upload_id: &str,
) -> Result<Option<Upload>, DbError> {
    let row = sqlx::query_as::<_, UploadRow>(&format!(
        "select {COLUMNS} from uploads \
         where bucket = $1 and provider_upload_id = $2 and origin = 'companion'"
    ))
    .bind(bucket)
    .bind(provider_upload_id)
    .fetch_optional(db)
    .await?;
    one(row)
}

/// Creates the database `url` names if it does not exist yet (so a fresh
/// deployment needs no manual `createdb`). Errors are left to the connection
/// that follows, which reports them.
pub async fn create_database_if_missing(url: &str) {
    use sqlx::migrate::MigrateDatabase;
    match sqlx::Postgres::database_exists(url).await {
        Ok(false) => match sqlx::Postgres::create_database(url).await {
            Ok(()) => tracing::info!("created the database named in DATABASE_URL"),
            Err(e) => {
                tracing::warn!(error = %e, "could not create the database named in DATABASE_URL")
            }
        },
        Ok(true) => {}
        Err(e) => tracing::debug!(error = %e, "could not check whether the database exists"),
    }
}
