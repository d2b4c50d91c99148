//! Readable text from HTML, for `/fetch`: the title, and the text a reader would see, without
//! markup, comments, scripts or styles, entities decoded, whitespace collapsed.
//!
//! This is not a full HTML parser: it only has to produce text for an agent to read and for
//! the injection scanner to scan again (the raw page, hidden parts included, is scanned
//! before this runs). Text split by tags (`ig<b>nore</b>`) comes out joined, which is what a
//! model reading it would see.

/// What [`extract`] found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Extracted {
    pub title: String,
    pub text: String,
}

/// Elements whose content is not text a reader sees.
const SKIPPED: &[&str] = &["script", "style", "noscript", "template", "svg"];
/// Elements that start a new line.
const BLOCKS: &[&str] = &[
    "p",
    "div",
    "br",
    "li",
    "ul",
    "ol",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "tr",
    "table",
    "section",
    "article",
    "header",
    "footer",
    "blockquote",
    "pre",
    "hr",
    "title",
    "body",
];

/// The title and visible text of `html`.
#[must_use]
pub fn extract(html: &str) -> Extracted {
    let mut out = Extracted::default();
    let mut text = String::with_capacity(html.len() / 2);
    let mut rest = html;
    let mut in_title = false;
    let mut title = String::new();
    while !rest.is_empty() {
        let Some(lt) = rest.find('<') else {
            push_text(rest, &mut text, in_title.then_some(&mut title));
            break;
        };
        push_text(&rest[..lt], &mut text, in_title.then_some(&mut title));
        rest = &rest[lt..];
        if let Some(after) = rest.strip_prefix("<!--") {
            rest = after.find("-->").map_or("", |end| &after[end + 3..]);
            continue;
        }
        let Some(gt) = rest.find('>') else {
            break;
        };
        let tag = &rest[1..gt];
        rest = &rest[gt + 1..];
        let closing = tag.starts_with('/');
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        if name == "title" {
            in_title = !closing;
        }
        if !closing && SKIPPED.contains(&name.as_str()) {
            let end = format!("</{name}");
            rest = find_ci(rest, &end).map_or("", |at| {
                let after = &rest[at..];
                after.find('>').map_or("", |gt| &after[gt + 1..])
            });
            continue;
        }
        if BLOCKS.contains(&name.as_str()) {
            text.push('\n');
        }
    }
    out.title = collapse(&title);
    out.text = text
        .lines()
        .map(collapse)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n");
    out
}

fn push_text(raw: &str, text: &mut String, title: Option<&mut String>) {
    let decoded = decode_entities(raw);
    match title {
        Some(title) => title.push_str(&decoded),
        None => text.push_str(&decoded),
    }
}

/// The byte offset of `needle` (ASCII) in `haystack`, ignoring ASCII case.
fn find_ci(haystack: &str, needle: &str) -> Option<usize> {
    let needle = needle.as_bytes();
    haystack
        .as_bytes()
        .windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle))
}

fn collapse(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `&amp;`, `&lt;`, `&gt;`, `&quot;`, `&apos;`, `&#39;`, `&nbsp;` and numeric references.
fn decode_entities(raw: &str) -> String {
    if !raw.contains('&') {
        return raw.to_string();
    }
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let end = rest.find(';').filter(|&e| e <= 10);
        let decoded = end.and_then(|e| entity(&rest[1..e]));
        match (end, decoded) {
            (Some(e), Some(c)) => {
                out.push(c);
                rest = &rest[e + 1..];
            }
            _ => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn entity(name: &str) -> Option<char> {
    match name {
        "amp" => Some('&'),
        "lt" => Some('<'),
        "gt" => Some('>'),
        "quot" => Some('"'),
        "apos" => Some('\''),
        "nbsp" => Some(' '),
        _ => {
            let number = name.strip_prefix('#')?;
            let code = match number.strip_prefix(['x', 'X']) {
                Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                None => number.parse().ok()?,
            };
            char::from_u32(code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn title_and_visible_text() {
        let page = "<!doctype html><html><head><title>Spending &amp; budgets</title><style>p{color:red}</style></head><body><h1>Report</h1><p>Total: 5&nbsp;&lt;USD&gt;</p><!-- hidden --><script>var x = '<p>';</script><p>ig<b>nore</b> &#x41;ll</p></body></html>";
        let extracted = extract(page);
        assert_eq!(extracted.title, "Spending & budgets");
        assert_eq!(extracted.text, "Report\nTotal: 5 <USD>\nignore All");
    }

    #[test]
    fn hostile_markup_does_not_panic() {
        for page in [
            "<",
            "<!--",
            "<script>",
            "&#xFFFFFFFF;",
            "&",
            "<p",
            "a<b>c</b",
            "<title>x",
        ] {
            let _ = extract(page);
        }
        assert_eq!(extract("&bogus; &amp").text, "&bogus; &amp");
    }
}
