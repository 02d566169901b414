//! Integration tests against a real TimescaleDB (started by `scripts/test.sh`, URL in
//! DATABASE_URL). Each test works in a database of its own. Expected values come from
//! SQL over the raw rows (`time_bucket`, window functions), not from the processor.

#[macro_use]
mod common;

use common::db::{apply_schema, backfill, checksums, fresh_db, scalar_i64};
use gpu_health::db::{self, Edition};
use tokio_postgres::Client;

const GAUGES: &[(&str, &str)] = &[
    ("gpu_temp", "gpu_temp"),
    ("memory_temp", "memory_temp"),
    ("power_usage", "power_usage"),
    ("gpu_utilization", "gpu_utilization"),
    ("memory_utilization", "memory_utilization"),
    ("mem_copy_utilization", "mem_copy_utilization"),
    ("sm_active", "sm_active"),
    ("sm_occupancy", "sm_occupancy"),
    ("tensor_active", "tensor_active"),
    ("dram_active", "dram_active"),
    ("fb_used_bytes", "fb_used_bytes::float8"),
    ("sm_clock_mhz", "sm_clock_mhz::float8"),
    ("mem_clock_mhz", "mem_clock_mhz::float8"),
    ("pcie_tx_mbps", "pcie_tx_bytes_per_sec / 1e6::float8"),
    ("pcie_rx_mbps", "pcie_rx_bytes_per_sec / 1e6::float8"),
];

