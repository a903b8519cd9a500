-- Audience export jobs and their delta cursors (docs/audiences.md, "Exports").

-- One row per job. The worker claims queued jobs in id order and resumes
-- a running one after a restart: cursor says how far it got (full: the
-- last profile id delivered to a webhook; delta: the last change_id).
-- A delta job fixes its range of audience_changes when it starts
-- (from_change, to_change], so a resumed job sends the same rows.
CREATE TABLE exports (
	workspace_id bigint NOT NULL,
	export_id bigint GENERATED ALWAYS AS IDENTITY,
	audience_id bigint NOT NULL,
	audience_key text NOT NULL,
	format text NOT NULL CHECK (format IN ('csv', 'ndjson')),
	mode text NOT NULL CHECK (mode IN ('full', 'delta')),
	fields jsonb NOT NULL,
	destination jsonb NOT NULL,
	-- Which destination a delta cursor belongs to: 'file' or 'webhook <url>'.
	destination_key text NOT NULL,
	status text NOT NULL DEFAULT 'queued'
		CHECK (status IN ('queued', 'running', 'done', 'failed')),
	rows_done bigint NOT NULL DEFAULT 0,
	rows_total bigint,
	from_change bigint,
	to_change bigint,
	cursor bigint NOT NULL DEFAULT 0,
	attempts integer NOT NULL DEFAULT 0,
	error text,
	file_name text,
	file_bytes bigint,
	key_id bigint,
	created_at timestamptz NOT NULL DEFAULT now(),
	started_at timestamptz,
	finished_at timestamptz,
	PRIMARY KEY (workspace_id, export_id)
);
CREATE INDEX exports_pending ON exports (export_id) WHERE status IN ('queued', 'running');

-- How far delta exports of an audience to a destination got: every change
-- up to change_id was delivered. Advanced in the transaction that records
-- the delivery, so a crash repeats at most the batch in flight.
CREATE TABLE export_cursors (
	workspace_id bigint NOT NULL,
	audience_id bigint NOT NULL,
	destination_key text NOT NULL,
	change_id bigint NOT NULL,
	updated_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (workspace_id, audience_id, destination_key)
);
