-- Audiences, computed traits and their exports (docs/audiences.md).

-- Definitions. The engine holds them in memory; these rows are what it
-- loads at start. definition is the canonical text (a computed trait's
-- JSON document, an audience's condition), kept as text so that its
-- members stay in the order Weft wrote them.
CREATE TABLE computed_traits (
	workspace_id bigint NOT NULL,
	trait_id bigint GENERATED ALWAYS AS IDENTITY,
	key text NOT NULL,
	definition text NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (workspace_id, trait_id),
	UNIQUE (workspace_id, key)
);

CREATE TABLE audiences (
	workspace_id bigint NOT NULL,
	audience_id bigint GENERATED ALWAYS AS IDENTITY,
	key text NOT NULL,
	name text NOT NULL,
	definition text NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (workspace_id, audience_id),
	UNIQUE (workspace_id, key)
);

-- Every entry into and exit from an audience, written by the engine with
-- the checkpoint that includes it (so a crash neither loses nor repeats
-- one). change_id orders them; delta exports keep a cursor on it.
CREATE TABLE audience_changes (
	workspace_id bigint NOT NULL,
	change_id bigint GENERATED ALWAYS AS IDENTITY,
	audience_id bigint NOT NULL,
	profile_id bigint NOT NULL,
	entered boolean NOT NULL,
	at timestamptz NOT NULL,
	cause text NOT NULL,
	seq bigint,
	PRIMARY KEY (workspace_id, change_id)
);
CREATE INDEX audience_changes_by_audience ON audience_changes (workspace_id, audience_id, change_id);
CREATE INDEX audience_changes_by_profile ON audience_changes (workspace_id, profile_id);
