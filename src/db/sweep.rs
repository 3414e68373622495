//! What the sweep reads and claims: expired uploads, stale aborts, old records, orphans.

use super::*;

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
    reclaim(
        db,
        "status = 'aborting' and lease_until <= $1",
        now,
        lease,
        limit,
    )
    .await
}

/// Claims up to `limit` unexpired `completing` uploads whose completer's lease
/// ran out (it died, or its client left): a fresh claim, still `completing`,
/// for the sweep to settle (completed if the object is there, back to
/// `active` if the provider upload still is).
pub async fn claim_lapsed_completions(
    db: impl PgExecutor<'_>,
    now: DateTime<Utc>,
    lease: Duration,
    limit: i64,
) -> Result<Vec<Upload>, DbError> {
    reclaim(
        db,
        "status = 'completing' and lease_until <= $1 and expires_at > $1",
        now,
        lease,
        limit,
    )
    .await
}

/// A fresh claim and lease, status unchanged, on up to `limit` rows matching
/// `held` (a condition on `$1`, now) whose lease ran out, oldest lease first,
/// skipping rows another sweeper is taking.
async fn reclaim(
    db: impl PgExecutor<'_>,
    held: &str,
    now: DateTime<Utc>,
    lease: Duration,
    limit: i64,
) -> Result<Vec<Upload>, DbError> {
    let rows = sqlx::query_as::<_, UploadRow>(&format!(
        "with c as ( \
           select id from uploads where {held} \
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
