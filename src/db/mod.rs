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

pub use crate::domain::upload::FinishedObject;

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

mod credentials;
mod deliveries;
mod events;
pub mod notify;
mod sweep;
mod uploads;

pub use credentials::*;
pub use deliveries::*;
pub use events::*;
pub use sweep::*;
pub use uploads::*;

pub async fn ping(db: impl PgExecutor<'_>) -> Result<(), DbError> {
    sqlx::query("select 1").execute(db).await?;
    Ok(())
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
