//! All SQL lives here. Functions take an executor so they work inside a
//! transaction. A state change is a conditional UPDATE: no row back means
//! someone else got there first.

use crate::domain::checksum::ChecksumAlgorithm;
use crate::domain::object_key::ObjectKey;
use crate::domain::part_plan::PartPlan;
use crate::domain::upload::{StoredPart, Upload, UploadStatus};
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
        match &e {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_) => Self::Unavailable(e),
            _ => Self::Other(e),
        }
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
    fingerprint: Option<String>,
    checksum_algorithm: Option<String>,
    etag: Option<String>,
    checksum: Option<String>,
    object_size: Option<i64>,
    completed_parts: Option<sqlx::types::Json<Vec<PartJson>>>,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    lease_until: Option<DateTime<Utc>>,
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
            fingerprint: r.fingerprint,
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
        })
    }
}

fn one(row: Option<UploadRow>) -> Result<Option<Upload>, DbError> {
    row.map(Upload::try_from).transpose()
}

const COLUMNS: &str = "id, tenant, status, bucket, object_key, provider_upload_id, filename, \
    content_type, size, part_size, part_count, metadata, fingerprint, checksum_algorithm, etag, \
    checksum, object_size, completed_parts, created_at, expires_at, lease_until";

pub async fn insert_upload(db: impl PgExecutor<'_>, u: &Upload) -> Result<(), DbError> {
    sqlx::query(
        "insert into uploads (id, tenant, status, bucket, object_key, provider_upload_id, \
         filename, content_type, size, part_size, part_count, metadata, fingerprint, \
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
    .bind(&u.fingerprint)
    .bind(u.created_at)
    .bind(u.expires_at)
    .bind(u.checksum_algorithm.map(|a| a.as_str()))
    .bind(if u.plan.is_some() {
        "native"
    } else {
        "companion"
    })
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

/// Takes the right to complete: an unexpired `active` upload, or a `completing`
/// one whose completer's lease ran out (it asked before expiry).
pub async fn claim_completion(
    db: impl PgExecutor<'_>,
    id: Uuid,
    now: DateTime<Utc>,
    lease: Duration,
) -> Result<Option<Upload>, DbError> {
    let lease_until =
        now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::minutes(5));
    let row = sqlx::query_as::<_, UploadRow>(&format!(
        "update uploads set status = 'completing', lease_until = $3, updated_at = now() \
         where id = $1 \
           and ((status = 'active' and expires_at > $2) \
                or (status = 'completing' and lease_until <= $2)) \
         returning {COLUMNS}"
    ))
    .bind(id)
    .bind(now)
    .bind(lease_until)
    .fetch_optional(db)
    .await?;
    one(row)
}

/// `from → completed` (from `completing`, or from `expiring` when the sweep
/// finds the object was completed), recording the object's ETag and its parts.
pub async fn finish_completion(
    db: impl PgExecutor<'_>,
    id: Uuid,
    from: UploadStatus,
    object: &FinishedObject,
    parts: &[StoredPart],
    now: DateTime<Utc>,
) -> Result<Option<Upload>, DbError> {
    finish_completion_with_plan(db, id, from, object, parts, now, None).await
}

/// As [`finish_completion`], also recording the plan that an upload without a
/// declared size turned out to have.
pub async fn finish_completion_with_plan(
    db: impl PgExecutor<'_>,
    id: Uuid,
    from: UploadStatus,
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
        "update uploads set status = 'completed', etag = $2, completed_parts = $3, \
         completed_at = $4, lease_until = null, updated_at = now(), checksum = $6, object_size = $7, \
         size = coalesce(size, $8), part_size = coalesce(part_size, $9), part_count = coalesce(part_count, $10) \
         where id = $1 and status = $5 returning {COLUMNS}"
    ))
    .bind(id)
    .bind(&object.etag)
    .bind(sqlx::types::Json(parts))
    .bind(now)
    .bind(from.as_str())
    .bind(&object.checksum)
    .bind(object.size.map(|n| n as i64))
    .bind(learned.map(|p| p.size() as i64))
    .bind(learned.map(|p| p.part_size() as i64))
    .bind(learned.map(|p| p.part_count() as i32))
    .fetch_optional(db)
    .await?;
    one(row)
}

/// `completing → active`: the completion failed and may be tried again.
pub async fn release_completion(db: impl PgExecutor<'_>, id: Uuid) -> Result<(), DbError> {
    sqlx::query(
        "update uploads set status = 'active', lease_until = null, updated_at = now() \
         where id = $1 and status = 'completing'",
    )
    .bind(id)
    .execute(db)
    .await?;
    Ok(())
}

/// `active → aborted`.
pub async fn mark_aborted(db: impl PgExecutor<'_>, id: Uuid) -> Result<Option<Upload>, DbError> {
    let row = sqlx::query_as::<_, UploadRow>(&format!(
        "update uploads set status = 'aborted', updated_at = now() \
         where id = $1 and status = 'active' returning {COLUMNS}"
    ))
    .bind(id)
    .fetch_optional(db)
    .await?;
    one(row)
}

/// `from → expired` (the provider no longer has the upload).
pub async fn mark_expired(
    db: impl PgExecutor<'_>,
    id: Uuid,
    from: UploadStatus,
) -> Result<Option<Upload>, DbError> {
    let row = sqlx::query_as::<_, UploadRow>(&format!(
        "update uploads set status = 'expired', lease_until = null, updated_at = now() \
         where id = $1 and status = $2 returning {COLUMNS}"
    ))
    .bind(id)
    .bind(from.as_str())
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
         update uploads u set status = 'expiring', lease_until = $2, updated_at = now() \
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

/// `expiring → expired`, once the provider no longer has the upload.
pub async fn finish_expired(db: impl PgExecutor<'_>, id: Uuid) -> Result<bool, DbError> {
    let r = sqlx::query(
        "update uploads set status = 'expired', lease_until = null, updated_at = now() \
         where id = $1 and status = 'expiring'",
    )
    .bind(id)
    .execute(db)
    .await?;
    Ok(r.rows_affected() == 1)
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

/// A tenant's active, unexpired uploads created with a fingerprint, newest first.
pub async fn find_by_fingerprint(
    db: impl PgExecutor<'_>,
    tenant: &str,
    fingerprint: &str,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<Upload>, DbError> {
    let rows = sqlx::query_as::<_, UploadRow>(&format!(
        "select {COLUMNS} from uploads \
         where tenant = $1 and fingerprint = $2 and status = 'active' and expires_at > $3 \
         order by created_at desc, id desc limit $4"
    ))
    .bind(tenant)
    .bind(fingerprint)
    .bind(now)
    .bind(limit)
    .fetch_all(db)
    .await?;
    rows.into_iter().map(Upload::try_from).collect()
}

/// The upload with this provider upload id in `bucket`, if any.
pub async fn get_by_provider_upload_id(
    db: impl PgExecutor<'_>,
    bucket: &str,
    provider_upload_id: &str,
) -> Result<Option<Upload>, DbError> {
    let row = sqlx::query_as::<_, UploadRow>(&format!(
        "select {COLUMNS} from uploads where bucket = $1 and provider_upload_id = $2"
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
