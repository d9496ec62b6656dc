//! Splitting a JSONL file into `POST /v1/requests/bulk` calls that every
//! deployment accepts.
//!
//! The binding limit is not the API's own (10 MiB, 10,000 lines) but the one
//! in front of it in AWS: API Gateway (HTTP API) hands the request to Lambda
//! as one JSON event, and a synchronous invocation's payload is at most
//! 6 MB = 6,291,456 bytes, envelope included. HTTP API base64-encodes a body
//! whose content type is not text or JSON, and `application/x-ndjson` (what
//! `batchq enqueue` sends) is neither, so the body grows by 4/3 on the way:
//! 6,291,456 × 3/4 = 4,718,592 bytes of NDJSON is the ceiling before the
//! envelope (request context, headers, a session token of up to a few KB)
//! takes its share. A larger call is refused as a whole by API Gateway
//! (413), not line by line.

use batchq_core::api::MAX_PAYLOAD_BYTES;

/// Most bytes in one bulk call made of several lines: 4,000,000 bytes
/// base64-encode to 5,333,336, which leaves 958,120 bytes of the 6 MB
/// invocation payload for the event envelope, a hundred times what it
/// takes. Were a proxy to deliver the body as JSON text instead of base64,
/// escaping (`"` → `\"`) would have to grow it by more than half (more than
/// one byte in three a quote or backslash) to reach the limit.
pub const BULK_BYTES: usize = 4_000_000;

/// Most lines in one bulk call: half the API's cap (10,000,
/// `api::MAX_BULK_LINES`), as before; the byte limit above usually binds
/// first for lines longer than 800 bytes.
pub const BULK_LINES: usize = 5_000;

/// Largest single line sent through `--api`: a line longer than
/// [`BULK_BYTES`] goes alone in its own call, which fits API Gateway as long
/// as its base64 form and the envelope fit 6,291,456 bytes. 4,600,000 bytes
/// encode to 6,133,336, leaving 158,120 for the envelope (still ten times
/// what it takes). This covers every line the API accepts with the default
/// `BATCHQ_MAX_BODY_BYTES` (4 MiB of `body` plus the line's other fields).
pub const API_LINE_MAX_BYTES: usize = 4_600_000;

/// Largest single line written straight to the store (no `--api`): no
/// API Gateway in between, so the API core's own payload limit.
pub const STORE_LINE_MAX_BYTES: usize = MAX_PAYLOAD_BYTES;

/// The limits one run chunks with.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_lines: usize,
    pub max_bytes: usize,
    /// A line longer than `max_bytes` is sent alone up to this size and
    /// rejected (never sent) above it.
    pub max_line_bytes: usize,
}

impl Limits {
    /// Through a running API: it may sit behind API Gateway, which the CLI
    /// cannot tell from a custom domain name, so always its limits.
    pub const API: Self = Self {
        max_lines: BULK_LINES,
        max_bytes: BULK_BYTES,
        max_line_bytes: API_LINE_MAX_BYTES,
    };
    /// Straight into the store.
    pub const STORE: Self = Self {
        max_lines: BULK_LINES,
        max_bytes: BULK_BYTES,
        max_line_bytes: STORE_LINE_MAX_BYTES,
    };
}

/// One bulk call's body: lines of the file joined by `\n` (blank ones kept,
/// so the API's line numbers plus `first_line - 1` are the file's).
#[derive(Debug, PartialEq, Eq)]
pub struct Chunk {
    pub first_line: u64,
    pub body: String,
}

/// What the chunker hands back as lines come in.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece {
    Send(Chunk),
    /// A line too long to send at all: reported as rejected, the rest of the
    /// file goes on.
    TooLong {
        line: u64,
        bytes: usize,
    },
}

/// Groups lines into chunks of at most `max_lines` lines and `max_bytes`
/// bytes (body as sent, separators included). A chunk is only ever cut
/// before a line, so no chunk of several lines passes either limit.
pub struct Chunker {
    limits: Limits,
    body: String,
    lines: usize,
    has_content: bool,
    first_line: u64,
    next_line: u64,
}

