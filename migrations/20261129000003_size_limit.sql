-- The largest size an upload may complete at, when its creator was limited to
-- less than MAX_UPLOAD_SIZE (a grant's maxUploadSize). Uploads created without a
-- declared size (the Companion-compatible routes) are held to it at completion.
alter table uploads add column size_limit bigint check (size_limit > 0);
