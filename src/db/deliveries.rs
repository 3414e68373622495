//! Webhook deliveries: claimed fairly and with a fenced lease, finished,
//! listed and sent again.

use super::*;
use crate::domain::event::{event_id, Event};

/// A delivery taken by this worker: what to send, where, and its claim.
#[derive(Debug, sqlx::FromRow)]
pub struct DueDelivery {
    pub webhook_id: Uuid,
    pub event_seq: i64,
    pub claim: Uuid,
    pub attempts: i32,
    pub tenant: String,
    pub url: String,
    pub secret: Vec<u8>,
    event_id: Uuid,
    #[sqlx(rename = "type")]
    kind: String,
    data: sqlx::types::Json<serde_json::Value>,
    pub event_at: DateTime<Utc>,
}

impl DueDelivery {
    pub fn event(&self) -> Event {
        Event {
            id: event_id(self.event_id),
            kind: self.kind.clone(),
            timestamp: crate::domain::event::rfc3339(&self.event_at),
            data: self.data.0.clone(),
        }
    }
}

/// What this worker has in flight, and how much of its slots one tenant and
/// one endpoint may hold: the claim gives a tenant or an endpoint at its cap
/// nothing more.
#[derive(Debug, Clone, Default)]
pub struct Busy {
    pub tenants: Vec<(String, i64)>,
    pub endpoints: Vec<(Uuid, i64)>,
    pub per_tenant: i64,
    pub per_endpoint: i64,
}

/// Takes up to `limit` due deliveries, each the earliest pending one of its
/// upload for its endpoint (so an upload's events arrive in order), skipping
/// rows another worker is taking. Fair between tenants: no endpoint gets more
/// than `busy.per_endpoint` slots nor a tenant more than `busy.per_tenant`
/// (counting what is already in flight), and the slots go round: each
/// tenant's first waiting delivery (the tenant waiting longest first), then
/// each one's second, and so on. Each gets a fresh claim and a lease: until
/// `lease` has passed nobody else takes it; a worker that dies mid-attempt
/// leaves it to be taken again then. The choice is made on a snapshot; the
/// rows are then locked with their due condition checked again on their
/// latest version, so a delivery another worker claimed meanwhile is skipped.
pub async fn claim_deliveries(
    db: impl PgExecutor<'_>,
    limit: i64,
    lease: Duration,
    busy: &Busy,
) -> Result<Vec<DueDelivery>, DbError> {
    let (tenants, tenant_n): (Vec<&str>, Vec<i64>) =
        busy.tenants.iter().map(|(t, n)| (t.as_str(), *n)).unzip();
    let (endpoints, endpoint_n): (Vec<Uuid>, Vec<i64>) = busy.endpoints.iter().copied().unzip();
    Ok(sqlx::query_as::<_, DueDelivery>(
        "with busy_t as (select * from unnest($3::text[], $4::int8[]) as b(tenant, n)), \
         busy_w as (select * from unnest($5::uuid[], $6::int8[]) as b(webhook_id, n)), \
         due as ( \
           select d.webhook_id, d.event_seq, d.next_attempt_at, w.tenant from deliveries d \
           join webhooks w on w.id = d.webhook_id \
           where d.status = 'pending' and d.next_attempt_at <= now() \
             and not exists (select 1 from deliveries p \
                             where p.webhook_id = d.webhook_id and p.upload_id = d.upload_id \
                               and p.status = 'pending' and p.event_seq < d.event_seq)), \
         per_endpoint as ( \
           select due.*, coalesce(bw.n, 0) + row_number() over ( \
               partition by due.webhook_id order by due.next_attempt_at, due.event_seq) as slot \
           from due left join busy_w bw on bw.webhook_id = due.webhook_id), \
         per_tenant as ( \
           select e.webhook_id, e.event_seq, e.tenant, coalesce(bt.n, 0) + row_number() over ( \
               partition by e.tenant order by e.next_attempt_at, e.event_seq) as slot, \
             min(e.next_attempt_at) over (partition by e.tenant) as waiting_since \
           from per_endpoint e left join busy_t bt on bt.tenant = e.tenant \
           where e.slot <= $7), \
         picked as ( \
           select webhook_id, event_seq from per_tenant where slot <= $8 \
           order by slot, waiting_since, tenant limit $1), \
         locked as ( \
           select d.webhook_id, d.event_seq from deliveries d \
           join picked p on p.webhook_id = d.webhook_id and p.event_seq = d.event_seq \
           where d.status = 'pending' and d.next_attempt_at <= now() \
           for update of d skip locked), \
         taken as ( \
           update deliveries d set claim = gen_random_uuid(), attempts = d.attempts + 1, \
             last_attempt_at = now(), next_attempt_at = now() + make_interval(secs => $2) \
           from locked where d.webhook_id = locked.webhook_id and d.event_seq = locked.event_seq \
           returning d.webhook_id, d.event_seq, d.claim, d.attempts) \
         select t.webhook_id, t.event_seq, t.claim, t.attempts, w.tenant, w.url, w.secret, \
           e.id as event_id, e.type, e.data, e.created_at as event_at \
         from taken t join webhooks w on w.id = t.webhook_id join events e on e.seq = t.event_seq",
    )
    .bind(limit)
    .bind(lease.as_secs_f64())
    .bind(&tenants)
    .bind(&tenant_n)
    .bind(&endpoints)
    .bind(&endpoint_n)
    .bind(busy.per_endpoint)
    .bind(busy.per_tenant)
    .fetch_all(db)
    .await?)
}

