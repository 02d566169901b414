//! Kafka end to end (DESIGN 4, 8) with a real broker (Tansu, started by scripts/test.sh;
//! KAFKA_BROKERS) and the real TimescaleDB: the fixture replayed into a topic and
//! consumed by the processor gives the same tables as the file-source run.

mod common;

use std::path::Path;
use std::time::Duration;

use common::db::{
    CHECKSUM_TABLES, assert_rows_close, checksums, fixture_pipeline, fresh_db, run_into,
    scalar_i64, table_rows,
};
use gpu_health::config::SourceConfig;
use gpu_health::replay::{ReplayOptions, replay};

fn brokers() -> String {
    std::env::var("KAFKA_BROKERS").expect(
        "KAFKA_BROKERS is not set: run the tests with scripts/test.sh, which starts a broker",
    )
}

const OFFSETS: &str = "SELECT md5(string_agg(topic || '/' || partition || '=' || next_offset, ',' ORDER BY topic, partition))
                         FROM gpu_health.consumed_offsets";

#[tokio::test(flavor = "multi_thread")]
async fn fixture_through_kafka_equals_the_file_run() {
    let topic = format!("gpu-metrics-e2e-{}", std::process::id());
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let produced = replay(&ReplayOptions {
        dump: root.join(common::FIXTURE).display().to_string(),
        brokers: brokers(),
        topic: topic.clone(),
        partitions: 4,
        rate: None,
    })
    .await
    .unwrap();

    let (ref_url, ref_c) = fresh_db("t_kafka_reference").await;
    let reference = run_into(&ref_url, fixture_pipeline(&topic)).await;
    assert_eq!(produced, reference.messages);

    let (url, c) = fresh_db("t_kafka").await;
    let mut cfg = fixture_pipeline(&topic);
    cfg.source = SourceConfig::Kafka {
        brokers: brokers(),
        topic: topic.clone(),
        group: None,
        bounded: true,
        end_linger: Duration::from_secs(2),
        properties: Default::default(),
    };
    let report = run_into(&url, cfg).await;
    assert!(report.books_balance());
    assert_eq!(report.messages, reference.messages);
    assert_eq!(report.raw_rows, reference.raw_rows);
    // Raw rows, scores, predictions, assets and dead letters are exact; rollups merge
    // their partials in arrival order, so they are equal to floating-point tolerance.
    let (got, want) = (checksums(&c).await, checksums(&ref_c).await);
    for (i, (table, order)) in CHECKSUM_TABLES.iter().enumerate() {
        if table.starts_with("gpu_metrics_1") {
            let a = table_rows(&c, table, order).await;
            let b = table_rows(&ref_c, table, order).await;
            assert_rows_close(&a, &b, table);
        } else {
            assert_eq!(got[i], want[i], "{table}");
        }
    }
    let stored: String = c.query_one(OFFSETS, &[]).await.unwrap().get(0);
    let expected: String = ref_c.query_one(OFFSETS, &[]).await.unwrap().get(0);
    assert_eq!(
        stored, expected,
        "consumed offsets differ from the file run's"
    );
    assert_eq!(
        scalar_i64(
            &c,
            "SELECT sum(next_offset)::bigint FROM gpu_health.consumed_offsets"
        )
        .await as u64,
        produced
    );

    // A second run of the same group starts at the stored offsets: nothing is re-read.
    let mut cfg = fixture_pipeline(&topic);
    cfg.source = SourceConfig::Kafka {
        brokers: brokers(),
        topic,
        group: None,
        bounded: true,
        end_linger: Duration::from_secs(2),
        properties: Default::default(),
    };
    let again = run_into(&url, cfg).await;
    assert_eq!(again.messages, 0, "a restart re-read stored input");
}
