//! The uploads table: rows, the writes of each status change (fenced), lookups.

use super::*;
use crate::domain::request::{ContentType, FileName};

#[derive(sqlx::FromRow)]
pub(super) struct UploadRow {
    pub(super) id: Uuid,
    tenant: String,
    subject: Option<String>,
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
    size_limit: Option<i64>,
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
            subject: r.subject,
            status,
            bucket: r.bucket,
            key: ObjectKey::from_stored(r.object_key),
            provider_upload_id: r.provider_upload_id,
            filename: FileName::parse(r.filename).map_err(|_| corrupt("filename"))?,
            content_type: ContentType::parse(Some(r.content_type))
                .map_err(|_| corrupt("content_type"))?,
            plan,
            metadata: r.metadata.0,
            fingerprint_mac: r.fingerprint_mac,
            origin: Origin::parse(&r.origin).ok_or_else(|| corrupt("origin"))?,
            size_limit: r.size_limit.and_then(|n| u64::try_from(n).ok()),
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

pub(super) fn one(row: Option<UploadRow>) -> Result<Option<Upload>, DbError> {
    row.map(Upload::try_from).transpose()
}

pub(super) const COLUMNS: &str = "id, tenant, subject, status, bucket, object_key, provider_upload_id, filename, \
    content_type, size, part_size, part_count, metadata, fingerprint_mac, origin, size_limit, checksum_algorithm, \
    etag, checksum, object_size, completed_parts, created_at, expires_at, lease_until, claim";

pub async fn insert_upload(db: impl PgExecutor<'_>, u: &Upload) -> Result<(), DbError> {
    sqlx::query(
        "insert into uploads (id, tenant, status, bucket, object_key, provider_upload_id, \
         filename, content_type, size, part_size, part_count, metadata, fingerprint_mac, \
         created_at, expires_at, checksum_algorithm, origin, subject, size_limit) \
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)",
    )
    .bind(u.id)
    .bind(&u.tenant)
    .bind(u.status.as_str())
    .bind(&u.bucket)
    .bind(u.key.as_str())
    .bind(&u.provider_upload_id)
    .bind(u.filename.as_str())
    .bind(u.content_type.as_str())
    .bind(u.plan.map(|p| p.size() as i64))
    .bind(u.plan.map(|p| p.part_size() as i64))
    .bind(u.plan.map(|p| p.part_count() as i32))
    .bind(sqlx::types::Json(&u.metadata))
    .bind(&u.fingerprint_mac)
    .bind(u.created_at)
    .bind(u.expires_at)
    .bind(u.checksum_algorithm.map(|a| a.as_str()))
    .bind(u.origin.as_str())
    .bind(&u.subject)
    .bind(u.size_limit.map(|n| n.min(i64::MAX as u64) as i64))
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

pub(super) fn until(now: DateTime<Utc>, lease: Duration) -> DateTime<Utc> {
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
/// `broker::record` calls it.
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

/// `→ aborted` (from the claim of an abort). Only `broker::record` calls it.
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
/// Only `broker::record` calls it.
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

/// A tenant's active, unexpired uploads created with a fingerprint (its keyed
/// hash), newest first.
pub async fn find_by_fingerprint(
    db: impl PgExecutor<'_>,
    tenant: &str,
    subject: Option<&str>,
    fingerprint_mac: &str,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<Upload>, DbError> {
    let rows = sqlx::query_as::<_, UploadRow>(&format!(
        "select {COLUMNS} from uploads \
         where tenant = $1 and fingerprint_mac = $2 and status = 'active' and expires_at > $3 \
           and ($5::text is null or subject = $5) \
         order by created_at desc, id desc limit $4"
    ))
    .bind(tenant)
    .bind(fingerprint_mac)
    .bind(now)
    .bind(limit)
    .bind(subject)
    .fetch_all(db)
    .await?;
    rows.into_iter().map(Upload::try_from).collect()
}

/// A page of a tenant's (or one subject's) active, unexpired uploads, newest
/// first, strictly older than `before` (created at, id) if given.
pub async fn list_active(
    db: impl PgExecutor<'_>,
    tenant: &str,
    subject: Option<&str>,
    before: Option<(DateTime<Utc>, Uuid)>,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<Upload>, DbError> {
    let rows = sqlx::query_as::<_, UploadRow>(&format!(
        "select {COLUMNS} from uploads \
         where tenant = $1 and status = 'active' and expires_at > $2 \
           and ($3::text is null or subject = $3) \
           and ($4::timestamptz is null or (created_at, id) < ($4, $5)) \
         order by created_at desc, id desc limit $6"
    ))
    .bind(tenant)
    .bind(now)
    .bind(subject)
    .bind(before.map(|b| b.0))
    .bind(before.map(|b| b.1).unwrap_or_default())
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
