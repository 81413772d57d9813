-- The same ruleset on every replica: `loan-decision rules publish` (or an admin reload) stores a
-- tested ruleset's files here and points ruleset_active at it; every replica follows.
CREATE TABLE rulesets (
    version      text PRIMARY KEY,
    files        jsonb NOT NULL,  -- relative path → text: the rule files and their tests
    published_by text NOT NULL,
    published_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE ruleset_active (
    only_one     boolean PRIMARY KEY DEFAULT true CHECK (only_one),
    version      text NOT NULL REFERENCES rulesets,
    activated_at timestamptz NOT NULL DEFAULT now()
);
-- Each live replica's heartbeat: which ruleset it serves and why it refused the published one.
CREATE TABLE replicas (
    replica    text PRIMARY KEY,
    ruleset    text,
    errors     jsonb NOT NULL DEFAULT '[]',
    started_at timestamptz NOT NULL,
    seen_at    timestamptz NOT NULL
);
