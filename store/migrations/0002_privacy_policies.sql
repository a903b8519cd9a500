-- A workspace's masking policy, replacing the built-in default when
-- present. It applies to events received after it is saved.
CREATE TABLE privacy_policies (
	workspace_id bigint PRIMARY KEY,
	policy jsonb NOT NULL,
	updated_at timestamptz NOT NULL DEFAULT now()
);
