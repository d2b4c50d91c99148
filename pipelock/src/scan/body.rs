//! Request bodies by content type: the text DLP should see in a body, or why the body cannot
//! be read (which the caller blocks, since what cannot be read cannot be scanned).
//!
//! - JSON (`application/json`, `*+json`): every key, string and number, at any depth, one per
//!   line, with escapes undone. Invalid JSON is an error.
//! - Forms (`application/x-www-form-urlencoded`): every key and value, percent-decoded. A
//!   malformed escape or a value that is not UTF-8 is an error.
//! - Multipart (`multipart/*`): each part's headers and body, whatever its declared type,
//!   with `Content-Transfer-Encoding` base64 or quoted-printable undone. No boundary, more than
//!   [`MAX_PARTS`] parts, a file name longer than [`MAX_FILENAME`] bytes or an undecodable
//!   part is an error.
//! - Anything else (text, XML, unknown or missing type): the body as text.
//!
//! Non-identity `Content-Encoding` (gzip and the like) is refused by the caller before this:
//! compressed bytes cannot be scanned.

/// Parts a multipart body may have.
pub const MAX_PARTS: usize = 100;
/// Bytes a multipart file name may have.
pub const MAX_FILENAME: usize = 256;

/// Why a body cannot be scanned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("invalid JSON body: {0}")]
    Json(String),
    #[error("invalid form body: {0}")]
    Form(String),
    #[error("multipart body without a boundary parameter")]
    NoBoundary,
    #[error("multipart body: {0}")]
    Multipart(String),
}

/// One piece of text extracted from a body, and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// `raw`, `json`, `form` or `multipart part N`.
    pub source: String,
    pub text: String,
}

/// The text of `body` to scan, by its `content_type` (the header's value, parameters and
/// all).
///
/// # Errors
/// A body that its content type says is structured but that does not parse.
pub fn extract(body: &[u8], content_type: Option<&str>) -> Result<Vec<Segment>, BodyError> {
    let (essence, params) = split_content_type(content_type.unwrap_or(""));
    if essence == "application/json" || essence.ends_with("+json") {
        return json(body).map(|text| vec![segment("json", text)]);
    }
    if essence == "application/x-www-form-urlencoded" {
        return form(body).map(|text| vec![segment("form", text)]);
    }
    if essence.starts_with("multipart/") {
        let boundary = params
            .iter()
            .find(|(k, _)| k == "boundary")
            .map(|(_, v)| v.clone())
            .filter(|b| !b.is_empty())
            .ok_or(BodyError::NoBoundary)?;
        return multipart(body, &boundary);
    }
    Ok(vec![segment(
        "raw",
        String::from_utf8_lossy(body).into_owned(),
    )])
}

fn segment(source: &str, text: String) -> Segment {
    Segment {
        source: source.to_string(),
        text,
    }
}

/// The lowercased `type/subtype` and the parameters (names lowercased, quotes removed).
fn split_content_type(value: &str) -> (String, Vec<(String, String)>) {
    let mut pieces = value.split(';');
    let essence = pieces.next().unwrap_or("").trim().to_ascii_lowercase();
    let params = pieces
        .filter_map(|p| {
            let (k, v) = p.split_once('=')?;
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v);
            Some((k.trim().to_ascii_lowercase(), v.to_string()))
        })
        .collect();
    (essence, params)
}

fn json(body: &[u8]) -> Result<String, BodyError> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| BodyError::Json(e.to_string()))?;
    let mut out = String::with_capacity(body.len());
    // Iterative, so no input depth costs stack (serde_json already caps nesting at 128).
    enum Item<'a> {
        Value(&'a serde_json::Value),
        Key(&'a str),
    }
    let mut stack = vec![Item::Value(&value)];
    while let Some(item) = stack.pop() {
        match item {
            Item::Key(k) => push_line(&mut out, k),
            Item::Value(serde_json::Value::String(s)) => push_line(&mut out, s),
            Item::Value(serde_json::Value::Number(n)) => push_line(&mut out, &n.to_string()),
            Item::Value(serde_json::Value::Array(items)) => {
                stack.extend(items.iter().rev().map(Item::Value));
            }
            Item::Value(serde_json::Value::Object(map)) => {
                for (k, v) in map.iter().rev() {
                    stack.push(Item::Value(v));
                    stack.push(Item::Key(k));
                }
            }
            Item::Value(serde_json::Value::Bool(_) | serde_json::Value::Null) => {}
        }
    }
    Ok(out)
}

