//! Change notifications of upload rows: a trigger (migration
//! `20261130000002_upload_notify.sql`) announces every update or removal of an
//! upload on [`UPLOAD_CHANNEL`] with its id, at commit. A listener holds one
//! connection of its own, outside the pool.

use sqlx::postgres::{PgListener, PgPool};

/// The channel the trigger notifies on.
pub const UPLOAD_CHANNEL: &str = "upload_changed";

/// What a listener hears.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heard {
    /// This upload changed or was removed.
    Changed(uuid::Uuid),
    /// A heartbeat (see [`heartbeat`]) or a payload that names no upload.
    Other,
}

impl Heard {
    pub fn parse(payload: &str) -> Self {
        payload.parse().map(Heard::Changed).unwrap_or(Heard::Other)
    }
}

/// A connection listening on [`UPLOAD_CHANNEL`]: once this returns, every change
/// that commits afterwards will be heard (or the connection reported lost).
pub async fn listen(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(UPLOAD_CHANNEL).await?;
    Ok(listener)
}

/// The next notification; `None` when the connection was lost (whatever was
/// notified meanwhile is lost with it).
pub async fn next(listener: &mut PgListener) -> Option<Heard> {
    match listener.try_recv().await {
        Ok(Some(n)) => Some(Heard::parse(n.payload())),
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(error = %e, "the upload change listener failed");
            None
        }
    }
}

/// Sends a heartbeat on the channel through the pool: every listener that
/// hears it has also heard every change committed before it (notifications
/// arrive in commit order).
pub async fn heartbeat(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::query("select pg_notify($1, '')")
        .bind(UPLOAD_CHANNEL)
        .execute(pool)
        .await
        .map(|_| ())
}
