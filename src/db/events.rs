//! Events and webhook endpoints (their deliveries: `deliveries.rs`).

use super::*;
use crate::domain::event::{event_id, Event, NewEvent};

/// Writes an event and one pending delivery for each of the tenant's endpoints
/// that takes its type: one statement, inside the transaction of the status
/// change it tells of (only `broker::record` and `broker::create` call it).
pub async fn insert_event(db: impl PgExecutor<'_>, e: &NewEvent) -> Result<(), DbError> {
    sqlx::query(
        "with e as ( \
           insert into events (id, tenant, upload_id, type, data, created_at) \
           values ($1, $2, $3, $4, $5, $6) returning seq) \
         insert into deliveries (webhook_id, event_seq, upload_id, next_attempt_at) \
         select w.id, e.seq, $3, $6 from e, webhooks w \
         where w.tenant = $2 and (w.event_types is null or $4 = any(w.event_types))",
    )
    .bind(e.id)
    .bind(&e.tenant)
    .bind(e.upload_id)
    .bind(e.kind.as_str())
    .bind(sqlx::types::Json(&e.data))
    .bind(e.at)
    .execute(db)
    .await?;
    Ok(())
}

/// Where a reader of the feed is: after the event at (`xid`, `seq`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FeedPosition {
    pub xid: i64,
    pub seq: i64,
}

#[derive(sqlx::FromRow)]
struct EventRow {
    seq: i64,
    xid: i64,
    id: Uuid,
    #[sqlx(rename = "type")]
    kind: String,
    data: sqlx::types::Json<serde_json::Value>,
    created_at: DateTime<Utc>,
}

impl EventRow {
    fn event(self) -> Event {
        Event {
            id: event_id(self.id),
            kind: self.kind,
            timestamp: crate::domain::event::rfc3339(&self.created_at),
            data: self.data.0,
        }
    }
}

/// A tenant's events after `after`, oldest first. Only events whose transaction
/// is older than every transaction still running are shown: the set of those
/// is final, so no event can later appear before the last one returned.
pub async fn events_after(
    db: impl PgExecutor<'_>,
    tenant: &str,
    after: FeedPosition,
    limit: i64,
) -> Result<Vec<(FeedPosition, Event)>, DbError> {
    let rows = sqlx::query_as::<_, EventRow>(
        "select seq, xid, id, type, data, created_at from events \
         where tenant = $1 and (xid, seq) > ($2, $3) \
           and xid < pg_snapshot_xmin(pg_current_snapshot())::text::bigint \
         order by xid, seq limit $4",
    )
    .bind(tenant)
    .bind(after.xid)
    .bind(after.seq)
    .bind(limit)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            (
                FeedPosition {
                    xid: r.xid,
                    seq: r.seq,
                },
                r.event(),
            )
        })
        .collect())
}

/// Deletes events older than `before` that no endpoint still waits for (their
/// deliveries go with them); at most `limit` per call.
pub async fn delete_old_events(
    db: impl PgExecutor<'_>,
    before: DateTime<Utc>,
    limit: i64,
) -> Result<u64, DbError> {
    let r = sqlx::query(
        "delete from events where seq in ( \
           select e.seq from events e where e.created_at < $1 \
             and not exists (select 1 from deliveries d where d.event_seq = e.seq and d.status = 'pending') \
           limit $2)",
    )
    .bind(before)
    .bind(limit)
    .execute(db)
    .await?;
    Ok(r.rows_affected())
}

// ------------------------------------------------------------------ webhooks

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct WebhookRow {
    pub id: Uuid,
    pub tenant: String,
    pub url: String,
    pub event_types: Option<Vec<String>>,
    pub created_at: DateTime<Utc>,
}

/// Adds an endpoint unless the tenant has `max` already (`Ok(false)`).
/// Adds an endpoint unless the tenant has `max` already: the count and the
/// insert run under the tenant's webhook lock, so concurrent creates never
/// pass the quota together.
pub async fn insert_webhook(
    pool: &sqlx::PgPool,
    w: &WebhookRow,
    sealed_secret: &[u8],
    max: i64,
) -> Result<bool, DbError> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "select pg_advisory_xact_lock(hashtextextended('upload-broker/webhooks/' || $1, 0))",
    )
    .bind(&w.tenant)
    .execute(&mut *tx)
    .await?;
    let r = sqlx::query(
        "insert into webhooks (id, tenant, url, event_types, secret, created_at) \
         select $1, $2, $3, $4, $5, $6 \
         where (select count(*) from webhooks where tenant = $2) < $7",
    )
    .bind(w.id)
    .bind(&w.tenant)
    .bind(&w.url)
    .bind(&w.event_types)
    .bind(sealed_secret)
    .bind(w.created_at)
    .bind(max)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(r.rows_affected() == 1)
}

pub async fn list_webhooks(
    db: impl PgExecutor<'_>,
    tenant: &str,
) -> Result<Vec<WebhookRow>, DbError> {
    Ok(sqlx::query_as::<_, WebhookRow>(
        "select id, tenant, url, event_types, created_at from webhooks \
         where tenant = $1 order by created_at, id",
    )
    .bind(tenant)
    .fetch_all(db)
    .await?)
}

pub async fn webhook_exists(
    db: impl PgExecutor<'_>,
    tenant: &str,
    id: Uuid,
) -> Result<bool, DbError> {
    Ok(
        sqlx::query_scalar::<_, i32>("select 1 from webhooks where tenant = $1 and id = $2")
            .bind(tenant)
            .bind(id)
            .fetch_optional(db)
            .await?
            .is_some(),
    )
}

/// Removes an endpoint and its deliveries; false if the tenant has no such one.
pub async fn delete_webhook(
    db: impl PgExecutor<'_>,
    tenant: &str,
    id: Uuid,
) -> Result<bool, DbError> {
    let r = sqlx::query("delete from webhooks where tenant = $1 and id = $2")
        .bind(tenant)
        .bind(id)
        .execute(db)
        .await?;
    Ok(r.rows_affected() == 1)
}
