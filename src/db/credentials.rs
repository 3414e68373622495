//! Credentials and quotas: API keys kept in Postgres, issuers of tenant-signed
//! grants, grants' upload counts, and the create that holds every quota.

use super::*;

pub use crate::config::Quotas;

/// A quota a create would go over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaHit {
    /// `tenantActiveUploads`, `tenantActiveBytes`, `subjectActiveUploads` or `grantUploads`.
    pub quota: &'static str,
    pub limit: u64,
    pub current: u64,
}

/// The grant a create counts against (`maxUploads`).
#[derive(Debug, Clone, Copy)]
pub struct GrantUse<'a> {
    pub id: &'a str,
    pub max_uploads: u32,
    pub expires_at: DateTime<Utc>,
}

/// Records a new upload if no quota would be exceeded. Exact under concurrency
/// and across instances: the tenant's creates are serialized by a transaction-
/// scoped advisory lock, so the counts and the insert see the same state.
pub async fn insert_within_quotas(
    pool: &PgPool,
    u: &Upload,
    quotas: &Quotas,
    grant: Option<GrantUse<'_>>,
    created: &crate::domain::event::NewEvent,
) -> Result<Result<(), QuotaHit>, DbError> {
    let mut tx = pool.begin().await?;
    let size = u.plan.map(|p| p.size()).unwrap_or(0);
    if let Err(hit) = within_quotas(
        &mut tx,
        &u.tenant,
        u.subject.as_deref(),
        size,
        quotas,
        grant,
    )
    .await?
    {
        return Ok(Err(hit));
    }
    insert_upload(&mut *tx, u).await?;
    super::insert_event(&mut *tx, created).await?;
    tx.commit().await?;
    Ok(Ok(()))
}

/// Forgets the upload counts of grants that can no longer be used: expired
/// longer ago than the leeway grants are accepted with (and a minute more).
pub async fn delete_expired_grant_uses(
    db: impl PgExecutor<'_>,
    now: DateTime<Utc>,
) -> Result<u64, DbError> {
    let grace = chrono::Duration::seconds(crate::domain::access::GRANT_LEEWAY_SECONDS as i64 + 60);
    let r = sqlx::query("delete from grant_uses where expires_at < $1")
        .bind(now - grace)
        .execute(db)
        .await?;
    Ok(r.rows_affected())
}

// ------------------------------------------------------------------ API keys

/// An API key as listed (never the key itself).
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyRecord {
    pub id: Uuid,
    pub tenant: String,
    pub name: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

pub async fn insert_api_key(
    db: impl PgExecutor<'_>,
    id: Uuid,
    tenant: &str,
    name: Option<&str>,
    key_hash: &[u8],
) -> Result<(), DbError> {
    sqlx::query("insert into api_keys (id, tenant, name, key_hash) values ($1, $2, $3, $4)")
        .bind(id)
        .bind(tenant)
        .bind(name)
        .bind(key_hash)
        .execute(db)
        .await?;
    Ok(())
}

/// The key with this hash, if it exists and is not revoked: (id, tenant).
pub async fn api_key_by_hash(
    db: impl PgExecutor<'_>,
    key_hash: &[u8],
) -> Result<Option<(Uuid, String)>, DbError> {
    Ok(
        sqlx::query_as(
            "select id, tenant from api_keys where key_hash = $1 and revoked_at is null",
        )
        .bind(key_hash)
        .fetch_optional(db)
        .await?,
    )
}

/// Whether the key `id` exists and is not revoked (grants minted by a key
/// die with it).
pub async fn api_key_active(db: impl PgExecutor<'_>, id: Uuid) -> Result<bool, DbError> {
    Ok(sqlx::query_scalar::<_, bool>(
        "select exists (select 1 from api_keys where id = $1 and revoked_at is null)",
    )
    .bind(id)
    .fetch_one(db)
    .await?)
}

/// Notes a key's use, at most once a minute (not a write per request).
pub async fn touch_api_key(db: impl PgExecutor<'_>, id: Uuid) -> Result<(), DbError> {
    sqlx::query(
        "update api_keys set last_used_at = now() where id = $1 \
         and (last_used_at is null or last_used_at < now() - interval '1 minute')",
    )
    .bind(id)
    .execute(db)
    .await?;
    Ok(())
}

pub async fn list_api_keys(
    db: impl PgExecutor<'_>,
    tenant: Option<&str>,
) -> Result<Vec<ApiKeyRecord>, DbError> {
    Ok(sqlx::query_as(
        "select id, tenant, name, created_at, last_used_at, revoked_at from api_keys \
         where $1::text is null or tenant = $1 order by tenant, created_at",
    )
    .bind(tenant)
    .fetch_all(db)
    .await?)
}

/// Revokes a key; false if there is no such key (or it was revoked already).
pub async fn revoke_api_key(db: impl PgExecutor<'_>, id: Uuid) -> Result<bool, DbError> {
    let r =
        sqlx::query("update api_keys set revoked_at = now() where id = $1 and revoked_at is null")
            .bind(id)
            .execute(db)
            .await?;
    Ok(r.rows_affected() == 1)
}

// ------------------------------------------------------------------ issuers

/// A registered issuer of tenant-signed grants.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct IssuerRecord {
    pub id: Uuid,
    pub tenant: String,
    pub issuer: String,
    pub jwks_source: String,
    pub jwks: sqlx::types::Json<serde_json::Value>,
    pub created_at: DateTime<Utc>,
}

