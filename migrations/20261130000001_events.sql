-- Events: written by the writer of each status change, in its transaction.
-- `xid` is the writing transaction's id: the feed orders by (xid, seq) and only
-- shows rows whose transaction is older than every one still running, so a row
-- that commits late can never fall behind a cursor that already passed it.
create table events (
    seq         bigserial   primary key,
    id          uuid        not null unique,
    tenant      text        not null,
    upload_id   uuid        not null,
    type        text        not null,
    data        jsonb       not null,
    created_at  timestamptz not null,
    xid         bigint      not null default (pg_current_xact_id()::text::bigint)
);
create index events_feed on events (tenant, xid, seq);
create index events_created_at on events (created_at);

-- Webhook endpoints of a tenant; the signing secret is sealed (AES-256-GCM,
-- key derived from BROKER_TOKEN_SECRET).
create table webhooks (
    id           uuid        primary key,
    tenant       text        not null,
    url          text        not null,
    event_types  text[],
    secret       bytea       not null,
    created_at   timestamptz not null default now()
);
create index webhooks_tenant on webhooks (tenant, created_at);

-- One delivery per (endpoint, event), made with the event. A delivery in flight
-- holds a fenced claim until `next_attempt_at` (its lease).
create table deliveries (
    webhook_id       uuid        not null references webhooks (id) on delete cascade,
    event_seq        bigint      not null references events (seq) on delete cascade,
    upload_id        uuid        not null,
    status           text        not null default 'pending',
    attempts         integer     not null default 0,
    next_attempt_at  timestamptz not null,
    claim            uuid,
    last_attempt_at  timestamptz,
    last_status      integer,
    last_error       text,
    delivered_at     timestamptz,
    primary key (webhook_id, event_seq)
);
create index deliveries_due on deliveries (next_attempt_at) where status = 'pending';
create index deliveries_order on deliveries (webhook_id, upload_id, event_seq) where status = 'pending';
create index deliveries_by_status on deliveries (webhook_id, status, event_seq);
create index deliveries_event on deliveries (event_seq);
