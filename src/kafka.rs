//! Every Kafka client of the process (the source's consumer, the output topics' and
//! `replay`'s producers, the admin client that creates topics) is built here, from one
//! `KafkaConnection`: the brokers and the configured librdkafka properties, whose
//! secrets (`${env:}`/`${file:}`) the config has already resolved. TLS and SASL are
//! such properties (`security.protocol`, `ssl.*`, `sasl.*`), so every client speaks to
//! a secured cluster the same way.

use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::{ClientConfig, FromClientConfigAndContext};
use rdkafka::consumer::{ConsumerContext, StreamConsumer};
use rdkafka::producer::FutureProducer;
use rdkafka::types::RDKafkaErrorCode;

use crate::error::{ErrorClass, KafkaError};

/// Where a cluster is and how to speak to it.
#[derive(Debug, Clone, Default)]
pub struct KafkaConnection {
    /// `host:port[,host:port...]`.
    pub brokers: String,
    /// librdkafka properties applied to every client after its defaults, so that they
    /// win (security, timeouts, tuning).
    pub properties: Vec<(String, String)>,
}

/// The librdkafka settings of one kind of client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// A consumer-group member that commits by hand (offsets live with the data).
    Consumer,
    /// The output topics: idempotent, at least once, a flush awaits every ack.
    TopicProducer,
    /// `gpu-health replay`: idempotent, large batches unless told otherwise.
    ReplayProducer { batch_records: Option<u32> },
    /// Creates topics.
    Admin,
}

/// Messages may carry a dead letter's original bytes or a dump's `too_large` samples:
/// the producers accept up to 8 MiB (the broker still enforces its own limit).
const MAX_MESSAGE_BYTES: &str = "8388608";

impl KafkaConnection {
    pub fn new(brokers: &str, properties: impl IntoIterator<Item = (String, String)>) -> Self {
        KafkaConnection {
            brokers: brokers.to_owned(),
            properties: properties.into_iter().collect(),
        }
    }

    /// The client settings for `role`: its defaults, then the configured properties.
    pub(crate) fn config(&self, role: Role) -> ClientConfig {
        let mut cfg = ClientConfig::new();
        cfg.set("bootstrap.servers", &self.brokers);
        match role {
            Role::Consumer => {
                cfg.set("enable.auto.commit", "false")
                    .set("enable.auto.offset.store", "false")
                    .set("auto.offset.reset", "earliest")
                    // The source is not polled while the sink waits for the database; an
                    // outage must not cost the group membership.
                    .set("max.poll.interval.ms", "3600000")
                    // Tansu answers a fetch only after the full wait even when it has
                    // data: at librdkafka's 500 ms the fixture took 19 s, at 10 ms 4.8 s
                    // (2 s of it the end linger). A real broker answers at once; 10 ms
                    // costs it idle polls.
                    .set("fetch.wait.max.ms", "10")
                    // Feeds the consumer-lag gauge (the source's statistics callback).
                    .set("statistics.interval.ms", "5000");
            }
            Role::TopicProducer => {
                cfg.set("enable.idempotence", "true")
                    .set("linger.ms", "5")
                    .set("message.max.bytes", MAX_MESSAGE_BYTES)
                    .set("message.timeout.ms", "300000");
            }
            Role::ReplayProducer { batch_records } => {
                cfg.set("enable.idempotence", "true")
                    // Dumps may hold messages over Kafka's 1 MB default: the processor,
                    // not the producer, is the one to dead-letter them.
                    .set("message.max.bytes", MAX_MESSAGE_BYTES)
                    .set("linger.ms", "20")
                    .set("message.timeout.ms", "60000")
                    .set(
                        "batch.num.messages",
                        batch_records.unwrap_or(10_000).to_string(),
                    );
            }
            Role::Admin => {}
        }
        for (k, v) in &self.properties {
            cfg.set(k, v);
        }
        cfg
    }

    fn create<T: FromClientConfigAndContext<C>, C: ClientContext>(
        &self,
        role: Role,
        what: &'static str,
        context: C,
    ) -> Result<T, KafkaError> {
        self.config(role)
            .create_with_context(context)
            .map_err(|source| KafkaError::Client {
                what,
                brokers: self.brokers.clone(),
                class: ErrorClass::Configuration,
                source,
            })
    }