pub async fn insert_issuer(
    db: impl PgExecutor<'_>,
    id: Uuid,
    tenant: &str,
    issuer: &str,
    jwks_source: &str,
    jwks: &serde_json::Value,
) -> Result<bool, DbError> {
    let r = sqlx::query(
        "insert into issuers (id, tenant, issuer, jwks_source, jwks) values ($1, $2, $3, $4, $5) \
         on conflict (issuer) do nothing",
    )
    .bind(id)
    .bind(tenant)
    .bind(issuer)
    .bind(jwks_source)
    .bind(sqlx::types::Json(jwks))
    .execute(db)
    .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn issuer_by_name(
    db: impl PgExecutor<'_>,
    issuer: &str,
) -> Result<Option<IssuerRecord>, DbError> {
    Ok(sqlx::query_as(
        "select id, tenant, issuer, jwks_source, jwks, created_at from issuers where issuer = $1",
    )
    .bind(issuer)
    .fetch_optional(db)
    .await?)
}

pub async fn list_issuers(
    db: impl PgExecutor<'_>,
    tenant: Option<&str>,
) -> Result<Vec<IssuerRecord>, DbError> {
    Ok(sqlx::query_as(
        "select id, tenant, issuer, jwks_source, jwks, created_at from issuers \
         where $1::text is null or tenant = $1 order by tenant, issuer",
    )
    .bind(tenant)
    .fetch_all(db)
    .await?)
}

/// Removes an issuer by id or by its `iss`; false if there was none.
pub async fn delete_issuer(db: impl PgExecutor<'_>, id_or_issuer: &str) -> Result<bool, DbError> {
    let r = sqlx::query("delete from issuers where id::text = $1 or issuer = $1")
        .bind(id_or_issuer)
        .execute(db)
        .await?;
    Ok(r.rows_affected() >= 1)
}

/// Admits an upload that leaves no record (a single-request POST to storage,
/// Companion's `/s3/params`): refused at the tenant's and the subject's active
/// quotas, and counted against the grant's `maxUploads`, exactly as a create.
pub async fn admit_within_quotas(
    pool: &PgPool,
    tenant: &str,
    subject: Option<&str>,
    size: u64,
    quotas: &Quotas,
    grant: Option<GrantUse<'_>>,
) -> Result<Result<(), QuotaHit>, DbError> {
    let mut tx = pool.begin().await?;
    if let Err(hit) = within_quotas(&mut tx, tenant, subject, size, quotas, grant).await? {
        return Ok(Err(hit));
    }
    tx.commit().await?;
    Ok(Ok(()))
}

/// The quota checks of a new upload of `size` bytes, under the tenant's lock,
/// and the grant's use counted (in `tx`, committed by the caller).
async fn within_quotas(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    tenant: &str,
    subject: Option<&str>,
    size: u64,
    quotas: &Quotas,
    grant: Option<GrantUse<'_>>,
) -> Result<Result<(), QuotaHit>, DbError> {
    sqlx::query("select pg_advisory_xact_lock(hashtextextended('upload-broker/quota/' || $1, 0))")
        .bind(tenant)
        .execute(&mut **tx)
        .await?;
    let (uploads, bytes): (i64, i64) = sqlx::query_as(
        "select count(*), coalesce(sum(size), 0)::bigint from uploads \
         where tenant = $1 and status in ('active', 'completing') and expires_at > now()",
    )
    .bind(tenant)
    .fetch_one(&mut **tx)
    .await?;
    let (uploads, bytes) = (uploads as u64, bytes as u64);
    if uploads >= quotas.tenant_max_active_uploads {
        return Ok(Err(QuotaHit {
            quota: "tenantActiveUploads",
            limit: quotas.tenant_max_active_uploads,
            current: uploads,
        }));
    }
    if let Some(max) = quotas.tenant_max_active_bytes {
        if bytes.saturating_add(size) > max {
            return Ok(Err(QuotaHit {
                quota: "tenantActiveBytes",
                limit: max,
                current: bytes,
            }));
        }
    }
    if let Some(subject) = subject {
        let n: i64 = sqlx::query_scalar(
            "select count(*) from uploads where tenant = $1 and subject = $2 \
             and status in ('active', 'completing') and expires_at > now()",
        )
        .bind(tenant)
        .bind(subject)
        .fetch_one(&mut **tx)
        .await?;
        if n as u64 >= quotas.subject_max_active_uploads {
            return Ok(Err(QuotaHit {
                quota: "subjectActiveUploads",
                limit: quotas.subject_max_active_uploads,
                current: n as u64,
            }));
        }
    }
    if let Some(g) = grant {
        // A conditional counter: no row back means the grant has used them all.
        let counted: Option<i32> = sqlx::query_scalar(
            "insert into grant_uses (tenant, jti, uploads, expires_at) values ($1, $2, 1, $4) \
             on conflict (tenant, jti) do update set uploads = grant_uses.uploads + 1 \
             where grant_uses.uploads < $3::bigint returning uploads",
        )
        .bind(tenant)
        .bind(g.id)
        .bind(g.max_uploads as i64)
        .bind(g.expires_at)
        .fetch_optional(&mut **tx)
        .await?;
        if counted.is_none() || g.max_uploads == 0 {
            return Ok(Err(QuotaHit {
                quota: "grantUploads",
                limit: g.max_uploads as u64,
                current: g.max_uploads as u64,
            }));
        }
    }
    Ok(Ok(()))
}