/// Rows of `table` that differ from the SQL aggregate over accepted raw rows, plus
/// rows missing on either side.
fn mismatch_sql(table: &str, width: &str) -> String {
    let mut agg = vec![
        "max(hostname) AS hostname".to_string(),
        "count(*) AS sample_count".into(),
        "count(*) FILTER (WHERE NOT validation_passed) AS invalid_sample_count".into(),
        "count(*) FILTER (WHERE throttle_reasons <> 0) AS throttle_events".into(),
        "count(*) FILTER (WHERE (throttle_reasons & 96) <> 0) AS thermal_throttle_events".into(),
        "count(*) FILTER (WHERE (throttle_reasons & 136) <> 0) AS power_throttle_events".into(),
        "count(*) FILTER (WHERE (throttle_reasons & 4) <> 0) AS power_cap_events".into(),
        "max(ecc_dbe_volatile) AS ecc_dbe_volatile_max".into(),
    ];
    let mut cmp = vec![
        "e.hostname = r.hostname".to_string(),
        "e.sample_count = r.sample_count".into(),
        "e.invalid_sample_count = r.invalid_sample_count".into(),
        "e.throttle_events = r.throttle_events".into(),
        "e.thermal_throttle_events = r.thermal_throttle_events".into(),
        "e.power_throttle_events = r.power_throttle_events".into(),
        "e.power_cap_events = r.power_cap_events".into(),
        "e.ecc_dbe_volatile_max IS NOT DISTINCT FROM r.ecc_dbe_volatile_max".into(),
    ];
    for (prefix, expr) in GAUGES {
        for (stat, f) in [
            ("avg", "avg"),
            ("min", "min"),
            ("max", "max"),
            ("stddev", "stddev"),
        ] {
            let c = format!("{prefix}_{stat}");
            agg.push(format!("{f}({expr}) AS {c}"));
            cmp.push(format!(
                "((e.{c} IS NULL AND r.{c} IS NULL) OR abs(e.{c} - r.{c}) <= 1e-9 * (1 + greatest(abs(e.{c}), abs(r.{c}))))"
            ));
        }
    }
    let mut deltas = String::new();
    let mut joins = String::new();
    let mut picks = String::new();
    for (name, counter) in [
        ("ecc_sbe_delta", "ecc_sbe_aggregate"),
        ("ecc_dbe_delta", "ecc_dbe_aggregate"),
        ("retired_pages_delta", "retired_pages_dbe"),
    ] {
        // The boundary-safe rule as a window function: each value's increase over the
        // previous non-NULL value of the GPU; a decrease is a reset (the new value is
        // the increase); a GPU's first value increases nothing.
        deltas.push_str(&format!(
            ", {name} AS (
                SELECT time_bucket('{width}', time) AS time, gpu_uuid,
                       sum(CASE WHEN prev IS NULL THEN 0 WHEN v >= prev THEN v - prev ELSE v END)::bigint AS d
                  FROM (SELECT time, gpu_uuid, {counter} AS v,
                               lag({counter}) OVER (PARTITION BY gpu_uuid ORDER BY time) AS prev
                          FROM acc WHERE {counter} IS NOT NULL) s
                 GROUP BY 1, 2)"
        ));
        joins.push_str(&format!(" LEFT JOIN {name} USING (time, gpu_uuid)"));
        picks.push_str(&format!(", {name}.d AS exp_{name}"));
        cmp.push(format!("e.exp_{name} IS NOT DISTINCT FROM r.{name}"));
    }
    format!(
        "WITH acc AS (
             SELECT m.* FROM gpu_metrics m
              WHERE NOT EXISTS (SELECT 1 FROM gpu_metrics_dead_letters l
                                 WHERE l.reason = 'too_late' AND l.gpu_uuid = m.gpu_uuid AND l.time = m.time)),
         g AS (SELECT time_bucket('{width}', time) AS time, gpu_uuid, {agg} FROM acc GROUP BY 1, 2){deltas},
         e AS (SELECT g.*{picks} FROM g{joins})
         SELECT count(*) FROM e FULL JOIN {table} r USING (time, gpu_uuid)
          WHERE e.gpu_uuid IS NULL OR r.gpu_uuid IS NULL OR NOT ({cmp})",
        agg = agg.join(", "),
        cmp = cmp.join(" AND ")
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn schema_apply_twice_changes_nothing() {
    require_services!(schema_apply_twice_changes_nothing: "DATABASE_URL");
    let (_, mut c) = fresh_db("t_schema_twice").await;
    let first = apply_schema(&mut c).await.unwrap();
    assert!(!first.applied.is_empty());
    let snapshot = "SELECT md5(string_agg(x, '|' ORDER BY x)) FROM (
        SELECT n.nspname || '.' || c.relname || ':' || c.relkind::text || ':' || coalesce(array_to_string(c.relacl, ','), '') AS x
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname IN ('public', 'gpu_health')
        UNION ALL SELECT indexdef FROM pg_indexes WHERE schemaname IN ('public', 'gpu_health')
        UNION ALL SELECT version || checksum || applied_at::text FROM gpu_health.schema_migrations
        UNION ALL SELECT hypertable_name || coalesce(time_interval::text, '') FROM timescaledb_information.dimensions) s";
    let before: String = c.query_one(snapshot, &[]).await.unwrap().get(0);
    let second = apply_schema(&mut c).await.unwrap();
    assert!(
        second.applied.is_empty(),
        "second apply ran {:?}",
        second.applied
    );
    assert_eq!(second.already.len(), first.applied.len());
    let after: String = c.query_one(snapshot, &[]).await.unwrap().get(0);
    assert_eq!(before, after);
    // Chunk intervals of the seed: 1 day raw, 7 days 1-minute, 30 days 15-minute.
    for (t, days) in [
        ("gpu_metrics", 1),
        ("gpu_metrics_1min", 7),
        ("gpu_metrics_15min", 30),
        ("gpu_health_scores", 30),
    ] {
        let n = scalar_i64(&c, &format!(
            "SELECT extract(epoch FROM time_interval)::bigint FROM timescaledb_information.dimensions WHERE hypertable_name = '{t}'"
        )).await;
        assert_eq!(n, days * 86_400, "{t}");
    }
    let status = db::status::status(&c).await.unwrap();
    for t in db::status::TABLES {
        assert!(
            status.contains(t) && !status.contains(&format!("{t:<26} MISSING")),
            "{status}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn fixture_backfill_equals_sql_over_raw_rows_and_replays_idempotently() {
    require_services!(fixture_backfill_equals_sql_over_raw_rows_and_replays_idempotently: "DATABASE_URL");
    let (url, c) = fresh_db("t_backfill").await;
    let report = backfill(&url, None).await;
    assert!(report.books_balance());
    assert_eq!(
        scalar_i64(&c, "SELECT count(*) FROM gpu_metrics").await as u64,
        report.raw_rows
    );
    for (table, width) in [
        ("gpu_metrics_1min", "1 minute"),
        ("gpu_metrics_15min", "15 minutes"),
    ] {
        let rows = scalar_i64(&c, &format!("SELECT count(*) FROM {table}")).await;
        assert!(rows > 1000, "{table}: {rows}");
        let bad = scalar_i64(&c, &mismatch_sql(table, width)).await;
        assert_eq!(bad, 0, "{table}: rows differing from SQL over gpu_metrics");
    }
    // A health score for every GPU-day of the fixture.
    let missing = scalar_i64(&c, "
        SELECT count(*) FROM (SELECT DISTINCT gpu_uuid FROM gpu_metrics) g
          CROSS JOIN generate_series(timestamptz '2026-11-01', timestamptz '2026-11-03', interval '1 day') d
         WHERE NOT EXISTS (SELECT 1 FROM gpu_health_scores s WHERE s.gpu_uuid = g.gpu_uuid AND s.time = d)").await;
    assert_eq!(missing, 0);
    assert_eq!(
        scalar_i64(&c, "SELECT count(*) FROM gpu_health_scores").await,
        48
    );
    // Score rows are the GPU-days with raw rows plus `missing` days (SQL over the raw
    // rows, apart from the health stage).
    let not_matching_raw = scalar_i64(&c, "
        SELECT count(*) FROM (SELECT DISTINCT gpu_uuid, time_bucket('1 day', time) AS day FROM gpu_metrics) r
          FULL JOIN (SELECT gpu_uuid, time AS day FROM gpu_health_scores WHERE grade <> 'missing') s
            USING (gpu_uuid, day)
         WHERE r.gpu_uuid IS NULL OR s.gpu_uuid IS NULL").await;
    assert_eq!(
        not_matching_raw, 0,
        "graded days that are not the GPU-days with data"
    );
    let missing_with_data = scalar_i64(
        &c,
        "
        SELECT count(*) FROM gpu_health_scores s
         WHERE grade = 'missing'
           AND (last_seen IS NULL OR overall_score IS NOT NULL
                OR EXISTS (SELECT 1 FROM gpu_metrics m WHERE m.gpu_uuid = s.gpu_uuid
                              AND m.time >= s.time AND m.time < s.time + interval '1 day'))",
    )
    .await;
    assert_eq!(missing_with_data, 0);
    // A failure prediction beside every graded score (none for `missing` or
    // `insufficient_data`), with shares of log HR that sum to 1.
    let unmatched = scalar_i64(&c, "
        SELECT count(*) FROM (SELECT * FROM gpu_health_scores WHERE overall_score IS NOT NULL) s
          FULL JOIN gpu_failure_predictions p USING (time, gpu_uuid)
         WHERE s.gpu_uuid IS NULL OR p.gpu_uuid IS NULL
            OR p.model_name <> 'gpu-health-ph' OR NOT (p.p_fail_7d < p.p_fail_30d AND p.p_fail_30d < p.p_fail_90d)
            OR jsonb_typeof(p.feature_importance) <> 'object'
            OR (p.feature_importance <> '{}' AND abs((SELECT sum(v::float8) FROM jsonb_each_text(p.feature_importance) e(k, v)) - 1) > 1e-9)").await;
    assert_eq!(unmatched, 0, "predictions that do not match the scores");
    // gpu_assets: one row per GPU; identity of its latest raw row, first and last seen.
    let bad_assets = scalar_i64(&c, "
        WITH latest AS (SELECT DISTINCT ON (gpu_uuid) gpu_uuid, hostname, pci_bus_id, gpu_model,
                               rack_id, cluster_id, datacenter
                          FROM gpu_metrics ORDER BY gpu_uuid, time DESC),
             span AS (SELECT gpu_uuid, min(time) AS first_seen, max(time) AS last_seen
                        FROM gpu_metrics GROUP BY gpu_uuid)
        SELECT count(*) FROM latest l JOIN span s USING (gpu_uuid) FULL JOIN gpu_assets a USING (gpu_uuid)
         WHERE a.gpu_uuid IS NULL OR l.gpu_uuid IS NULL
            OR (l.hostname, l.pci_bus_id, l.gpu_model, l.rack_id, l.cluster_id, l.datacenter, s.first_seen, s.last_seen)
               IS DISTINCT FROM
               (a.hostname, a.pci_bus_id, a.gpu_model, a.rack_id, a.cluster_id, a.datacenter, a.first_seen, a.last_seen)").await;
    assert_eq!(
        bad_assets, 0,
        "gpu_assets differs from SQL over gpu_metrics"
    );
    assert_eq!(scalar_i64(&c, "SELECT count(*) FROM gpu_assets").await, 16);
    // Offsets consumed are recorded with the data.
    let next: i64 = scalar_i64(&c, "SELECT sum(next_offset)::bigint FROM gpu_health.consumed_offsets WHERE consumer_group = 'test'").await;
    assert_eq!(next as u64, report.messages);

    let before = checksums(&c).await;
    backfill(&url, None).await;
    let after = checksums(&c).await;
    assert_eq!(before, after, "replaying the same input changed a table");

    if db::edition(&c).await.unwrap() == Edition::Apache {
        // The aggregate views stand in for continuous aggregates and are refreshed.
        let bad = scalar_i64(&c, "
            SELECT count(*) FROM (SELECT time_bucket('15 minutes', time) AS bucket, gpu_uuid, max(gpu_temp) AS m
                                    FROM gpu_metrics GROUP BY 1, 2) e
              FULL JOIN gpu_temp_15min v USING (bucket, gpu_uuid)
             WHERE v.gpu_uuid IS NULL OR e.gpu_uuid IS NULL OR e.m IS DISTINCT FROM v.max_temp").await;
        assert_eq!(bad, 0, "gpu_temp_15min differs from SQL over gpu_metrics");
        assert_eq!(
            scalar_i64(
                &c,
                "SELECT count(*) FROM gpu_health.aggregate_invalidations"
            )
            .await,
            0,
            "the refresh at the end of the run consumes the log"
        );
        // Only logged ranges are recomputed: a row slipped in without a log entry stays
        // invisible, and appears once its range is logged.
        c.batch_execute(
            "INSERT INTO gpu_metrics (time, gpu_uuid, hostname, gpu_temp, validation_passed)
                  VALUES ('2026-10-15 00:05+00', 'GPU-late', 'h', 50, true);
             SELECT gpu_health.refresh_aggregates();",
        )
        .await
        .unwrap();
        let late = "SELECT count(*) FROM gpu_temp_15min WHERE gpu_uuid = 'GPU-late'
                       AND bucket = '2026-10-15 00:00+00' AND max_temp = 50 AND sample_count = 1";
        assert_eq!(scalar_i64(&c, late).await, 0);
        c.batch_execute(
            "INSERT INTO gpu_health.aggregate_invalidations VALUES ('2026-10-15 00:05+00', '2026-10-15 00:05+00');
             SELECT gpu_health.refresh_aggregates();",
        )
        .await
        .unwrap();
        assert_eq!(scalar_i64(&c, late).await, 1);
        assert!(scalar_i64(&c, "SELECT count(*) FROM fleet_health_summary").await > 0);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn retention_drops_chunks_older_than_the_policy() {
    require_services!(retention_drops_chunks_older_than_the_policy: "DATABASE_URL");
    let (_, mut c) = fresh_db("t_retention").await;
    let r = apply_schema(&mut c).await.unwrap();
    let insert = "INSERT INTO gpu_metrics (time, gpu_uuid, hostname, validation_passed) VALUES ($1, 'GPU-00000000-0000', 'h', true)";
    let now = chrono::Utc::now();
    for days in [200i64, 120, 91, 30, 1] {
        c.execute(insert, &[&(now - chrono::Duration::days(days))])
            .await
            .unwrap();
    }
    if r.edition == Edition::Apache {
        let dropped = gpu_health::db::maintain::enforce_retention(&c)
            .await
            .unwrap();
        assert_eq!(dropped, 3);
        assert_eq!(scalar_i64(&c, "SELECT count(*) FROM gpu_metrics").await, 2);
        assert_eq!(
            scalar_i64(
                &c,
                "SELECT count(*) FROM gpu_metrics WHERE time < now() - interval '90 days'"
            )
            .await,
            0
        );
    } else {
        // On the community edition the policies are TimescaleDB jobs.
        let jobs = scalar_i64(&c, "SELECT count(*) FROM timescaledb_information.jobs WHERE proc_name = 'policy_retention'").await;
        assert_eq!(jobs, 3);
    }
}

async fn sqlstate(c: &Client, sql: &str) -> Option<String> {
    match c.batch_execute(sql).await {
        Ok(()) => None,
        Err(e) => Some(
            e.code()
                .map(|s| s.code().to_owned())
                .unwrap_or_else(|| e.to_string()),
        ),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn roles_have_least_privilege() {
    require_services!(roles_have_least_privilege: "DATABASE_URL");
    let (_, mut c) = fresh_db("t_roles").await;
    apply_schema(&mut c).await.unwrap();
    let insert = "INSERT INTO gpu_metrics (time, gpu_uuid, hostname, validation_passed) VALUES (now(), 'GPU-00000000-0001', 'h', true)";
    c.batch_execute("SET ROLE gpu_health_writer").await.unwrap();
    assert_eq!(sqlstate(&c, insert).await, None);
    assert_eq!(sqlstate(&c, "INSERT INTO gpu_metrics_1min (time, gpu_uuid, hostname, sample_count, invalid_sample_count, throttle_events, thermal_throttle_events, power_throttle_events, power_cap_events) VALUES (now(), 'GPU-00000000-0001', 'h', 1, 0, 0, 0, 0, 0)").await, None);
    assert_eq!(sqlstate(&c, "SELECT count(*) FROM gpu_metrics").await, None);
    for ddl in [
        "DROP TABLE gpu_metrics",
        "ALTER TABLE gpu_metrics ADD COLUMN x int",
        "TRUNCATE gpu_metrics",
        "DELETE FROM gpu_metrics",
        "CREATE TABLE public.intruder (x int)",
    ] {
        assert_eq!(
            sqlstate(&c, ddl).await.as_deref(),
            Some("42501"),
            "writer: {ddl}"
        );
    }
    c.batch_execute("RESET ROLE; SET ROLE gpu_health_reader")
        .await
        .unwrap();
    assert_eq!(sqlstate(&c, "SELECT count(*) FROM gpu_metrics").await, None);
    assert_eq!(
        sqlstate(&c, "SELECT count(*) FROM gpu_health_scores").await,
        None
    );
    for w in [
        insert,
        "UPDATE gpu_metrics SET hostname = 'x'",
        "DROP TABLE gpu_metrics",
    ] {
        assert_eq!(
            sqlstate(&c, w).await.as_deref(),
            Some("42501"),
            "reader: {w}"
        );
    }
}
