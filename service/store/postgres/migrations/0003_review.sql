-- What each decision was decided on, as a backtest line (request, recorded facts, list hits),
-- so that the backtest reads past applications from the store.
ALTER TABLE decisions ADD COLUMN application bytea COMPRESSION lz4;
-- The claim returns the decision's columns by name from now on (d.* would include the new one).
CREATE OR REPLACE FUNCTION decision_claim(p_id text, p_digest bytea, p_replica text, p_ttl float8)
RETURNS TABLE (status text, decision_id text, application_id text, body_sha256 bytea, outcome text,
               product text, arm text, decided_at timestamptz, response bytea, trace bytea, shadow bytea)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    won boolean;
BEGIN
    RETURN QUERY SELECT 'stored', d.decision_id, d.application_id, d.body_sha256, d.outcome, d.product, d.arm, d.decided_at, d.response, d.trace, d.shadow FROM decisions d WHERE d.application_id = p_id;
    IF FOUND THEN
        RETURN;
    END IF;
    SET LOCAL synchronous_commit = off;  -- a claim is worth no fsync
    INSERT INTO decision_claims AS c (application_id, body_sha256, replica, expires_at)
    VALUES (p_id, p_digest, p_replica, clock_timestamp() + make_interval(secs => p_ttl))
    ON CONFLICT (application_id) DO UPDATE
       SET body_sha256 = EXCLUDED.body_sha256, replica = EXCLUDED.replica, expires_at = EXCLUDED.expires_at
     WHERE c.expires_at < clock_timestamp()
    RETURNING true INTO won;
    IF won IS NULL THEN
        status := 'elsewhere';
        RETURN NEXT;
        RETURN;
    END IF;
    RETURN QUERY SELECT 'stored', d.decision_id, d.application_id, d.body_sha256, d.outcome, d.product, d.arm, d.decided_at, d.response, d.trace, d.shadow FROM decisions d WHERE d.application_id = p_id;
    IF NOT FOUND THEN
        status := 'ours';
        RETURN NEXT;
    END IF;
END $$;

-- The manual-review channel: a case for every live referral (opened in the decision's own
-- transaction), every transition of it, the outbox of final decisions for the bank's backend,
-- and the repayment labels that come back.
CREATE TABLE review_cases (
    case_id        text PRIMARY KEY,
    decision_id    text NOT NULL UNIQUE REFERENCES decisions,
    application_id text NOT NULL,
    product        text NOT NULL,
    state          text NOT NULL,
    opened_at      timestamptz NOT NULL,
    submitted_at   timestamptz NOT NULL,
    due_at         timestamptz NOT NULL,
    amount         float8 NOT NULL,
    context        bytea NOT NULL,
    holder         text,
    lease_until    timestamptz,
    proposal       bytea,
    verdict        bytea,
    outcome        text,
    decided_by     text,
    confirmed_by   text,
    decided_at     timestamptz,
    breached_at    timestamptz,
    version        int NOT NULL DEFAULT 0
);
CREATE INDEX review_cases_queue ON review_cases (due_at, case_id) WHERE state <> 'decided';
CREATE INDEX review_cases_opened ON review_cases (opened_at);

CREATE TABLE review_events (
    case_id    text NOT NULL REFERENCES review_cases,
    seq        int NOT NULL,
    at         timestamptz NOT NULL,
    key        text NOT NULL,
    action     text NOT NULL,
    from_state text,
    to_state   text NOT NULL,
    note       text,
    PRIMARY KEY (case_id, seq)
);

CREATE TABLE outbox (
    event_id        text PRIMARY KEY,
    kind            text NOT NULL,
    decision_id     text NOT NULL,
    created_at      timestamptz NOT NULL,
    payload         bytea NOT NULL,
    attempts        int NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    delivered_at    timestamptz,
    last_error      text
);
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE delivered_at IS NULL;
CREATE INDEX outbox_decision ON outbox (decision_id);

CREATE TABLE labels (
    application_id text PRIMARY KEY,
    status         text NOT NULL CHECK (status IN ('good', 'bad')),
    days_past_due  int NOT NULL CHECK (days_past_due >= 0),
    observed_on    date NOT NULL,
    recorded_at    timestamptz NOT NULL,
    recorded_by    text NOT NULL
);
