//! Topic dumps: the on-disk form of a Kafka topic, one JSON line per message.
//!
//! A line is `{"key": "...", "partition": 0, "value": "<original message text>"}`.
//! The value is kept as text, not as parsed JSON, because a dump must be able to carry
//! malformed messages byte for byte; values that are not UTF-8 travel as `value_b64`.
//! Files ending in `.zst` are zstd-compressed, `.gz` gzip-compressed.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// One message as it travels through the source: raw bytes plus where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// The JSON form of one dump line.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DumpRecord {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default)]
    pub partition: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_b64: Option<String>,
}

impl DumpRecord {
    /// A record for a message whose value is arbitrary bytes.
    pub fn new(key: Option<&str>, partition: i32, value: &[u8]) -> Self {
        match std::str::from_utf8(value) {
            Ok(text) => DumpRecord {
                key: key.map(str::to_owned),
                partition,
                value: Some(text.to_owned()),
                value_b64: None,
            },
            Err(_) => DumpRecord {
                key: key.map(str::to_owned),
                partition,
                value: None,
                value_b64: Some(base64_encode(value)),
            },
        }
    }

    pub fn value_bytes(&self) -> Result<Vec<u8>> {
        match (&self.value, &self.value_b64) {
            (Some(v), _) => Ok(v.as_bytes().to_vec()),
            (None, Some(b)) => base64_decode(b).context("value_b64 is not valid base64"),
            (None, None) => Ok(Vec::new()),
        }
    }
}

/// Kafka's default partitioner for keyed messages (murmur2, positive part, modulo),
/// so that a dump's partitions match what a Kafka producer would choose.
pub fn kafka_partition(key: &[u8], partitions: i32) -> i32 {
    let hash = murmur2(key) & 0x7fff_ffff;
    (hash % partitions.max(1) as u32) as i32
}

fn murmur2(data: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = SEED ^ len as u32;
    let chunks = data.chunks_exact(4);
    let tail = chunks.remainder();
    for c in chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    match tail.len() {
        3 => {
            h ^= (tail[2] as u32) << 16;
            h ^= (tail[1] as u32) << 8;
            h ^= tail[0] as u32;
            h = h.wrapping_mul(M);
        }
        2 => {
            h ^= (tail[1] as u32) << 8;
            h ^= tail[0] as u32;
            h = h.wrapping_mul(M);
        }
        1 => {
            h ^= tail[0] as u32;
            h = h.wrapping_mul(M);
        }
        _ => {}
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

/// Writes dump lines, compressing by the file's extension.
pub struct DumpWriter {
    out: Box<dyn Write>,
}

impl DumpWriter {
    pub fn create(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating directory {}", dir.display()))?;
        }
        let file =
            File::create(path).with_context(|| format!("creating dump {}", path.display()))?;
        let name = path.to_string_lossy();
        let out: Box<dyn Write> = if name.ends_with(".zst") {
            let mut enc = zstd::stream::write::Encoder::new(file, 19)?;
            enc.long_distance_matching(true)?;
            enc.window_log(27)?;
            Box::new(enc.auto_finish())
        } else if name.ends_with(".gz") {
            Box::new(flate2::write::GzEncoder::new(
                file,
                flate2::Compression::best(),
            ))
        } else {
            Box::new(BufWriter::new(file))
        };
        Ok(DumpWriter { out })
    }

    pub fn write(&mut self, record: &DumpRecord) -> Result<()> {
        serde_json::to_writer(&mut self.out, record)?;
        self.out.write_all(b"\n")?;
        Ok(())
    }

    pub fn finish(mut self) -> Result<()> {
        self.out.flush()?;
        Ok(())
    }
}

/// Opens a dump for reading, decompressing by the file's extension.
pub fn open_dump(path: &Path) -> Result<Box<dyn BufRead + Send>> {
    let file = File::open(path).with_context(|| format!("opening dump {}", path.display()))?;
    let name = path.to_string_lossy();
    let inner: Box<dyn Read + Send> = if name.ends_with(".zst") {
        Box::new(zstd::stream::read::Decoder::new(file)?)
    } else if name.ends_with(".gz") {
        Box::new(flate2::read::MultiGzDecoder::new(file))
    } else {
        Box::new(file)
    };
    Ok(Box::new(BufReader::with_capacity(1 << 20, inner)))
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn base64_decode(text: &str) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in text.bytes().filter(|c| *c != b'=') {
        let v = B64
            .iter()
            .position(|x| *x == c)
            .ok_or_else(|| anyhow::anyhow!("invalid base64 character {:?}", c as char))?;
        acc = acc << 6 | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits & 0xff) as u8);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_arbitrary_bytes() {
        for len in 0..20u8 {
            let data: Vec<u8> = (0..len).map(|i| i.wrapping_mul(97) ^ 0xa5).collect();
            assert_eq!(base64_decode(&base64_encode(&data)).unwrap(), data);
        }
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
    }

    #[test]
    fn murmur2_matches_kafka_reference_values() {
        // Values from Kafka's UtilsTest.testMurmur2.
        assert_eq!(murmur2(b"21") as i32, -973932308);
        assert_eq!(murmur2(b"foobar") as i32, -790332482);
        assert_eq!(murmur2(b"a-little-bit-long-string") as i32, -985981536);
        assert_eq!(murmur2(b"a-little-bit-longer-string") as i32, -1486304829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") as i32,
            -58897971
        );
    }
}
