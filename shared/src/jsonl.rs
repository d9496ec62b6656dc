//! JSONL framing: splitting a byte stream into lines without holding more
//! than one line (bounded) in memory. Format-free: what a line says is the
//! provider's format's business (`provider::format`).

use bytes::{Bytes, BytesMut};
use futures::StreamExt;

use crate::store::{ByteStream, StoreError};

/// One line of a JSONL stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// A line's bytes without the line terminator. `number` is 1-based.
    Data { number: u64, bytes: Bytes },
    /// A line longer than the reader's limit; its bytes were skipped but
    /// for its first [`TOO_LONG_HEAD`] (which name what the line is about).
    TooLong { number: u64, bytes: u64, head: Bytes },
}

/// Bytes kept of an over-long line.
pub const TOO_LONG_HEAD: usize = 1024;

fn head_of(line: &[u8]) -> Bytes {
    Bytes::copy_from_slice(&line[..line.len().min(TOO_LONG_HEAD)])
}

/// Reads lines from a byte stream. Blank lines are skipped (but counted, so
/// line numbers match the file). A last line without a newline is returned.
pub struct LineReader {
    stream: ByteStream,
    buf: BytesMut,
    /// Bytes of `buf` already searched for a newline.
    scanned: usize,
    max_line: usize,
    line_no: u64,
    eof: bool,
    /// Inside an over-long line: bytes dropped so far, and its head.
    discarding: Option<(u64, Bytes)>,
}

impl LineReader {
    pub fn new(stream: ByteStream, max_line: usize) -> Self {
        Self {
            stream,
            buf: BytesMut::new(),
            scanned: 0,
            max_line,
            line_no: 0,
            eof: false,
            discarding: None,
        }
    }

    /// Lines read so far (including blank and over-long ones).
    pub fn lines_read(&self) -> u64 {
        self.line_no
    }

    pub async fn next_line(&mut self) -> Result<Option<Line>, StoreError> {
        loop {
            if let Some(pos) = memchr::memchr(b'\n', &self.buf[self.scanned..]) {
                let end = self.scanned + pos;
                let mut line = self.buf.split_to(end + 1);
                self.scanned = 0;
                line.truncate(end);
                if line.last() == Some(&b'\r') {
                    line.truncate(line.len() - 1);
                }
                self.line_no += 1;
                if let Some((dropped, head)) = self.discarding.take() {
                    return Ok(Some(Line::TooLong {
                        number: self.line_no,
                        bytes: dropped + line.len() as u64,
                        head,
                    }));
                }
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                if line.len() > self.max_line {
                    return Ok(Some(Line::TooLong {
                        number: self.line_no,
                        bytes: line.len() as u64,
                        head: head_of(&line),
                    }));
                }
                return Ok(Some(Line::Data {
                    number: self.line_no,
                    bytes: line.freeze(),
                }));
            }
            self.scanned = self.buf.len();
            if self.buf.len() > self.max_line {
                let head = head_of(&self.buf);
                self.discarding.get_or_insert((0, head)).0 += self.buf.len() as u64;
                self.buf.clear();
                self.scanned = 0;
            }
            if self.eof {
                if self.buf.is_empty() && self.discarding.is_none() {
                    return Ok(None);
                }
                // Last line without a terminating newline.
                self.line_no += 1;
                let line = self.buf.split().freeze();
                self.scanned = 0;
                if let Some((dropped, head)) = self.discarding.take() {
                    return Ok(Some(Line::TooLong {
                        number: self.line_no,
                        bytes: dropped + line.len() as u64,
                        head,
                    }));
                }
                if line.iter().all(u8::is_ascii_whitespace) {
                    return Ok(None);
                }
                return Ok(Some(Line::Data {
                    number: self.line_no,
                    bytes: line,
                }));
            }
            match self.stream.next().await {
                Some(chunk) => self.buf.extend_from_slice(&chunk?),
                None => self.eof = true,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream_of(chunks: Vec<&'static [u8]>) -> ByteStream {
        futures::stream::iter(chunks.into_iter().map(|c| Ok(Bytes::from_static(c)))).boxed()
    }

    async fn collect(chunks: Vec<&'static [u8]>, max: usize) -> Vec<Line> {
        let mut r = LineReader::new(stream_of(chunks), max);
        let mut v = Vec::new();
        while let Some(l) = r.next_line().await.unwrap() {
            v.push(l);
        }
        v
    }

    fn data(n: u64, s: &'static str) -> Line {
        Line::Data {
            number: n,
            bytes: Bytes::from_static(s.as_bytes()),
        }
    }

    #[tokio::test]
    async fn lines_split_across_chunks_are_joined() {
        let v = collect(vec![b"{\"a\"", b":1}\n{\"b\":2}\r\n\n", b"{\"c\":3}"], 100).await;
        assert_eq!(
            v,
            vec![data(1, "{\"a\":1}"), data(2, "{\"b\":2}"), data(4, "{\"c\":3}")]
        );
    }

    #[tokio::test]
    async fn over_long_lines_are_reported_and_skipped() {
        let v = collect(
            vec![b"short\n", b"0123456789", b"0123456789\nok\n", b"0123456789abc"],
            8,
        )
        .await;
        assert_eq!(
            v,
            vec![
                data(1, "short"),
                Line::TooLong {
                    number: 2,
                    bytes: 20,
                    head: Bytes::from_static(b"0123456789")
                },
                data(3, "ok"),
                Line::TooLong {
                    number: 4,
                    bytes: 13,
                    head: Bytes::from_static(b"0123456789abc")
                },
            ]
        );
    }

    #[tokio::test]
    async fn empty_stream_has_no_lines() {
        assert!(collect(vec![], 8).await.is_empty());
        assert!(collect(vec![b"\n\n"], 8).await.is_empty());
    }
}
