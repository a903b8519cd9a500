-- The event log and what ingestion needs around it.
-- workspace_id leads every key so the schema can be distributed by
-- workspace (Citus); there are no cross-workspace foreign keys.

CREATE TABLE workspaces (
	workspace_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	name text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$'),
	created_at timestamptz NOT NULL DEFAULT now()
);

-- Only the SHA-256 of a key is stored; key_prefix (the first characters)
-- lets a person tell keys apart in `weft keys list`.
CREATE TABLE api_keys (
	workspace_id bigint NOT NULL,
	key_id bigint GENERATED ALWAYS AS IDENTITY,
	role text NOT NULL CHECK (role IN ('write', 'read', 'admin')),
	key_hash bytea NOT NULL UNIQUE,
	key_prefix text NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	revoked_at timestamptz,
	PRIMARY KEY (workspace_id, key_id)
);

-- The log. seq is assigned by Weft's single committer, in commit order:
-- the engine applies events in seq order. identifiers holds what the
-- event carries, already pseudonymised:
-- [{"type":"email","key":"<32 hex>","value":"j***@example.com"}, ...]
-- payload is the masked Segment event.
CREATE TABLE events (
	workspace_id bigint NOT NULL,
	seq bigint NOT NULL,
	message_id text NOT NULL,
	type text NOT NULL,
	event text,
	received_at timestamptz NOT NULL,
	sent_at timestamptz,
	original_timestamp timestamptz,
	"timestamp" timestamptz NOT NULL,
	key_id bigint,
	identifiers jsonb NOT NULL,
	payload jsonb NOT NULL,
	PRIMARY KEY (workspace_id, seq),
	UNIQUE (workspace_id, message_id)
);

-- Events refused inside an otherwise accepted batch, masked, with why.
CREATE TABLE rejected_events (
	workspace_id bigint NOT NULL,
	rejected_id bigint GENERATED ALWAYS AS IDENTITY,
	received_at timestamptz NOT NULL,
	message_id text,
	batch_index integer,
	code text NOT NULL,
	message text NOT NULL,
	payload jsonb,
	PRIMARY KEY (workspace_id, rejected_id)
);

-- A floor for the sequence: the committer starts from the greater of this
-- and max(events.seq). Anything that deletes events (erase) raises it to
-- the highest seq first, so a number is never handed out twice.
CREATE TABLE log_head (
	id integer PRIMARY KEY CHECK (id = 1),
	last_seq bigint NOT NULL
);
INSERT INTO log_head VALUES (1, 0);
