-- messageIds are opaque: compare them byte by byte. The unique index on
-- (workspace_id, message_id) is checked for every event written, and the
-- default collation's comparison cost about 5% of PostgreSQL's COPY time.
ALTER TABLE events ALTER COLUMN message_id TYPE text COLLATE "C";
ALTER TABLE rejected_events ALTER COLUMN message_id TYPE text COLLATE "C";
