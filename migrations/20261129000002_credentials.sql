-- Uploads created with a grant belong to (tenant, subject); API-key uploads have none.
alter table uploads add column subject text;
create index uploads_tenant_subject_fingerprint on uploads (tenant, subject, fingerprint_mac, created_at desc)
    where fingerprint_mac is not null;
-- Quotas count a tenant's (and a subject's) active uploads.
create index uploads_active_by_tenant on uploads (tenant, subject) where status in ('active', 'completing');

-- API keys kept in Postgres: only a SHA-256 of the key is stored (a key has 256
-- bits of randomness, so a fast hash is enough: nothing to brute-force).
create table api_keys (
    id            uuid primary key,
    tenant        text        not null,
    name          text,
    key_hash      bytea       not null unique,
    created_at    timestamptz not null default now(),
    last_used_at  timestamptz,
    revoked_at    timestamptz
);

-- Issuers of tenant-signed grants: the public keys (JWKS) a tenant signs with.
create table issuers (
    id           uuid primary key,
    tenant       text        not null,
    issuer       text        not null unique,
    jwks_source  text        not null,
    jwks         jsonb       not null,
    created_at   timestamptz not null default now()
);

-- How many uploads each grant (by its jti) has created: `maxUploads`.
create table grant_uses (
    tenant      text        not null,
    jti         text        not null,
    uploads     integer     not null,
    expires_at  timestamptz not null,
    primary key (tenant, jti)
);
create index grant_uses_expires_at on grant_uses (expires_at);
