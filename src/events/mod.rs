//! Events and webhooks: endpoints (their secrets sealed at rest), the event
//! feed, and the operations on deliveries. The events themselves are written
//! by the writers of status changes (`broker::record`, `broker::create`); the
//! delivery worker is [`deliver`].

pub mod deliver;
pub mod secret;

use crate::db::{self, DeliveryRow, FeedPosition, WebhookRow};
use crate::domain::access::Access;
use crate::domain::event::{Event, EventType};
use crate::domain::token::TokenKey;
use crate::error::ApiError;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use secret::{SecretBox, WebhookSecret};
use sqlx::PgPool;
use std::sync::OnceLock;
use tokio::sync::watch;
use uuid::Uuid;

/// Most webhook endpoints one tenant may have.
pub const MAX_WEBHOOKS_PER_TENANT: i64 = 50;
/// Most events one page of the feed holds.
pub const MAX_FEED_LIMIT: i64 = 1000;
pub const DEFAULT_FEED_LIMIT: i64 = 100;

fn wake_channel() -> &'static watch::Sender<u64> {
    static WAKE: OnceLock<watch::Sender<u64>> = OnceLock::new();
    WAKE.get_or_init(|| watch::channel(0).0)
}

/// Tells this process's delivery workers that an event was committed (or an
/// attempt ended): they look for due deliveries now rather than at their next
/// poll. Other instances find it at their poll.
pub fn wake() {
    wake_channel().send_modify(|n| *n = n.wrapping_add(1));
}

pub(crate) fn wakes() -> watch::Receiver<u64> {
    wake_channel().subscribe()
}

/// The key webhook secrets are sealed with.
pub fn secret_box(tokens: &TokenKey) -> SecretBox {
    SecretBox::new(tokens.derive("webhook-secrets"))
}

/// The webhook and feed operations.
#[derive(Clone)]
pub struct Events {
    db: PgPool,
    secrets: SecretBox,
    outbound: crate::outbound::Outbound,
}

/// A webhook endpoint's public id: `wh_` and 32 hex digits.
pub fn webhook_id(id: Uuid) -> String {
    format!("wh_{}", id.simple())
}

/// The id inside a `wh_…` id (anything else names no endpoint: 404).
pub fn parse_webhook_id(s: &str) -> Result<Uuid, ApiError> {
    s.strip_prefix("wh_")
        .filter(|h| h.len() == 32)
        .and_then(|h| Uuid::try_parse(h).ok())
        .ok_or(ApiError::NotFound)
}

/// A webhook URL as it may be registered: absolute `http` or `https`, with a
/// host, no credentials and no fragment, at most 2,048 characters.
pub fn check_url(url: &str) -> Result<String, ApiError> {
    let bad = |why: &str| ApiError::InvalidRequest(format!("url: {why}"));
    if url.len() > 2048 {
        return Err(bad("at most 2048 characters"));
    }
    let u = reqwest::Url::parse(url).map_err(|_| bad("must be an absolute http(s) URL"))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(bad("the scheme must be http or https"));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err(bad("must name a host"));
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(bad(
            "must not hold credentials (sign requests with the secret instead)",
        ));
    }
    if u.fragment().is_some() {
        return Err(bad("must not have a fragment"));
    }
    Ok(u.to_string())
}

/// The event types an endpoint asks for: none given means all of them.
pub fn check_event_types(types: Option<Vec<String>>) -> Result<Option<Vec<EventType>>, ApiError> {
    let Some(types) = types else { return Ok(None) };
    if types.is_empty() {
        return Err(ApiError::InvalidRequest(
            "eventTypes: list at least one, or leave it out for all".into(),
        ));
    }
    let mut out: Vec<EventType> = Vec::new();
    for t in &types {
        let kind = EventType::parse(t).ok_or_else(|| {
            ApiError::InvalidRequest(format!(
                "eventTypes: {t:?} is not one of {}",
                EventType::ALL.map(|t| t.as_str()).join(", ")
            ))
        })?;
        if !out.contains(&kind) {
            out.push(kind);
        }
    }
    Ok(Some(out))
}

/// A feed cursor: opaque to clients (base64url of the position).
pub fn encode_cursor(p: FeedPosition) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}.{}", p.xid, p.seq))
}

pub fn decode_cursor(s: &str) -> Result<FeedPosition, ApiError> {
    let bad = || ApiError::InvalidRequest("after: not a cursor this feed gave".into());
    let raw = URL_SAFE_NO_PAD.decode(s).map_err(|_| bad())?;
    let raw = std::str::from_utf8(&raw).map_err(|_| bad())?;
    let (xid, seq) = raw.split_once('.').ok_or_else(bad)?;
    Ok(FeedPosition {
        xid: xid.parse().map_err(|_| bad())?,
        seq: seq.parse().map_err(|_| bad())?,
    })
}

/// A page of the feed and where the next one starts.
pub struct FeedPage {
    pub events: Vec<Event>,
    pub next: String,
}

impl Events {
    pub fn new(db: PgPool, secrets: SecretBox, outbound: crate::outbound::Outbound) -> Self {
        Self {
            db,
            secrets,
            outbound,
        }
    }

