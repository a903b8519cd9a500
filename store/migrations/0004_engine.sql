-- The identity engine's saved state and its per-workspace configuration.

-- The engine's derived state (the identity graph and what hangs off it),
-- cut by the engine into sections and each section into pages of at most
-- 64 KiB. A save rewrites only the pages that changed, in the same
-- transaction as the checkpoint, so pages and checkpoint always agree.
CREATE TABLE engine_pages (
	workspace_id bigint,
	section integer,
	page integer,
	data bytea NOT NULL,
	PRIMARY KEY (workspace_id, section, page)
);
-- Pages are hashes and integers, which do not compress: store them out of
-- line as they are instead of spending pglz's CPU on every write.
ALTER TABLE engine_pages ALTER COLUMN data SET STORAGE EXTERNAL;

-- The last event (seq) the saved pages include, and the page format that
-- wrote them. No row until the engine's first save.
CREATE TABLE engine_checkpoint (
	id integer PRIMARY KEY CHECK (id = 1),
	seq bigint NOT NULL,
	format integer NOT NULL,
	saved_at timestamptz NOT NULL
);

-- A workspace's identity resolution rules (identifier types, priorities,
-- limits), replacing the built-in default when present.
CREATE TABLE identity_rules (
	workspace_id bigint PRIMARY KEY,
	rules jsonb NOT NULL,
	updated_at timestamptz NOT NULL DEFAULT now()
);

-- Identifiers the engine ignores: a (type, 16-byte keyed hash) per row,
-- never a raw value. key_id is the API key that blocked it, when known.
CREATE TABLE identity_blocked (
	workspace_id bigint NOT NULL,
	type text NOT NULL,
	key bytea NOT NULL CHECK (length(key) = 16),
	created_at timestamptz NOT NULL DEFAULT now(),
	key_id bigint,
	PRIMARY KEY (workspace_id, type, key)
);
