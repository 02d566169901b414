//! The file source: streams a topic dump (see `dump`) line by line, assigning
//! per-partition offsets; `embedded:fixture` reads the fixture compiled into the binary.
//! It learns the dump's partitions up front (one quick pass), so that a dump written
//! one partition after another holds the watermark back for the partitions still to
//! come, and gives the same tables as an interleaved one.

use std::collections::HashMap;
use std::io::BufRead;
use std::path::Path;

use crate::dump::{DumpRecord, Message, open_dump};
use crate::error::SourceError;

/// The bundled fixture (see `fixtures/README.md` for the command that made it).
pub const EMBEDDED_FIXTURE: &[u8] = include_bytes!("../../fixtures/fleet-16gpu-3d.jsonl.zst");
pub const EMBEDDED_NAME: &str = "embedded:fixture";

pub struct FileSource {
    name: String,
    /// Every partition the dump holds, in order.
    partitions: Vec<i32>,
    topic: String,
    reader: Box<dyn BufRead + Send>,
    line_no: usize,
    next_offset: HashMap<i32, i64>,
    line: String,
}

impl FileSource {
    pub fn open(path: &str, topic: &str) -> Result<Self, SourceError> {
        let opening = |source: crate::error::BoxError| SourceError::Open {
            path: path.to_owned(),
            source,
        };
        let partitions = scan_partitions(path, open_reader(path).map_err(opening)?)?;
        let reader = open_reader(path).map_err(opening)?;
        Ok(FileSource {
            name: path.to_owned(),
            partitions,
            topic: topic.to_owned(),
            reader,
            line_no: 0,
            next_offset: HashMap::new(),
            line: String::new(),
        })
    }

    /// Every partition of the dump.
    pub fn partitions(&self) -> &[i32] {
        &self.partitions
    }

    pub fn describe(&self) -> String {
        format!("file {} (topic {})", self.name, self.topic)
    }

    pub fn next_batch(&mut self, max: usize) -> Result<Option<Vec<Message>>, SourceError> {
        let mut out = Vec::with_capacity(max.min(1 << 16));
        while out.len() < max {
            self.line.clear();
            let n = self
                .reader
                .read_line(&mut self.line)
                .map_err(|source| SourceError::Io {
                    path: self.name.clone(),
                    line: self.line_no + 1,
                    source,
                })?;
            if n == 0 {
                break;
            }
            self.line_no += 1;
            if self.line.trim().is_empty() {
                continue;
            }
            let damaged = |source: crate::error::BoxError| SourceError::Record {
                path: self.name.clone(),
                line: self.line_no,
                source,
            };
            let rec: DumpRecord =
                serde_json::from_str(&self.line).map_err(|e| damaged(e.into()))?;
            let value = rec.value_bytes().map_err(|e| damaged(e.into()))?;
            let offset = self.next_offset.entry(rec.partition).or_insert(0);
            out.push(Message {
                key: rec.key.map(String::into_bytes),
                value,
                topic: self.topic.clone(),
                partition: rec.partition,
                offset: *offset,
            });
            *offset += 1;
        }
        Ok((!out.is_empty()).then_some(out))
    }
}

fn open_reader(path: &str) -> Result<Box<dyn BufRead + Send>, crate::error::BoxError> {
    Ok(if path == EMBEDDED_NAME {
        Box::new(std::io::BufReader::with_capacity(
            1 << 20,
            zstd::stream::read::Decoder::new(EMBEDDED_FIXTURE)?,
        ))
    } else {
        open_dump(Path::new(path))?
    })
}

/// The partitions a dump's records name (a damaged line is reported when it is read).
fn scan_partitions(path: &str, reader: Box<dyn BufRead + Send>) -> Result<Vec<i32>, SourceError> {
    #[derive(serde::Deserialize)]
    struct PartitionOnly {
        #[serde(default)]
        partition: i32,
    }
    let mut seen = std::collections::BTreeSet::new();
    for (n, line) in reader.lines().enumerate() {
        let line = line.map_err(|source| SourceError::Io {
            path: path.to_owned(),
            line: n + 1,
            source,
        })?;
        if let Ok(r) = serde_json::from_str::<PartitionOnly>(&line) {
            seen.insert(r.partition);
        }
    }
    Ok(seen.into_iter().collect())
}
