-- The sweep moves an expired upload to 'expiring' (claimed, lease in lease_until)
-- before it aborts it at the provider, then to 'expired': a crash in between
-- leaves a row the next sweep finishes.
alter table uploads drop constraint uploads_status_check;
alter table uploads add constraint uploads_status_check
    check (status in ('active', 'completing', 'completed', 'aborted', 'expiring', 'expired'));
alter table uploads drop constraint uploads_completing_has_lease;
alter table uploads add constraint uploads_claimed_has_lease
    check (status not in ('completing', 'expiring') or lease_until is not null);

-- Retention: finished rows by age.
create index uploads_finished_at on uploads (updated_at)
    where status in ('completed', 'aborted', 'expired');