/// How an attempt ended.
#[derive(Debug, Clone)]
pub enum Attempted {
    Delivered {
        status: u16,
    },
    /// Failed; tried again at `at`.
    Retry {
        at: DateTime<Utc>,
        status: Option<u16>,
        error: String,
    },
    /// Failed for the last time.
    Failed {
        status: Option<u16>,
        error: String,
    },
}

/// Records an attempt's end, if the claim is still this worker's.
pub async fn finish_delivery(
    db: impl PgExecutor<'_>,
    d: &DueDelivery,
    outcome: &Attempted,
) -> Result<bool, DbError> {
    let (status, next, code, error) = match outcome {
        Attempted::Delivered { status } => ("delivered", None, Some(*status), None),
        Attempted::Retry { at, status, error } => ("pending", Some(*at), *status, Some(error)),
        Attempted::Failed { status, error } => ("failed", None, *status, Some(error)),
    };
    let r = sqlx::query(
        "update deliveries set status = $4, claim = null, \
           next_attempt_at = coalesce($5, next_attempt_at), last_status = $6, last_error = $7, \
           delivered_at = case when $4 = 'delivered' then now() else delivered_at end \
         where webhook_id = $1 and event_seq = $2 and claim = $3",
    )
    .bind(d.webhook_id)
    .bind(d.event_seq)
    .bind(d.claim)
    .bind(status)
    .bind(next)
    .bind(code.map(i32::from))
    .bind(error)
    .execute(db)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// A delivery as the operations routes show it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeliveryRow {
    pub event_id: Uuid,
    #[sqlx(rename = "type")]
    pub kind: String,
    pub upload_id: Uuid,
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub event_at: DateTime<Utc>,
}

const DELIVERY_COLUMNS: &str = "e.id as event_id, e.type, d.upload_id, d.status, d.attempts, \
    d.next_attempt_at, d.last_attempt_at, d.last_status, d.last_error, d.delivered_at, \
    e.created_at as event_at";

/// An endpoint's deliveries (of one status, if given), oldest event first.
pub async fn list_deliveries(
    db: impl PgExecutor<'_>,
    webhook_id: Uuid,
    status: Option<&str>,
    limit: i64,
) -> Result<Vec<DeliveryRow>, DbError> {
    Ok(sqlx::query_as::<_, DeliveryRow>(&format!(
        "select {DELIVERY_COLUMNS} from deliveries d join events e on e.seq = d.event_seq \
         where d.webhook_id = $1 and ($2::text is null or d.status = $2) \
         order by d.event_seq limit $3"
    ))
    .bind(webhook_id)
    .bind(status)
    .bind(limit)
    .fetch_all(db)
    .await?)
}

/// Makes one delivery due now again (a `failed` or `delivered` one, or a
/// pending one not in flight), then reads it back; `None` if the endpoint has
/// no delivery of that event.
pub async fn retry_delivery(
    db: &PgPool,
    webhook_id: Uuid,
    event: Uuid,
) -> Result<Option<DeliveryRow>, DbError> {
    sqlx::query(
        "update deliveries d set status = 'pending', next_attempt_at = now() \
         from events e where e.seq = d.event_seq and d.webhook_id = $1 and e.id = $2 \
           and not (d.status = 'pending' and d.claim is not null and d.next_attempt_at > now())",
    )
    .bind(webhook_id)
    .bind(event)
    .execute(db)
    .await?;
    Ok(sqlx::query_as::<_, DeliveryRow>(&format!(
        "select {DELIVERY_COLUMNS} from deliveries d join events e on e.seq = d.event_seq \
         where d.webhook_id = $1 and e.id = $2"
    ))
    .bind(webhook_id)
    .bind(event)
    .fetch_optional(db)
    .await?)
}

/// When the oldest event still waiting for a delivery happened.
pub async fn oldest_undelivered(db: impl PgExecutor<'_>) -> Result<Option<DateTime<Utc>>, DbError> {
    Ok(sqlx::query_scalar(
        "select min(e.created_at) from deliveries d join events e on e.seq = d.event_seq \
         where d.status = 'pending'",
    )
    .fetch_one(db)
    .await?)
}
