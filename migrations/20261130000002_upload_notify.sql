-- Every change to an upload row (and its removal) is announced on the channel
-- `upload_changed` with the upload's id, at commit. Each broker instance
-- listens, and drops the upload from its in-memory cache of signing facts
-- (src/broker/cache.rs), so that a part request after an abort or completion
-- on any instance answers 409. A trigger rather than the writers themselves:
-- no writer (the routes, the sweep, an operator's SQL) can forget it.
create function upload_changed() returns trigger language plpgsql as $$
begin
    perform pg_notify('upload_changed', old.id::text);
    return null;
end
$$;

create trigger upload_changed after update or delete on uploads
    for each row execute function upload_changed();
