//! Decoded views of a text, for DLP: what the text says once URL-encoding, `\u`/`\x` escapes,
//! base64, hex and string concatenation are undone. Views nest (a base64 blob inside a URL
//! parameter) up to [`MAX_DEPTH`], and their total size is bounded, so a scan's memory stays
//! a small multiple of its input.
//!
//! Each decoder first checks cheaply whether it has anything to do; text with no `%`, no
//! escapes, no long base64/hex runs and no concatenation yields no views at all.

/// How many layers of encoding are undone.
pub const MAX_DEPTH: usize = 3;
/// Shortest base64 or hex run worth decoding.
const MIN_ENCODED_RUN: usize = super::runs::MIN_ENCODED_RUN as usize;
/// Decoded views may add at most this many bytes beyond 4× the input.
const EXTRA_BUDGET: usize = 64 * 1024;

/// A decoded view: which decodings produced it, and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    pub name: &'static str,
    pub text: String,
}

/// Every decoded view of `text` (not including `text` itself).
#[must_use]
pub fn decoded_views(text: &str) -> Vec<View> {
    decoded_views_with(text, has_long_run(text.as_bytes()))
}

/// Is there a run of [`MIN_ENCODED_RUN`] base64-alphabet bytes? (Base64 and hex payloads need
/// one.)
#[must_use]
pub fn has_long_run(bytes: &[u8]) -> bool {
    super::runs::runs(bytes).encoded
}

/// [`decoded_views`] with the result of [`has_long_run`] already known.
#[must_use]
pub fn decoded_views_with(text: &str, long_run: bool) -> Vec<View> {
    if !long_run && !needs_decoding(text) {
        return Vec::new();
    }
    let mut budget = text.len().saturating_mul(4).saturating_add(EXTRA_BUDGET);
    let mut views = Vec::new();
    let mut frontier = vec![text.to_string()];
    for _ in 0..MAX_DEPTH {
        let mut next = Vec::new();
        for source in &frontier {
            for (name, decode) in DECODERS {
                let Some(decoded) = decode(source) else {
                    continue;
                };
                if decoded == *source || decoded.is_empty() || decoded.len() > budget {
                    continue;
                }
                if views.iter().any(|v: &View| v.text == decoded) {
                    continue;
                }
                budget -= decoded.len();
                next.push(decoded.clone());
                views.push(View {
                    name,
                    text: decoded,
                });
            }
        }
        if next.is_empty() {
            break;
        }
        frontier = next;
    }
    views
}

/// Could a decoder other than base64/hex have something to do? Only with non-ASCII text
/// (invisible characters), `%`, a backslash, or `+` (joined fragments).
fn needs_decoding(text: &str) -> bool {
    !text.is_ascii() || memchr::memchr3(b'%', b'\\', b'+', text.as_bytes()).is_some()
}

type Decoder = fn(&str) -> Option<String>;

const DECODERS: &[(&str, Decoder)] = &[
    ("url-decoded", url_decode),
    ("unescaped", unescape),
    ("base64", base64_runs),
    ("hex", hex_runs),
    ("joined", join_fragments),
];

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// `%XX` sequences decoded (and `+` as space when any `%XX` is present).
fn url_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    if !bytes
        .windows(3)
        .any(|w| w[0] == b'%' && hex_value(w[1]).is_some() && hex_value(w[2]).is_some())
    {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                match (hex_value(bytes[i + 1]), hex_value(bytes[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push(h * 16 + l);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// `\uXXXX` and `\xHH` escapes (JSON, JavaScript, Python) decoded.
fn unescape(text: &str) -> Option<String> {
    if !text.contains("\\u") && !text.contains("\\x") {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == '\\' {
            let rest = &text[i + 1..];
            let (digits, skip) = if rest.starts_with('u') {
                (rest.get(1..5), 5)
            } else if rest.starts_with('x') {
                (rest.get(1..3), 3)
            } else {
                (None, 0)
            };
            if let Some(decoded) = digits
                .filter(|d| d.bytes().all(|b| hex_value(b).is_some()))
                .and_then(|d| u32::from_str_radix(d, 16).ok())
                .and_then(char::from_u32)
            {
                out.push(decoded);
                for _ in 0..skip {
                    chars.next();
                }
                continue;
            }
        }
        out.push(c);
    }
    Some(out)
}

/// Base64 alphabet bytes; padding (`=`) ends a run and is not needed to decode it.
fn is_base64_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_')
}

/// Runs of base64 (standard or URL alphabet) decoded, when they decode to mostly text.
fn base64_runs(text: &str) -> Option<String> {
    decode_runs(text, is_base64_byte, decode_base64)
}

/// Runs of hex digits decoded, when they decode to mostly text.
fn hex_runs(text: &str) -> Option<String> {
    decode_runs(text, |b| hex_value(b).is_some(), decode_hex)
}

fn decode_runs(
    text: &str,
    in_run: fn(u8) -> bool,
    decode: fn(&[u8]) -> Option<Vec<u8>>,
) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = String::new();
    let mut start = None;
    for i in 0..=bytes.len() {
        let inside = i < bytes.len() && in_run(bytes[i]);
        match (inside, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                start = None;
                if i - s < MIN_ENCODED_RUN {
                    continue;
                }
                if let Some(decoded) = decode(&bytes[s..i]).filter(|d| mostly_text(d)) {
                    if !out.is_empty() {
                        out.push('\n');
                    }
                    out.push_str(&String::from_utf8_lossy(&decoded));
                }
            }
            _ => {}
        }
    }
    (!out.is_empty()).then_some(out)
}

/// At least 90% printable ASCII or whitespace, or valid UTF-8 text.
fn mostly_text(bytes: &[u8]) -> bool {
    if bytes.is_empty() {
        return false;
    }
    let printable = bytes
        .iter()
        .filter(|b| b.is_ascii_graphic() || b.is_ascii_whitespace())
        .count();
    printable * 10 >= bytes.len() * 9
        || std::str::from_utf8(bytes).is_ok_and(|s| !s.chars().any(char::is_control))
}

/// Standard or URL-safe base64, padding optional; `None` on any other byte.
pub(crate) fn decode_base64(run: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(run.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for &b in run {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => continue,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
        }
    }
    Some(out)
}

fn decode_hex(run: &[u8]) -> Option<Vec<u8>> {
    let run = if run.len() % 2 == 1 {
        &run[..run.len() - 1]
    } else {
        run
    };
    run.chunks(2)
        .map(|pair| Some(hex_value(pair[0])? * 16 + hex_value(pair[1])?))
        .collect()
}

/// Zero-width characters removed and string concatenations (`"ab" + "cd"`, `'ab'+'cd'`)
/// joined, undoing the usual ways to split a secret.
fn join_fragments(text: &str) -> Option<String> {
    let has_invisible = text.chars().any(is_invisible);
    let has_concat = text.contains("\" +")
        || text.contains("\"+")
        || text.contains("' +")
        || text.contains("'+");
    if !has_invisible && !has_concat {
        return None;
    }
    let stripped: String = text.chars().filter(|c| !is_invisible(*c)).collect();
    let mut out = String::with_capacity(stripped.len());
    let chars: Vec<char> = stripped.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' {
            // quote, spaces, '+', spaces, same quote → nothing
            let mut j = i + 1;
            while j < chars.len() && chars[j].is_whitespace() {
                j += 1;
            }
            if j < chars.len() && chars[j] == '+' {
                j += 1;
                while j < chars.len() && chars[j].is_whitespace() {
                    j += 1;
                }
                if j < chars.len() && chars[j] == c {
                    i = j + 1;
                    continue;
                }
            }
        }
        out.push(c);
        i += 1;
    }
    Some(out)
}

