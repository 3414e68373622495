-- One row per multipart upload. The resume token is derived from `id` with a MAC
-- whose key is configuration, so nothing here lets anyone resume an upload.
create table uploads (
    id                 uuid primary key,
    tenant             text        not null,
    status             text        not null,
    bucket             text        not null,
    object_key         text        not null,
    provider_upload_id text        not null,
    filename           text        not null,
    content_type       text        not null,
    size               bigint      not null check (size > 0),
    part_size          bigint      not null check (part_size > 0),
    part_count         integer     not null check (part_count between 1 and 10000),
    metadata           jsonb       not null default '{}'::jsonb,
    fingerprint        text,
    -- the finished object's ETag and the parts it was completed from
    etag               text,
    completed_parts    jsonb,
    created_at         timestamptz not null,
    expires_at         timestamptz not null,
    updated_at         timestamptz not null default now(),
    completed_at       timestamptz,
    -- while status = 'completing': until when the completer holds it
    lease_until        timestamptz,
    constraint uploads_status_check
        check (status in ('active', 'completing', 'completed', 'aborted', 'expired')),
    constraint uploads_completing_has_lease
        check (status <> 'completing' or lease_until is not null)
);

-- The sweep: uploads of a status past their expiry.
create index uploads_status_expires_at on uploads (status, expires_at);
-- Fingerprint lookup: a tenant's uploads of a fingerprint, newest first.
create index uploads_tenant_fingerprint on uploads (tenant, fingerprint, created_at desc)
    where fingerprint is not null;
-- Orphan scan: is this provider upload ours?
create unique index uploads_bucket_provider_upload_id on uploads (bucket, provider_upload_id);
