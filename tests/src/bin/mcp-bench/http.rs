//! Just enough HTTP/1.1 for the benchmark's server and client: reading a message head and a
//! body framed by `Content-Length` or chunked encoding, everything bounded.
//!
//! Both ends keep connections alive, so a message without a length (a body that ends when the
//! connection closes) is refused rather than read to the end.

use std::io::{BufRead, Read};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};

/// Read and write timeout of every socket: an exchange that takes this long is an error.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest message head (start line and headers).
const MAX_HEAD: usize = 16 * 1024;
/// Most header lines in one head.
const MAX_HEADER_LINES: usize = 100;
/// Largest body either end accepts.
pub const MAX_BODY: usize = 1024 * 1024;
/// Longest chunk-size line (hex digits and extensions).
const MAX_CHUNK_LINE: u64 = 256;

/// A message head: the start line and the headers, names lowercased.
#[derive(Debug)]
pub struct Head {
    pub start: String,
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// The value of the first header called `name` (lowercase).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// The status code of a response head.
    pub fn status(&self) -> Result<u16> {
        let mut parts = self.start.split(' ');
        ensure!(
            parts.next() == Some("HTTP/1.1"),
            "expected an HTTP/1.1 response, got {:?}",
            self.start
        );
        parts
            .next()
            .and_then(|code| code.parse().ok())
            .with_context(|| format!("no status code in {:?}", self.start))
    }

    /// The media type (lowercase, without parameters), or "".
    pub fn media_type(&self) -> String {
        self.get("content-type")
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase())
            .unwrap_or_default()
    }

    /// Whether the peer asked to close the connection after this message.
    pub fn closes(&self) -> bool {
        self.get("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

/// Reads one message head of at most [`MAX_HEAD`] bytes and [`MAX_HEADER_LINES`] headers;
/// `None` when the peer closed cleanly before its first byte.
pub fn read_head(reader: &mut impl BufRead, line: &mut Vec<u8>) -> Result<Option<Head>> {
    let mut start = None;
    let mut headers = Vec::new();
    let mut budget = MAX_HEAD;
    loop {
        line.clear();
        let limit = u64::try_from(budget).unwrap_or(0);
        let read = reader.by_ref().take(limit).read_until(b'\n', line)?;
        if read == 0 && start.is_none() {
            return Ok(None);
        }
        ensure!(
            line.ends_with(b"\n"),
            "message head cut short or over {MAX_HEAD} bytes"
        );
        budget -= read;
        let text = std::str::from_utf8(line)
            .context("message head is not UTF-8")?
            .trim_end_matches(['\r', '\n']);
        if text.is_empty() {
            let start = start.context("empty start line")?;
            return Ok(Some(Head { start, headers }));
        }
        if start.is_none() {
            start = Some(text.to_string());
            continue;
        }
        ensure!(
            headers.len() < MAX_HEADER_LINES,
            "over {MAX_HEADER_LINES} header lines"
        );
        let (name, value) = text
            .split_once(':')
            .with_context(|| format!("malformed header line {text:?}"))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
}

/// How a message's body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Length(usize),
    Chunked,
}

/// The framing of a request (no length means no body) or of a response with a body.
pub fn framing(head: &Head, request: bool) -> Result<Framing> {
    if let Some(coding) = head.get("transfer-encoding") {
        ensure!(
            coding.eq_ignore_ascii_case("chunked"),
            "unsupported Transfer-Encoding {coding:?}"
        );
        return Ok(Framing::Chunked);
    }
    match head.get("content-length") {
        Some(value) => {
            let length: usize = value
                .parse()
                .with_context(|| format!("bad Content-Length {value:?}"))?;
            ensure!(
                length <= MAX_BODY,
                "a body of {length} bytes is over {MAX_BODY}"
            );
            Ok(Framing::Length(length))
        }
        None if request => Ok(Framing::Length(0)),
        None => bail!(
            "the response {:?} has neither Content-Length nor chunked encoding (it would end only with the connection)",
            head.start
        ),
    }
}

/// Reads a body framed by `framing` into `body` (cleared first), at most [`MAX_BODY`] bytes.
pub fn read_body(reader: &mut impl BufRead, framing: Framing, body: &mut Vec<u8>) -> Result<()> {
    body.clear();
    match framing {
        Framing::Length(length) => {
            body.resize(length, 0);
            reader.read_exact(body).context("the body was cut short")?;
        }
        Framing::Chunked => {
            let mut line = Vec::new();
            // Every chunk adds at least one byte, so MAX_BODY bounds the loop.
            loop {
                line.clear();
                reader
                    .by_ref()
                    .take(MAX_CHUNK_LINE)
                    .read_until(b'\n', &mut line)?;
                ensure!(
                    line.ends_with(b"\n"),
                    "chunk-size line cut short or too long"
                );
                let text = std::str::from_utf8(&line).context("chunk-size line is not UTF-8")?;
                let size = text.split(';').next().unwrap_or_default().trim();
                let size = usize::from_str_radix(size, 16)
                    .with_context(|| format!("bad chunk size {size:?}"))?;
                if size == 0 {
                    skip_trailers(reader, &mut line)?;
                    return Ok(());
                }
                ensure!(
                    body.len() + size <= MAX_BODY,
                    "a chunked body over {MAX_BODY} bytes"
                );
                let start = body.len();
                body.resize(start + size, 0);
                reader
                    .read_exact(&mut body[start..])
                    .context("a chunk was cut short")?;
                let mut end = [0u8; 2];
                reader
                    .read_exact(&mut end)
                    .context("a chunk was cut short")?;
                ensure!(&end == b"\r\n", "a chunk does not end with CRLF");
            }
        }
    }
    Ok(())
}

/// Reads the trailer section after the last chunk, up to its empty line.
fn skip_trailers(reader: &mut impl BufRead, line: &mut Vec<u8>) -> Result<()> {
    for _ in 0..MAX_HEADER_LINES {
        line.clear();
        reader
            .by_ref()
            .take(MAX_CHUNK_LINE * 16)
            .read_until(b'\n', line)?;
        ensure!(line.ends_with(b"\n"), "trailer cut short or too long");
        if line == b"\r\n" || line == b"\n" {
            return Ok(());
        }
    }
    bail!("over {MAX_HEADER_LINES} trailer lines")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_chunked_and_length_bodies() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\nrest";
        let mut reader = std::io::BufReader::new(&raw[..]);
        let mut line = Vec::new();
        let head = read_head(&mut reader, &mut line).unwrap().unwrap();
        assert_eq!(head.status().unwrap(), 200);
        assert_eq!(head.media_type(), "text/event-stream");
        let mut body = Vec::new();
        read_body(&mut reader, framing(&head, false).unwrap(), &mut body).unwrap();
        assert_eq!(body, b"hello world");
        let mut rest = String::new();
        reader.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "rest");

        let raw = b"POST /mcp HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}";
        let mut reader = std::io::BufReader::new(&raw[..]);
        let head = read_head(&mut reader, &mut line).unwrap().unwrap();
        read_body(&mut reader, framing(&head, true).unwrap(), &mut body).unwrap();
        assert_eq!(body, b"{}");
        assert!(read_head(&mut reader, &mut line).unwrap().is_none());
    }
}