fn is_invisible(c: char) -> bool {
    matches!(c, '\u{00AD}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}' | '\u{E0000}'..='\u{E007F}')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(text: &str, name: &str) -> Option<String> {
        decoded_views(text)
            .into_iter()
            .find(|v| v.name == name)
            .map(|v| v.text)
    }

    #[test]
    fn plain_text_has_no_views() {
        assert!(decoded_views("The quick brown fox jumps over the lazy dog.").is_empty());
    }

    #[test]
    fn url_encoding_single_and_double() {
        assert_eq!(
            view("q=sk%2Dant%2Dabc", "url-decoded").as_deref(),
            Some("q=sk-ant-abc")
        );
        let double = decoded_views("q=sk%252Dant");
        assert!(double.iter().any(|v| v.text == "q=sk-ant"), "{double:?}");
        assert_eq!(url_decode("100%"), None);
        assert_eq!(url_decode("a%2"), None);
    }

    #[test]
    fn escapes() {
        assert_eq!(
            view(r#"{"k":"\u0073\u006b-ant"}"#, "unescaped").as_deref(),
            Some(r#"{"k":"sk-ant"}"#)
        );
        assert_eq!(view(r"\x41KIA", "unescaped").as_deref(), Some("AKIA"));
        assert_eq!(unescape(r"\u12"), Some(r"\u12".to_string()));
    }

    #[test]
    fn base64_and_hex_runs() {
        // "AKIAIOSFODNN7EXAMPLE" in base64 and hex.
        assert_eq!(
            view("x=QUtJQUlPU0ZPRE5ON0VYQU1QTEU= y", "base64").as_deref(),
            Some("AKIAIOSFODNN7EXAMPLE")
        );
        assert_eq!(
            view("x=414b4941494f53464f444e4e374558414d504c45", "hex").as_deref(),
            Some("AKIAIOSFODNN7EXAMPLE")
        );
    }

    #[test]
    fn nesting_is_followed_and_bounded() {
        // base64 of "key=%41KIA…" → base64 view, then url-decoded view of that.
        let inner = "key=%41KIAIOSFODNN7EXAMPLE";
        let encoded = "a2V5PSU0MUtJQUlPU0ZPRE5ON0VYQU1QTEU=";
        assert_eq!(
            decode_base64(encoded.as_bytes()).as_deref(),
            Some(inner.as_bytes())
        );
        let views = decoded_views(encoded);
        assert!(
            views.iter().any(|v| v.text == "key=AKIAIOSFODNN7EXAMPLE"),
            "{views:?}"
        );
        let huge = "%41".repeat(100_000);
        let views = decoded_views(&huge);
        let total: usize = views.iter().map(|v| v.text.len()).sum();
        assert!(total <= huge.len() * 4 + EXTRA_BUDGET);
    }

    #[test]
    fn split_secrets_are_joined() {
        assert_eq!(
            view(r#"k = "sk-ant-" + "api03-xyz""#, "joined").as_deref(),
            Some(r#"k = "sk-ant-api03-xyz""#)
        );
        assert_eq!(
            view("AKIA\u{200B}IOSFODNN7EXAMPLE", "joined").as_deref(),
            Some("AKIAIOSFODNN7EXAMPLE")
        );
    }

    #[test]
    fn odd_input_does_not_panic() {
        for text in [
            "%", "%%%", "\\", "\\u", "\\uD800", "====", "+", "\"+", "é%C3",
        ] {
            let _ = decoded_views(text);
        }
    }
}
