-- The relay's per-license data (queues, messages, inbox, settings) can live
-- in partition files beside this one, each with its own writer thread. A
-- license's partition is chosen when it is created and never changes; 0 is
-- this file, so every license from before partitions stays where it is and
-- an upgraded data directory serves exactly as before.
ALTER TABLE licenses ADD COLUMN partition_index INTEGER NOT NULL DEFAULT 0;