fn push_line(out: &mut String, s: &str) {
    if !out.is_empty() {
        out.push('\n');
    }
    out.push_str(s);
}

fn form(body: &[u8]) -> Result<String, BodyError> {
    let mut out = String::with_capacity(body.len());
    for pair in body.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
        let (key, value) = match pair.iter().position(|b| *b == b'=') {
            Some(at) => (&pair[..at], &pair[at + 1..]),
            None => (pair, &pair[..0]),
        };
        let key = percent_decode(key)?;
        let value = percent_decode(value)?;
        push_line(&mut out, &format!("{key}={value}"));
    }
    Ok(out)
}

/// Form percent-decoding (`+` is a space); a malformed escape or non-UTF-8 result is an error.
fn percent_decode(bytes: &[u8]) -> Result<String, BodyError> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| BodyError::Form(format!("malformed escape at byte {i}")))?;
                out.push(hex);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| BodyError::Form("a value is not UTF-8".to_string()))
}

fn multipart(body: &[u8], boundary: &str) -> Result<Vec<Segment>, BodyError> {
    let delimiter = format!("--{boundary}");
    let finder = memchr::memmem::Finder::new(delimiter.as_bytes());
    let starts: Vec<usize> = finder.find_iter(body).collect();
    if starts.is_empty() {
        return Err(BodyError::Multipart(
            "the boundary does not occur in the body".to_string(),
        ));
    }
    let mut segments = Vec::new();
    // The preamble (before the first delimiter) is scanned too: a client may hide data there.
    let preamble = &body[..starts[0]];
    if !preamble.iter().all(u8::is_ascii_whitespace) {
        segments.push(segment(
            "multipart preamble",
            String::from_utf8_lossy(preamble).into_owned(),
        ));
    }
    let mut closed = false;
    for (n, window) in starts.windows(2).enumerate() {
        let part = &body[window[0] + delimiter.len()..window[1]];
        if n + 1 > MAX_PARTS {
            return Err(BodyError::Multipart(format!("more than {MAX_PARTS} parts")));
        }
        segments.extend(part_segments(part, n + 1)?);
    }
    let last = starts[starts.len() - 1] + delimiter.len();
    if body[last..].starts_with(b"--") {
        closed = true;
        let epilogue = &body[last + 2..];
        if !epilogue.iter().all(u8::is_ascii_whitespace) {
            segments.push(segment(
                "multipart epilogue",
                String::from_utf8_lossy(epilogue).into_owned(),
            ));
        }
    }
    if !closed {
        // No closing delimiter: scan what follows the last one as a part.
        if starts.len() > MAX_PARTS {
            return Err(BodyError::Multipart(format!("more than {MAX_PARTS} parts")));
        }
        segments.extend(part_segments(&body[last..], starts.len())?);
    }
    Ok(segments)
}

/// A part's headers and its decoded body.
fn part_segments(part: &[u8], n: usize) -> Result<Vec<Segment>, BodyError> {
    let part = part.strip_prefix(b"\r\n").unwrap_or(part);
    let part = part.strip_suffix(b"\r\n").unwrap_or(part);
    let (head, content) = match memchr::memmem::find(part, b"\r\n\r\n") {
        Some(at) => (&part[..at], &part[at + 4..]),
        None => (&part[..0], part),
    };
    let head = String::from_utf8_lossy(head);
    let mut encoding = String::new();
    for line in head.lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim().to_ascii_lowercase();
        if name == "content-transfer-encoding" {
            encoding = value.trim().to_ascii_lowercase();
        }
        if name == "content-disposition" {
            let (_, params) = split_content_type(value);
            for (key, file) in params {
                if (key == "filename" || key == "filename*") && file.len() > MAX_FILENAME {
                    return Err(BodyError::Multipart(format!(
                        "part {n} has a file name of {} bytes (at most {MAX_FILENAME})",
                        file.len()
                    )));
                }
            }
        }
    }
    let decoded = match encoding.as_str() {
        "base64" => {
            let compact: Vec<u8> = content
                .iter()
                .copied()
                .filter(|b| !b.is_ascii_whitespace())
                .collect();
            super::decode::decode_base64(&compact)
                .ok_or_else(|| BodyError::Multipart(format!("part {n} is not valid base64")))?
        }
        "quoted-printable" => quoted_printable(content).ok_or_else(|| {
            BodyError::Multipart(format!("part {n} is not valid quoted-printable"))
        })?,
        _ => content.to_vec(),
    };
    let source = format!("multipart part {n}");
    let mut segments = Vec::new();
    if !head.trim().is_empty() {
        segments.push(segment(&format!("{source} headers"), head.into_owned()));
    }
    segments.push(segment(
        &source,
        String::from_utf8_lossy(&decoded).into_owned(),
    ));
    Ok(segments)
}