impl Chunker {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            body: String::new(),
            lines: 0,
            has_content: false,
            first_line: 1,
            next_line: 1,
        }
    }

    /// Takes the file's next line (without its line ending); returns what
    /// is ready to send or report.
    pub fn push(&mut self, line: String) -> Vec<Piece> {
        let number = self.next_line;
        self.next_line += 1;
        let mut out = Vec::new();
        if line.len() > self.limits.max_bytes {
            // Alone or not at all: what came before goes first.
            out.extend(self.take().map(Piece::Send));
            self.first_line = number + 1;
            if line.len() <= self.limits.max_line_bytes {
                out.push(Piece::Send(Chunk {
                    first_line: number,
                    body: line,
                }));
            } else {
                out.push(Piece::TooLong {
                    line: number,
                    bytes: line.len(),
                });
            }
            return out;
        }
        let separator = usize::from(self.lines > 0);
        if self.lines >= self.limits.max_lines || self.body.len() + separator + line.len() > self.limits.max_bytes {
            out.extend(self.take().map(Piece::Send));
            self.first_line = number;
        }
        if self.lines > 0 {
            self.body.push('\n');
        }
        // Blank as the API counts it (ASCII whitespace only).
        self.has_content |= !line.bytes().all(|b| b.is_ascii_whitespace());
        self.body.push_str(&line);
        self.lines += 1;
        out
    }

    /// The last chunk, once the file has ended.
    pub fn finish(&mut self) -> Option<Chunk> {
        self.take()
    }

    /// The chunk so far, unless it holds only blank lines (the API refuses
    /// a body without lines; blank lines need no call).
    fn take(&mut self) -> Option<Chunk> {
        let body = std::mem::take(&mut self.body);
        let had_content = std::mem::replace(&mut self.has_content, false);
        self.lines = 0;
        let first_line = self.first_line;
        self.first_line = self.next_line;
        had_content.then_some(Chunk { first_line, body })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(limits: Limits, lines: &[String]) -> Vec<Piece> {
        let mut c = Chunker::new(limits);
        let mut out: Vec<Piece> = lines.iter().flat_map(|l| c.push(l.clone())).collect();
        out.extend(c.finish().map(Piece::Send));
        out
    }

    /// Every line comes back exactly once, at its file position, whichever
    /// chunk it is in.
    fn check_numbering(lines: &[String], pieces: &[Piece]) {
        let mut seen = vec![false; lines.len()];
        for p in pieces {
            match p {
                Piece::Send(c) => {
                    for (i, l) in c.body.split('\n').enumerate() {
                        let n = c.first_line as usize + i;
                        assert_eq!(l, lines[n - 1], "line {n}");
                        assert!(!seen[n - 1], "line {n} sent twice");
                        seen[n - 1] = true;
                    }
                }
                Piece::TooLong { line, .. } => seen[*line as usize - 1] = true,
            }
        }
        for (i, l) in lines.iter().enumerate() {
            assert!(seen[i] || l.trim().is_empty(), "line {} lost", i + 1);
        }
    }

    fn assert_within(limits: Limits, pieces: &[Piece]) {
        for p in pieces {
            if let Piece::Send(c) = p {
                let lines = c.body.split('\n').count();
                if lines > 1 {
                    assert!(c.body.len() <= limits.max_bytes, "a chunk of {} bytes", c.body.len());
                    assert!(lines <= limits.max_lines, "a chunk of {lines} lines");
                } else {
                    assert!(
                        c.body.len() <= limits.max_line_bytes,
                        "a line of {} bytes",
                        c.body.len()
                    );
                }
            }
        }
    }

    #[test]
    fn chunks_never_pass_the_limits_whatever_the_line_lengths() {
        // The real limits scaled down 1,000 times, many random files: line
        // lengths around every boundary (tiny, just under, at, just over).
        let limits = Limits {
            max_lines: 7,
            max_bytes: 4_000,
            max_line_bytes: 4_600,
        };
        let mut rng = xorshift(7);
        for _ in 0..300 {
            let lines: Vec<String> = (0..rng() % 60)
                .map(|_| {
                    let len = match rng() % 6 {
                        0 => 0,
                        1 => rng() % 50,
                        2 => rng() % 2_000,
                        3 => 3_990 + rng() % 20,
                        4 => 4_590 + rng() % 20,
                        _ => rng() % 4_000,
                    };
                    "x".repeat(len)
                })
                .collect();
            let pieces = run(limits, &lines);
            assert_within(limits, &pieces);
            check_numbering(&lines, &pieces);
        }
    }

    #[test]
    fn chunks_of_megabyte_lines_fit_api_gateway() {
        let sizes = [
            1_000_000, 1_000_000, 1_000_000, 999_997, 1, 3_999_999, 2, 2_000_000, 2_000_000, 1_500_000, 2_600_000,
            4_000_000, 10,
        ];
        let lines: Vec<String> = sizes.iter().map(|n| "x".repeat(*n)).collect();
        let pieces = run(Limits::API, &lines);
        assert_within(Limits::API, &pieces);
        check_numbering(&lines, &pieces);
        for p in &pieces {
            let Piece::Send(c) = p else {
                panic!("no line here is over the limit")
            };
            // Base64 of the chunk fits the 6 MB Lambda payload with room to spare.
            assert!(c.body.len().div_ceil(3) * 4 + 900_000 <= 6_291_456);
        }
        // The first four lines with their separators are exactly the limit:
        // they go together, and the next line (one byte) starts a new chunk.
        let Piece::Send(first) = &pieces[0] else { panic!() };
        assert_eq!((first.first_line, first.body.len()), (1, BULK_BYTES));
        let Piece::Send(second) = &pieces[1] else { panic!() };
        assert_eq!((second.first_line, second.body.as_str()), (5, "x"));
    }

    #[test]
    fn the_limit_is_exact_including_separators() {
        let limits = Limits {
            max_lines: 100,
            max_bytes: 10,
            max_line_bytes: 10,
        };
        let lines: Vec<String> = ["aaaa", "bbbb", "c", "dddddddddd", "e"].map(String::from).to_vec();
        let bodies: Vec<String> = run(limits, &lines)
            .into_iter()
            .map(|p| match p {
                Piece::Send(c) => c.body,
                Piece::TooLong { .. } => panic!(),
            })
            .collect();
        // "aaaa\nbbbb" is 9 bytes, adding "\nc" would make 11.
        assert_eq!(bodies, ["aaaa\nbbbb", "c", "dddddddddd", "e"]);
    }

    #[test]
    fn the_line_cap_holds_and_blank_only_chunks_are_not_sent() {
        let limits = Limits {
            max_lines: 3,
            ..Limits::API
        };
        let lines: Vec<String> = ["a", "", "b", "", " ", "", "c"].map(String::from).to_vec();
        let pieces = run(limits, &lines);
        let got: Vec<(u64, String)> = pieces
            .into_iter()
            .map(|p| match p {
                Piece::Send(c) => (c.first_line, c.body),
                Piece::TooLong { .. } => panic!(),
            })
            .collect();
        // Lines 4-6 are blank: that chunk is not sent, and "c" keeps its number.
        assert_eq!(got, [(1, "a\n\nb".to_owned()), (7, "c".to_owned())]);
    }

    #[test]
    fn a_line_over_the_chunk_limit_goes_alone_or_is_reported() {
        let lines = vec![
            "small-1".to_owned(),
            "y".repeat(BULK_BYTES + 1), // alone: fits API Gateway
            "small-3".to_owned(),
            "z".repeat(API_LINE_MAX_BYTES + 1), // too long for any call through API Gateway
            "small-5".to_owned(),
        ];
        let pieces = run(Limits::API, &lines);
        let summary: Vec<(u64, usize, bool)> = pieces
            .iter()
            .map(|p| match p {
                Piece::Send(c) => (c.first_line, c.body.len(), true),
                Piece::TooLong { line, bytes } => (*line, *bytes, false),
            })
            .collect();
        assert_eq!(
            summary,
            [
                (1, 7, true),
                (2, BULK_BYTES + 1, true),
                (3, 7, true),
                (4, API_LINE_MAX_BYTES + 1, false),
                (5, 7, true)
            ]
        );
        check_numbering(&lines, &pieces);
        // Straight into the store the same line is sent: no API Gateway there.
        let pieces = run(Limits::STORE, &lines);
        assert!(pieces.iter().all(|p| matches!(p, Piece::Send(_))));
        // The lone line's base64 form still fits the invocation payload.
        assert!(API_LINE_MAX_BYTES.div_ceil(3) * 4 + 150_000 <= 6_291_456);
    }

    /// A tiny deterministic generator (xorshift), so the test needs no crate.
    fn xorshift(seed: u64) -> impl FnMut() -> usize {
        let mut s = seed;
        move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s as usize
        }
    }
}