    /// A consumer-group member with the source's callbacks.
    pub(crate) fn consumer<C: ConsumerContext + 'static>(
        &self,
        group: &str,
        context: C,
    ) -> Result<StreamConsumer<C>, KafkaError> {
        let mut with_group = self.clone();
        with_group
            .properties
            .insert(0, ("group.id".to_owned(), group.to_owned()));
        with_group.create(Role::Consumer, "consumer", context)
    }

    pub(crate) fn producer(&self, role: Role) -> Result<FutureProducer, KafkaError> {
        self.create(role, "producer", DefaultClientContext)
    }

    pub(crate) fn admin(&self) -> Result<AdminClient<DefaultClientContext>, KafkaError> {
        self.create(Role::Admin, "admin client", DefaultClientContext)
    }

    /// Creates `topic` with `partitions` partitions unless it exists, replicated
    /// `replication` times (`None`: the broker's `default.replication.factor`).
    pub async fn ensure_topic(
        &self,
        topic: &str,
        partitions: i32,
        replication: Option<i16>,
    ) -> Result<(), KafkaError> {
        let admin = self.admin()?;
        let failed = |source| KafkaError::Topic {
            topic: topic.to_owned(),
            class: ErrorClass::Retriable,
            source,
        };
        let results = admin
            .create_topics(
                &[NewTopic::new(
                    topic,
                    partitions,
                    // -1 asks the broker for its default (KIP-464).
                    TopicReplication::Fixed(replication.map_or(-1, i32::from)),
                )],
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
            )
            .await
            .map_err(failed)?;
        for r in results {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((_, code)) => return Err(failed(rdkafka::error::KafkaError::AdminOp(code))),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secured() -> KafkaConnection {
        KafkaConnection::new(
            "127.0.0.1:1",
            [
                ("security.protocol".to_owned(), "sasl_ssl".to_owned()),
                ("sasl.mechanism".to_owned(), "PLAIN".to_owned()),
                ("sasl.username".to_owned(), "writer".to_owned()),
                ("sasl.password".to_owned(), "not-a-secret".to_owned()),
                ("client.id".to_owned(), "gpu-health-test".to_owned()),
            ],
        )
    }

    #[test]
    fn every_role_gets_the_configured_properties_over_its_defaults() {
        let c = secured();
        for role in [
            Role::Consumer,
            Role::TopicProducer,
            Role::ReplayProducer {
                batch_records: Some(1),
            },
            Role::Admin,
        ] {
            let cfg = c.config(role);
            assert_eq!(cfg.get("bootstrap.servers"), Some("127.0.0.1:1"));
            assert_eq!(cfg.get("security.protocol"), Some("sasl_ssl"), "{role:?}");
            assert_eq!(cfg.get("sasl.username"), Some("writer"), "{role:?}");
        }
        // A configured property wins over a role's default.
        let mut c = secured();
        c.properties
            .push(("message.timeout.ms".to_owned(), "1234".to_owned()));
        assert_eq!(
            c.config(Role::TopicProducer).get("message.timeout.ms"),
            Some("1234")
        );
    }

    #[test]
    fn the_admin_client_is_built_from_the_properties() {
        // librdkafka checks property values when a client is created: an admin client
        // that refuses a bogus protocol was given the property.
        let bogus = KafkaConnection::new(
            "127.0.0.1:1",
            [("security.protocol".to_owned(), "carrier-pigeon".to_owned())],
        );
        let err = bogus.admin().expect_err("a bogus protocol is refused");
        assert!(format!("{err}").contains("admin client"), "{err}");
        assert_eq!(err.class(), ErrorClass::Configuration);
        // SASL without a password is refused too: the admin client reads sasl.* as well.
        let mut half = secured();
        half.properties.retain(|(k, _)| k != "sasl.password");
        assert!(half.admin().is_err());
        if let Err(e) = secured().admin() {
            panic!("{}", crate::error::chain(&e));
        }
    }
}
