-- The signing cache (src/broker/cache.rs) holds only uploads it read while
-- `active`, and drops one at the first change it hears of, so only changes of
-- active rows need announcing: the first change after such a read necessarily
-- has old.status = 'active'. Lease renewals, records of claimed uploads, the
-- sweep's re-claims and retention deletes no longer notify (a transaction that
-- notifies serialises its commit with every other that does).
drop trigger upload_changed on uploads;
create trigger upload_changed after update or delete on uploads
    for each row when (old.status = 'active') execute function upload_changed();

-- TRUNCATE fires no row trigger: announce it as '*', which empties every cache.
create function upload_truncated() returns trigger language plpgsql as $$
begin
    perform pg_notify('upload_changed', '*');
    return null;
end
$$;

create trigger upload_truncated after truncate on uploads
    for each statement execute function upload_truncated();
