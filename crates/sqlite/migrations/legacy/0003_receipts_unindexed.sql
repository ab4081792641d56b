-- A per-device index over every message, receipts included, cost each
-- enqueue a random B-tree insert into an index as large as the receipt
-- history (measured: about a fifth of the relay's throughput). Unbinding
-- needs the device's rows only where something still depends on them:
-- pending messages (messages_queue) and idempotency keys (below). Other
-- receipts of an unbound device hold no data, are unreachable (devices.pk
-- is never reused) and go with the retention purge.
DROP INDEX messages_device;
CREATE INDEX messages_device_keyed ON messages(device_pk) WHERE idem_key IS NOT NULL;
