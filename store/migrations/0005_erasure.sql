-- Erasing a person (GDPR), and keeping them erased.

-- Rejected events keep the identifier keys they carried (same form as
-- events.identifiers), so that erasing a person finds them too.
ALTER TABLE rejected_events ADD COLUMN identifiers jsonb;

-- Identifier keys whose events are acknowledged and dropped: an erasure
-- with suppress=true puts the person's keys here. Keys are keyed hashes
-- (docs/privacy.md), never raw values.
CREATE TABLE suppressed_keys (
	workspace_id bigint NOT NULL,
	key bytea NOT NULL CHECK (length(key) = 16),
	type text NOT NULL,
	erasure_id bigint,
	created_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (workspace_id, key)
);

-- One row per erasure: the job's progress and, afterwards, its audit
-- record. No personal data: who asked (the admin key), when, what it
-- removed, counted.
CREATE TABLE erasures (
	workspace_id bigint NOT NULL,
	erasure_id bigint GENERATED ALWAYS AS IDENTITY,
	key_id bigint,
	suppress boolean NOT NULL,
	status text NOT NULL CHECK (status IN ('running', 'done', 'failed')),
	requested_at timestamptz NOT NULL DEFAULT now(),
	finished_at timestamptz,
	profiles integer NOT NULL DEFAULT 0,
	identifiers integer NOT NULL DEFAULT 0,
	events_deleted bigint NOT NULL DEFAULT 0,
	rejected_deleted bigint NOT NULL DEFAULT 0,
	-- Other people's events that carried one of the identifiers: kept,
	-- with the identifier taken out of them.
	events_scrubbed bigint NOT NULL DEFAULT 0,
	-- While running, so that a restart can finish the job (cleared when
	-- done): the identifier keys (16 bytes each, end to end), the events
	-- the profile held (8-byte seqs), the last event the engine had
	-- applied and the last one committed when the erasure began.
	pending_keys bytea,
	pending_seqs bytea,
	applied_seq bigint,
	upto_seq bigint,
	error text,
	PRIMARY KEY (workspace_id, erasure_id)
);

-- The newest erasure the saved engine state had already wiped when its
-- pages were captured: an erasure is done only once a save at or past it
-- has committed (a restart before then wipes it again).
ALTER TABLE engine_checkpoint ADD COLUMN erasure_id bigint NOT NULL DEFAULT 0;
