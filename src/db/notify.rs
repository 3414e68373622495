//! Change notifications of upload rows: triggers (migrations
//! `20261130000002_upload_notify.sql`, `…03_upload_notify_active.sql`) announce
//! every update or removal of an active upload on [`UPLOAD_CHANNEL`] with its
//! id, and a TRUNCATE as `*`, at commit. Listeners use a small pool of their own
//! ([`listener_pool`]), so that the application's pool, however busy, neither
//! holds them up nor loses a connection to them.

use sqlx::postgres::{PgListener, PgPool, PgPoolOptions};

/// The channel the triggers notify on.
pub const UPLOAD_CHANNEL: &str = "upload_changed";

/// What a listener hears.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    /// This upload changed or was removed.
    Changed(uuid::Uuid),
    /// Every upload may have changed (a TRUNCATE).
    All,
    /// A heartbeat: who sent it, and when (milliseconds on the sender's clock).
    Beat { from: uuid::Uuid, at_ms: u64 },
    /// Anything else.
    Other,
}

impl Heard {
    pub fn parse(payload: &str) -> Self {
        if payload == "*" {
            return Heard::All;
        }
        if let Ok(id) = payload.parse() {
            return Heard::Changed(id);
        }
        match payload.split_once(':') {
            Some((from, at)) => match (from.parse(), at.parse()) {
                (Ok(from), Ok(at_ms)) => Heard::Beat { from, at_ms },
                _ => Heard::Other,
            },
            None => Heard::Other,
        }
    }

    /// A heartbeat's payload.
    pub fn beat(from: uuid::Uuid, at_ms: u64) -> String {
        format!("{from}:{at_ms}")
    }
}

/// How the listener's connections name themselves (`pg_stat_activity`).
pub const LISTENER_APPLICATION_NAME: &str = "upload-broker upload listener";

/// A pool of its own for listening and heartbeats, to the same database.
pub fn listener_pool(pool: &PgPool) -> PgPool {
    PgPoolOptions::new()
        // The listening connection, the heartbeat, and one a dropped listener
        // may still hold while it says UNLISTEN.
        .max_connections(3)
        .acquire_timeout(std::time::Duration::from_secs(5))
        .connect_lazy_with(
            (*pool.connect_options())
                .clone()
                .application_name(LISTENER_APPLICATION_NAME),
        )
}

/// A connection listening on [`UPLOAD_CHANNEL`]: once this returns, every change
/// that commits afterwards will be heard (or the connection reported lost). It
/// fails when the triggers that announce changes are missing or disabled (a
/// database not migrated yet, or triggers turned off): without them nothing
/// would ever be heard.
pub async fn listen(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    // Report a lost connection at once rather than after reconnecting.
    listener.eager_reconnect(false);
    listener.listen(UPLOAD_CHANNEL).await?;
    if !triggers_enabled(&mut listener).await? {
        return Err(sqlx::Error::Configuration(
            "the triggers that announce upload changes (upload_changed, upload_truncated) are \
             missing or disabled: run `upload-broker migrate`"
                .into(),
        ));
    }
    Ok(listener)
}

/// Whether both triggers that announce upload changes are there and enabled.
/// Checked when listening starts and again every few seconds while it goes on:
/// a trigger turned off later would otherwise leave the cache deaf to changes.
pub async fn triggers_enabled(db: impl sqlx::PgExecutor<'_>) -> Result<bool, sqlx::Error> {
    let triggers: i64 = sqlx::query_scalar(
        "select count(*) from pg_trigger \
         where tgrelid = 'uploads'::regclass and tgname in ('upload_changed', 'upload_truncated') \
           and tgenabled <> 'D'",
    )
    .fetch_one(db)
    .await?;
    Ok(triggers == 2)
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

/// Sends a heartbeat on the channel: a listener that hears it has also heard
/// every change committed before it (notifications arrive in commit order).
pub async fn heartbeat(pool: &PgPool, payload: &str) -> Result<(), sqlx::Error> {
    sqlx::query("select pg_notify($1, $2)")
        .bind(UPLOAD_CHANNEL)
        .bind(payload)
        .execute(pool)
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_told_apart() {
        let id = uuid::Uuid::now_v7();
        assert_eq!(Heard::parse(&id.to_string()), Heard::Changed(id));
        assert_eq!(Heard::parse("*"), Heard::All);
        assert_eq!(
            Heard::parse(&Heard::beat(id, 1234)),
            Heard::Beat {
                from: id,
                at_ms: 1234
            }
        );
        assert_eq!(Heard::parse(""), Heard::Other);
        assert_eq!(Heard::parse("x:1"), Heard::Other);
    }
}
