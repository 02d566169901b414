-- 006_engine_checkpoints: the engine's state per source partition, stored with the data.
--
-- Offsets alone cannot make a restart exact: the open 1-minute and 15-minute windows,
-- the counter samples they need and the day's health accumulators live in memory. Every
-- `engine.checkpoint_interval` a flush also stores, per (group, topic, partition), the
-- offset to resume reading at and the state of that partition's GPUs at that offset
-- (postcard, zstd), in the flush's own transaction. On assignment a partition seeks
-- there and the state is loaded; what follows it is read again, and every table's
-- write is idempotent (raw rows and dead letters keep the first, the rest upsert), so
-- the tables end as an uninterrupted run leaves them. consumed_offsets still records
-- how far the data goes.

CREATE TABLE IF NOT EXISTS gpu_health.engine_checkpoints (
    consumer_group text        NOT NULL,
    topic          text        NOT NULL,
    partition      integer     NOT NULL,
    next_offset    bigint      NOT NULL,
    state          bytea       NOT NULL,
    written_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, topic, partition)
);
COMMENT ON TABLE gpu_health.engine_checkpoints IS
    'Engine state (open windows, counter samples, daily health) per consumer group, topic and '
    'partition, with the offset it was taken at; written in a flush''s transaction. A restart '
    'or a new owner of the partition resumes from it. Delete a row to rebuild that partition '
    'from the beginning of the topic.';
COMMENT ON COLUMN gpu_health.engine_checkpoints.state IS
    'gpu-health internal format (postcard, zstd-compressed, versioned); not for queries.';

GRANT SELECT, INSERT, UPDATE, DELETE ON gpu_health.engine_checkpoints TO gpu_health_writer;
GRANT SELECT ON gpu_health.engine_checkpoints TO gpu_health_reader;
