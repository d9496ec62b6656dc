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
///
/// A line that lies within one chunk of the stream is handed out as a slice
/// of that chunk (no copy); only a line split across chunks is gathered in a
/// buffer. Copying every byte into one buffer first cost ingest about a
/// tenth of its parse time (`make bench`).
pub struct LineReader {
    stream: ByteStream,
    /// The unread rest of the stream's current chunk.
    chunk: Bytes,
    /// The start of a line begun in earlier chunks (no newline in it).
    buf: BytesMut,
    max_line: usize,
    line_no: u64,
    eof: bool,
    /// Inside an over-long line: bytes dropped so far, and its head.
    discarding: Option<(u64, Bytes)>,
    /// Bytes of the stream taken out of `chunk` so far (into lines or `buf`).
    taken: u64,
    /// Where the last [`Line::Data`] handed out starts in the stream.
    last_offset: u64,
}

impl LineReader {
    pub fn new(stream: ByteStream, max_line: usize) -> Self {
        Self {
            stream,
            chunk: Bytes::new(),
            buf: BytesMut::new(),
            max_line,
            line_no: 0,
            eof: false,
            discarding: None,
            taken: 0,
            last_offset: 0,
        }
    }

    /// The byte offset in the stream of the first byte of the last
    /// [`Line::Data`] returned: with its length, the range of the file
    /// that holds the line.
    pub fn last_line_offset(&self) -> u64 {
        self.last_offset
    }

    /// Lines read so far (including blank and over-long ones).
    pub fn lines_read(&self) -> u64 {
        self.line_no
    }

    pub async fn next_line(&mut self) -> Result<Option<Line>, StoreError> {
        loop {
            if let Some(pos) = memchr::memchr(b'\n', &self.chunk) {
                let start = self.taken - self.buf.len() as u64;
                self.taken += pos as u64 + 1;
                let mut piece = self.chunk.split_to(pos + 1);
                piece.truncate(pos);
                let mut line = if self.buf.is_empty() {
                    piece
                } else {
                    self.buf.extend_from_slice(&piece);
                    self.buf.split().freeze()
                };
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
                self.last_offset = start;
                return Ok(Some(Line::Data {
                    number: self.line_no,
                    bytes: line,
                }));
            }
            // No newline in the rest of the chunk: it continues the line.
            if !self.chunk.is_empty() {
                self.taken += self.chunk.len() as u64;
                self.buf.extend_from_slice(&self.chunk);
                self.chunk.clear();
            }
            if self.buf.len() > self.max_line {
                let head = head_of(&self.buf);
                self.discarding.get_or_insert((0, head)).0 += self.buf.len() as u64;
                self.buf.clear();
            }
            if self.eof {
                if self.buf.is_empty() && self.discarding.is_none() {
                    return Ok(None);
                }
                // Last line without a terminating newline.
                self.line_no += 1;
                let start = self.taken - self.buf.len() as u64;
                let line = self.buf.split().freeze();
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
                self.last_offset = start;
                return Ok(Some(Line::Data {
                    number: self.line_no,
                    bytes: line,
                }));
            }
            match self.stream.next().await {
                Some(chunk) => self.chunk = chunk?,
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

    /// Lines as (number, Some(bytes)) or, over the limit, (number, None)
    /// with the bytes counted: what every chunking must agree on (an
    /// over-long line's head is what had arrived when it went over).
    async fn lines_of(file: &'static [u8], chunk: usize, max: usize) -> Vec<(u64, Option<Bytes>, u64)> {
        let mut r = LineReader::new(stream_of(file.chunks(chunk).collect()), max);
        let mut v = Vec::new();
        while let Some(l) = r.next_line().await.unwrap() {
            v.push(match l {
                Line::Data { number, bytes } => {
                    let at = r.last_line_offset() as usize;
                    assert_eq!(
                        &file[at..at + bytes.len()],
                        &bytes[..],
                        "line {number}: its offset names its bytes in the file"
                    );
                    (number, Some(bytes.clone()), bytes.len() as u64)
                }
                Line::TooLong { number, bytes, head } => {
                    assert!(
                        file.windows(head.len()).any(|w| w == &head[..]),
                        "the head is the line's"
                    );
                    (number, None, bytes)
                }
            });
        }
        v
    }

    #[tokio::test]
    async fn every_chunking_of_a_stream_reads_the_same_lines() {
        let file: &'static [u8] =
            b"{\"a\":1}\r\n\n  \n{\"long line\":\"0123456789\"}\nok\r\n{}\n\nlast line with no newline";
        let whole = lines_of(file, file.len(), 25).await;
        assert_eq!(whole.len(), 5);
        assert_eq!(whole[0], (1, Some(Bytes::from_static(b"{\"a\":1}")), 7));
        assert_eq!(whole[1].0, 4);
        assert_eq!((whole[1].1.as_ref(), whole[1].2), (None, 26));
        assert_eq!(whole[4].1.as_deref(), Some(&b"last line with no newline"[..]));
        for chunk in 1..file.len() {
            assert_eq!(lines_of(file, chunk, 25).await, whole, "chunks of {chunk} bytes");
        }
    }

    #[tokio::test]
    async fn empty_stream_has_no_lines() {
        assert!(collect(vec![], 8).await.is_empty());
        assert!(collect(vec![b"\n\n"], 8).await.is_empty());
    }
}
