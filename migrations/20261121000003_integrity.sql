-- Checksum-bound uploads: the algorithm chosen at create (SHA256 or CRC32C), and
-- the finished object's composite checksum and verified size.
alter table uploads add column checksum_algorithm text
    check (checksum_algorithm in ('SHA256', 'CRC32C'));
alter table uploads add column checksum text;
alter table uploads add column object_size bigint;
