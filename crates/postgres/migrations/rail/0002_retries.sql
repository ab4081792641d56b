-- Which robot accepted a ticket, and when: its retry within
-- rail.ticket_recheck is answered again (tickets used before this carry
-- neither, so every check of them is refused as used).
ALTER TABLE rail_tickets ADD COLUMN used_by UUID;
ALTER TABLE rail_tickets ADD COLUMN used_at TIMESTAMPTZ;

-- A purchase's Idempotency-Key, per caller (a robot's id or 'operator'),
-- and what the first request said: a retry answers the purchase again.
ALTER TABLE rail_purchases ADD COLUMN caller TEXT;
ALTER TABLE rail_purchases ADD COLUMN idempotency_key TEXT;
ALTER TABLE rail_purchases ADD COLUMN fingerprint BYTEA;
CREATE UNIQUE INDEX rail_purchases_key ON rail_purchases (license_pk, caller, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
