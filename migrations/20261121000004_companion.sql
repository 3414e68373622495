-- Uploads created through the Companion-compatible routes declare no size: their
-- plan is unknown until completion, when size, part_size and part_count are set
-- from the parts actually completed.
alter table uploads alter column size drop not null;
alter table uploads alter column part_size drop not null;
alter table uploads alter column part_count drop not null;
alter table uploads add column origin text not null default 'native'
    check (origin in ('native', 'companion'));
alter table uploads add constraint uploads_native_has_plan
    check (origin <> 'native' or (size is not null and part_size is not null and part_count is not null));