fn quoted_printable(content: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(content.len());
    let mut i = 0;
    while i < content.len() {
        if content[i] != b'=' {
            out.push(content[i]);
            i += 1;
            continue;
        }
        match content.get(i + 1..i + 3) {
            // A soft line break.
            Some([b'\r', b'\n']) => i += 3,
            Some([b'\n', _]) => i += 2,
            Some(hex) => {
                let text = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(text, 16).ok()?);
                i += 3;
            }
            None if content.get(i + 1) == Some(&b'\n') => i += 2,
            None => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(segments: &[Segment]) -> String {
        segments
            .iter()
            .map(|s| s.text.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn json_keys_strings_and_numbers_with_escapes_undone() {
        let body = br#"{"messages":[{"role":"user","content":"key \u0041KIAIOSFODNN7EXAMPLE"}],"card":4111111111111111,"ok":true}"#;
        let out = extract(body, Some("application/json; charset=utf-8")).expect("parses");
        let text = texts(&out);
        for expected in [
            "messages",
            "role",
            "user",
            "key AKIAIOSFODNN7EXAMPLE",
            "4111111111111111",
            "card",
        ] {
            assert!(
                text.lines().any(|l| l == expected),
                "{expected} in {text:?}"
            );
        }
        assert!(matches!(
            extract(b"{\"a\": ", Some("application/json")),
            Err(BodyError::Json(_))
        ));
        assert!(extract(b"{}", Some("application/vnd.api+json")).is_ok());
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(extract(deep.as_bytes(), Some("application/json")).is_err());
    }

    #[test]
    fn forms_are_decoded_and_malformed_ones_refused() {
        let out = extract(
            b"user=alice&token=ghp_abc%2Bdef+x&flag",
            Some("application/x-www-form-urlencoded"),
        )
        .expect("parses");
        assert_eq!(texts(&out), "user=alice\ntoken=ghp_abc+def x\nflag=");
        for bad in [&b"a=%zz"[..], b"a=%4", b"a=%ff%fe"] {
            assert!(
                matches!(
                    extract(bad, Some("application/x-www-form-urlencoded")),
                    Err(BodyError::Form(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn multipart_parts_are_decoded_whatever_their_type() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\n--XyZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.bin\"\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nQUtJQUlPU0ZP\r\nRE5ON0VYQU1QTEU=\r\n--XyZ\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nsk-ant=2Dapi03=\r\n-abc\r\n--XyZ--\r\n";
        let out = extract(body, Some("multipart/form-data; boundary=\"XyZ\"")).expect("parses");
        let text = texts(&out);
        assert!(text.contains("hello"), "{text}");
        assert!(text.contains("AKIAIOSFODNN7EXAMPLE"), "{text}");
        assert!(text.contains("sk-ant-api03-abc"), "{text}");
        assert!(text.contains("filename=\"a.bin\""), "{text}");
    }

    #[test]
    fn unreadable_multipart_is_refused() {
        assert_eq!(
            extract(b"--x\r\n\r\nhi\r\n--x--", Some("multipart/form-data")),
            Err(BodyError::NoBoundary)
        );
        assert!(extract(b"no delimiters", Some("multipart/form-data; boundary=x")).is_err());
        let many = format!("{}--x--", "--x\r\n\r\npart\r\n".repeat(MAX_PARTS + 1));
        assert!(extract(many.as_bytes(), Some("multipart/mixed; boundary=x")).is_err());
        let long = format!(
            "--x\r\nContent-Disposition: form-data; name=f; filename=\"{}\"\r\n\r\nx\r\n--x--",
            "a".repeat(MAX_FILENAME + 1)
        );
        assert!(extract(long.as_bytes(), Some("multipart/form-data; boundary=x")).is_err());
        let bad64 = "--x\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!!\r\n--x--";
        assert!(extract(bad64.as_bytes(), Some("multipart/form-data; boundary=x")).is_err());
    }

    #[test]
    fn other_types_are_text() {
        for ct in [
            None,
            Some("text/plain"),
            Some("application/xml"),
            Some("x/y"),
        ] {
            let out = extract(b"plain \xff body", ct).expect("raw");
            assert_eq!(out[0].source, "raw");
            assert!(out[0].text.starts_with("plain "));
        }
    }
}
