-- The model archive: every model version served, kept by version (service/store/models.py).
CREATE TABLE model_versions (
    version     text PRIMARY KEY,
    name        text NOT NULL,
    spec        bytea NOT NULL,
    graph       bytea NOT NULL,
    metrics     bytea NOT NULL,
    archived_at timestamptz NOT NULL
);