    /// Registers an endpoint; its secret is returned here and never again.
    pub async fn create_webhook(
        &self,
        access: &Access,
        url: &str,
        event_types: Option<Vec<String>>,
    ) -> Result<(WebhookRow, WebhookSecret), ApiError> {
        access.require_api_key("manage webhooks")?;
        let url = check_url(url)?;
        // The outbound policy, now as at every delivery.
        self.outbound
            .check_url(&url)
            .await
            .map_err(|e| ApiError::InvalidRequest(format!("url: {e}")))?;
        let types = check_event_types(event_types)?;
        let row = WebhookRow {
            id: Uuid::now_v7(),
            tenant: access.tenant.clone(),
            url,
            event_types: types.map(|ts| ts.iter().map(|t| t.as_str().to_string()).collect()),
            created_at: chrono::Utc::now(),
        };
        let secret = WebhookSecret::generate();
        let sealed = self.secrets.seal(&row.tenant, row.id, &secret);
        if !db::insert_webhook(&self.db, &row, &sealed, MAX_WEBHOOKS_PER_TENANT).await? {
            return Err(ApiError::QuotaExceeded {
                quota: "webhooks",
                limit: MAX_WEBHOOKS_PER_TENANT as u64,
                current: MAX_WEBHOOKS_PER_TENANT as u64,
            });
        }
        tracing::info!(webhook = %webhook_id(row.id), tenant = %row.tenant, "webhook endpoint added");
        Ok((row, secret))
    }

    pub async fn list_webhooks(&self, access: &Access) -> Result<Vec<WebhookRow>, ApiError> {
        access.require_api_key("manage webhooks")?;
        Ok(db::list_webhooks(&self.db, &access.tenant).await?)
    }

    pub async fn delete_webhook(&self, access: &Access, id: &str) -> Result<(), ApiError> {
        access.require_api_key("manage webhooks")?;
        let id = parse_webhook_id(id)?;
        if !db::delete_webhook(&self.db, &access.tenant, id).await? {
            return Err(ApiError::NotFound);
        }
        tracing::info!(webhook = %webhook_id(id), tenant = %access.tenant, "webhook endpoint removed");
        Ok(())
    }

    /// The endpoint `id` of the caller's tenant, or 404.
    async fn own_webhook(&self, access: &Access, id: &str) -> Result<Uuid, ApiError> {
        access.require_api_key("manage webhooks")?;
        let id = parse_webhook_id(id)?;
        if !db::webhook_exists(&self.db, &access.tenant, id).await? {
            return Err(ApiError::NotFound);
        }
        Ok(id)
    }

    pub async fn deliveries(
        &self,
        access: &Access,
        id: &str,
        status: Option<&str>,
        limit: i64,
    ) -> Result<Vec<DeliveryRow>, ApiError> {
        let id = self.own_webhook(access, id).await?;
        Ok(db::list_deliveries(&self.db, id, status, limit).await?)
    }

    pub async fn retry(
        &self,
        access: &Access,
        id: &str,
        event_id: &str,
    ) -> Result<DeliveryRow, ApiError> {
        let id = self.own_webhook(access, id).await?;
        let event = crate::domain::event::parse_event_id(event_id).ok_or(ApiError::NotFound)?;
        let row = db::retry_delivery(&self.db, id, event)
            .await?
            .ok_or(ApiError::NotFound)?;
        wake();
        Ok(row)
    }

    /// A page of the caller's tenant's events after `after` (from the first
    /// without it).
    pub async fn feed(
        &self,
        access: &Access,
        after: Option<&str>,
        limit: Option<i64>,
    ) -> Result<FeedPage, ApiError> {
        access.require_api_key("read the event feed")?;
        let from = after.map(decode_cursor).transpose()?.unwrap_or_default();
        let limit = limit.unwrap_or(DEFAULT_FEED_LIMIT);
        if !(1..=MAX_FEED_LIMIT).contains(&limit) {
            return Err(ApiError::InvalidRequest(format!(
                "limit: must be 1 to {MAX_FEED_LIMIT}"
            )));
        }
        let rows = db::events_after(&self.db, &access.tenant, from, limit).await?;
        let last = rows.last().map(|(p, _)| *p).unwrap_or(from);
        Ok(FeedPage {
            events: rows.into_iter().map(|(_, e)| e).collect(),
            next: encode_cursor(last),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_junk_is_refused() {
        let p = FeedPosition { xid: 1234, seq: 99 };
        assert_eq!(decode_cursor(&encode_cursor(p)).unwrap(), p);
        for junk in ["", "!!", "MTIz", &URL_SAFE_NO_PAD.encode("a.b")] {
            assert!(decode_cursor(junk).is_err(), "{junk}");
        }
    }

    #[test]
    fn webhook_urls_are_absolute_http_without_credentials() {
        assert!(check_url("https://hooks.example.com/upload?x=1").is_ok());
        assert!(check_url("http://127.0.0.1:9000/h").is_ok());
        for bad in [
            "ftp://x.example/h",
            "/relative",
            "https://user:pw@x.example/h",
            "https://x.example/h#frag",
            "not a url",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
        assert!(check_url(&format!("https://x.example/{}", "a".repeat(2100))).is_err());
    }

    #[test]
    fn event_types_are_checked_and_deduplicated() {
        assert_eq!(check_event_types(None).unwrap(), None);
        assert_eq!(
            check_event_types(Some(vec![
                "upload.completed".into(),
                "upload.completed".into()
            ]))
            .unwrap(),
            Some(vec![EventType::Completed])
        );
        assert!(check_event_types(Some(vec![])).is_err());
        assert!(check_event_types(Some(vec!["upload.finished".into()])).is_err());
    }

    #[test]
    fn webhook_ids_round_trip() {
        let id = Uuid::now_v7();
        assert_eq!(parse_webhook_id(&webhook_id(id)).unwrap(), id);
        assert!(parse_webhook_id(&id.to_string()).is_err());
    }
}
