//! The file source: streams a topic dump (see `dump`) line by line, assigning
//! per-partition offsets; `embedded:fixture` reads the fixture compiled into the binary.

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
        let reader: Box<dyn BufRead + Send> = if path == EMBEDDED_NAME {
            Box::new(std::io::BufReader::with_capacity(
                1 << 20,
                zstd::stream::read::Decoder::new(EMBEDDED_FIXTURE)
                    .map_err(|e| opening(e.into()))?,
            ))
        } else {
            open_dump(Path::new(path)).map_err(|e| opening(e.into()))?
        };
        Ok(FileSource {
            name: path.to_owned(),
            topic: topic.to_owned(),
            reader,
            line_no: 0,
            next_offset: HashMap::new(),
            line: String::new(),
        })
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
