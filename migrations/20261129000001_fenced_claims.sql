-- Fenced claims. Every claim on an upload (completing, expiring, and now aborting)
-- takes a fresh `claim` id; every later write of that claimant (finish, release,
-- mark expired or aborted, renew the lease) names it. A claimant whose lease ran
-- out, and whose row another has claimed since, changes nothing.
alter table uploads add column claim uuid;
update uploads set claim = gen_random_uuid() where status in ('completing', 'expiring');

-- Aborts record `aborting` (claimed, with a lease) before the provider call and
-- `aborted` after it; the sweep finishes an abort whose provider call failed.
alter table uploads drop constraint uploads_status_check;
alter table uploads add constraint uploads_status_check
    check (status in ('active', 'completing', 'completed', 'aborting', 'aborted', 'expiring', 'expired'));
alter table uploads drop constraint uploads_claimed_has_lease;
alter table uploads add constraint uploads_claimed_has_lease
    check (status not in ('completing', 'expiring', 'aborting')
           or (lease_until is not null and claim is not null));
create index uploads_aborting on uploads (lease_until) where status = 'aborting';

-- Fingerprints are kept only as a keyed hash (HMAC-SHA256 with the token secret),
-- so a copy of the database cannot turn a fingerprint into a resume token. Plain
-- fingerprints stored before this change cannot be hashed here (the key is not in
-- the database): those uploads stay resumable by token, not by fingerprint.
alter table uploads rename column fingerprint to fingerprint_mac;
update uploads set fingerprint_mac = null where fingerprint_mac is not null;
