//! Normalized views of text for injection matching, so that look-alike spellings match the
//! same patterns as the plain one.
//!
//! - [`lower_ascii`]: ASCII text, lowercased (the common case; byte offsets are unchanged).
//! - [`normalize`]: invisible and bidi characters removed, Unicode NFKC (fullwidth and
//!   compatibility forms), combining marks removed, Cyrillic and Greek look-alikes folded to
//!   Latin inside words that also contain Latin letters (so Russian stays Russian), lowercase.
//! - [`fold_leet`]: leetspeak digits and symbols between letters read as letters.

use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;

/// Zero-width, bidi, tag and other invisible characters used to split words.
#[must_use]
pub fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{115F}' | '\u{1160}' | '\u{180E}' | '\u{200B}'..='\u{200F}'
        | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{2069}'
        | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}'
        | '\u{E0000}'..='\u{E007F}' | '\u{E0100}'..='\u{E01EF}')
}

/// ASCII text lowercased, each run of whitespace turned into one space; `None` when the text
/// is not ASCII (use [`normalize`]). One pass, 64 bytes at a time: blocks without a tab, line
/// break or double space are lowercased wholesale.
#[must_use]
pub fn lower_ascii(text: &str) -> Option<String> {
    use super::classes::{whitespace, BLOCK};
    if !text.is_ascii() {
        return None;
    }
    let bytes = text.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut padded = [0u8; BLOCK];
    let mut carry = 0u64;
    for block in bytes.chunks(BLOCK) {
        let full = super::classes::pad(block, &mut padded);
        let (spaces, others) = whitespace(full);
        let ws = spaces | others;
        let drop = ws & ((ws << 1) | carry);
        carry = ws >> 63;
        let start = out.len();
        out.extend(block.iter().map(u8::to_ascii_lowercase));
        // The other whitespace that stays becomes a space; then the bytes of `drop` (every
        // whitespace after the first of its run) are cut out, moving the kept stretches
        // between them down.
        let mut become_space = others & !drop;
        while become_space != 0 {
            out[start + become_space.trailing_zeros() as usize] = b' ';
            become_space &= become_space - 1;
        }
        let mut cut = drop;
        let mut write = start + cut.trailing_zeros() as usize;
        while cut != 0 {
            let at = cut.trailing_zeros() as usize;
            cut &= cut - 1;
            let next = if cut == 0 {
                block.len()
            } else {
                cut.trailing_zeros() as usize
            };
            out.copy_within(start + at + 1..start + next, write);
            write += next - at - 1;
        }
        if drop != 0 {
            out.truncate(write);
        }
    }
    // Only ASCII bytes were written.
    String::from_utf8(out).ok()
}

/// The normalized view of any text.
#[must_use]
pub fn normalize(text: &str) -> String {
    // Decompose (NFKD), drop accents on alphabetic scripts, then recompose (NFC) so that
    // Hangul syllables and Japanese voiced kana come back whole.
    let mut base_is_alphabetic = false;
    let cleaned: String = text
        .chars()
        .filter(|c| !is_invisible(*c))
        .nfkd()
        .filter(|&c| {
            if is_combining_mark(c) {
                !base_is_alphabetic
            } else {
                base_is_alphabetic = is_alphabetic_script(c);
                true
            }
        })
        .nfc()
        .collect();
    let mut out = String::with_capacity(cleaned.len());
    let mut word: Vec<char> = Vec::new();
    let flush = |word: &mut Vec<char>, out: &mut String| {
        let mixed = word.iter().any(char::is_ascii_alphabetic);
        for &c in word.iter() {
            let c = if mixed { confusable(c).unwrap_or(c) } else { c };
            out.extend(c.to_lowercase());
        }
        word.clear();
    };
    for c in cleaned.chars() {
        if c.is_alphanumeric() {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            if c.is_whitespace() {
                if !out.ends_with(' ') {
                    out.push(' ');
                }
            } else {
                out.extend(c.to_lowercase());
            }
        }
    }
    flush(&mut word, &mut out);
    out
}

/// Latin or Greek letters, whose accents are folded for matching (patterns for languages
/// with accents accept both spellings). Cyrillic keeps its marks: `й` is not `и`.
fn is_alphabetic_script(c: char) -> bool {
    matches!(c, 'A'..='Z' | 'a'..='z' | '\u{00C0}'..='\u{024F}' | '\u{0370}'..='\u{03FF}')
}

/// The Latin letter a Cyrillic or Greek look-alike stands for.
fn confusable(c: char) -> Option<char> {
    Some(match c {
        'а' => 'a',
        'А' => 'A',
        'в' => 'b',
        'В' => 'B',
        'е' => 'e',
        'Е' => 'E',
        'ё' => 'e',
        'к' => 'k',
        'К' => 'K',
        'м' => 'm',
        'М' => 'M',
        'н' => 'h',
        'Н' => 'H',
        'о' => 'o',
        'О' => 'O',
        'р' => 'p',
        'Р' => 'P',
        'с' => 'c',
        'С' => 'C',
        'т' => 't',
        'Т' => 'T',
        'у' => 'y',
        'У' => 'Y',
        'х' => 'x',
        'Х' => 'X',
        'ѕ' => 's',
        'Ѕ' => 'S',
        'і' => 'i',
        'І' => 'I',
        'ј' => 'j',
        'Ј' => 'J',
        'ԁ' => 'd',
        'ɡ' => 'g',
        'һ' => 'h',
        'ӏ' => 'l',
        'ո' => 'n',
        'ս' => 'u',
        'α' => 'a',
        'Α' => 'A',
        'β' => 'b',
        'Β' => 'B',
        'ε' => 'e',
        'Ε' => 'E',
        'ι' => 'i',
        'Ι' => 'I',
        'κ' => 'k',
        'Κ' => 'K',
        'ν' => 'v',
        'Ν' => 'N',
        'ο' => 'o',
        'Ο' => 'O',
        'ρ' => 'p',
        'Ρ' => 'P',
        'τ' => 't',
        'Τ' => 'T',
        'υ' => 'u',
        'Υ' => 'Y',
        'χ' => 'x',
        'Χ' => 'X',
        'Ζ' => 'Z',
        'Η' => 'H',
        'Μ' => 'M',
        _ => return None,
    })
}

/// Could `text` hide words in leetspeak (a digit or `@`/`$` between two letters, as in
/// `1gn0re`)? Version strings such as `gpt-4o` or `v2` do not count.
#[must_use]
pub fn may_hold_leet(text: &str) -> bool {
    use super::classes::{letters_symbols, BLOCK};
    let bytes = text.as_bytes();
    // A branch-free check per block (vectorized) first: most prose has no such byte at all.
    let any_leet = bytes.chunks(BLOCK).any(|block| {
        block.iter().fold(false, |seen, b| {
            seen | matches!(b, b'0' | b'1' | b'3' | b'4' | b'5' | b'7' | b'@' | b'$')
        })
    });
    if !any_leet {
        return false;
    }
    let mut padded = [0u8; BLOCK];
    // Whether the last byte of the previous block is a letter.
    let mut carry = 0u64;
    for (k, block) in bytes.chunks(BLOCK).enumerate() {
        let full = super::classes::pad(block, &mut padded);
        let m = letters_symbols(full, LEET_BYTES);
        let mut after_letter = m.symbol & ((m.letter << 1) | carry);
        carry = m.letter >> 63;
        while after_letter != 0 {
            let at = k * BLOCK + after_letter.trailing_zeros() as usize;
            after_letter &= after_letter - 1;
            if bytes.get(at + 1).is_some_and(u8::is_ascii_alphabetic) {
                return true;
            }
        }
    }
    false
}

/// The bytes leetspeak uses for letters.
const LEET_BYTES: &[u8] = b"013457@$";

/// Leetspeak read as letters (0→o 1→i 3→e 4→a 5→s 7→t @→a $→s), lowercased.
#[must_use]
pub fn fold_leet(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '0' => 'o',
            '1' => 'i',
            '3' => 'e',
            '4' => 'a',
            '5' | '$' => 's',
            '7' => 't',
            '@' => 'a',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invisibles_fullwidth_and_homoglyphs_fold() {
        assert_eq!(normalize("ig\u{200B}nore"), "ignore");
        assert_eq!(normalize("ＩＧＮＯＲＥ previous"), "ignore previous");
        // Cyrillic о and е inside a Latin word.
        assert_eq!(normalize("ign\u{043E}r\u{0435} all"), "ignore all");
        // A Russian word stays Russian.
        assert_eq!(normalize("Игнорируй"), "игнорируй");
        assert_eq!(normalize("ignóre\u{0301}"), "ignore");
        assert_eq!(normalize("a \t\n  b"), "a b");
        // Hangul and voiced kana survive the decomposition.
        assert_eq!(normalize("무시 プロンプト"), "무시 プロンプト");
    }

    #[test]
    fn ascii_view_lowercases_and_collapses_whitespace() {
        assert_eq!(
            lower_ascii("You  ARE\n\tnow").as_deref(),
            Some("you are now")
        );
        // Runs that cross the 64-byte blocks, at every offset.
        for offset in 0..70 {
            let text = format!(
                "{}A \n\t B\r\n{}C  ",
                "x".repeat(offset),
                " ".repeat(offset % 3)
            );
            let expected = format!("{}a b {}c ", "x".repeat(offset), "");
            assert_eq!(
                lower_ascii(&text).as_deref(),
                Some(expected.as_str()),
                "{offset}"
            );
        }
        assert_eq!(lower_ascii("é"), None);
    }

    /// The one-byte-at-a-time definition of [`lower_ascii`].
    fn lower_ascii_reference(text: &str) -> String {
        let mut out = String::new();
        for c in text.chars() {
            if c.is_ascii_whitespace() || c == '\x0b' {
                if !out.ends_with(' ') {
                    out.push(' ');
                }
            } else {
                out.push(c.to_ascii_lowercase());
            }
        }
        out
    }

    #[test]
    fn ascii_view_matches_its_definition_on_mixed_whitespace() {
        // Deterministic pseudo-random texts of letters and every kind of whitespace, of every
        // length up to three blocks, so that runs start, end and cross blocks anywhere.
        let alphabet = [
            b'a', b'Q', b'.', b' ', b'\n', b'\t', b'\r', b'\x0b', b'\x0c', b'z',
        ];
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        for len in 0..200 {
            for _ in 0..20 {
                let text: String = (0..len)
                    .map(|_| {
                        state = state
                            .wrapping_mul(6_364_136_223_846_793_005)
                            .wrapping_add(1_442_695_040_888_963_407);
                        char::from(alphabet[(state >> 33) as usize % alphabet.len()])
                    })
                    .collect();
                assert_eq!(
                    lower_ascii(&text).as_deref(),
                    Some(lower_ascii_reference(&text).as_str()),
                    "{text:?}"
                );
            }
        }
    }

    #[test]
    fn leetspeak() {
        assert!(may_hold_leet("1gn0re"));
        assert!(may_hold_leet("pr3vious"));
        assert!(!may_hold_leet("in 2024 we had 45 people"));
        assert!(!may_hold_leet("model gpt-4o, api v2"));
        // Across the 64-byte blocks.
        for offset in 0..70 {
            let text = format!("{}pr3v", " ".repeat(offset));
            assert!(may_hold_leet(&text), "{offset}");
            assert!(
                !may_hold_leet(&format!("{}pr3", " ".repeat(offset))),
                "{offset}"
            );
        }
        assert_eq!(
            fold_leet("1gn0r3 pr3v10u5 1n5truct10n5"),
            "ignore previous instructions"
        );
    }

    #[test]
    fn odd_input() {
        for text in ["", "\u{E0001}\u{E0041}", "\u{0301}\u{0301}", "\0"] {
            let _ = normalize(text);
            let _ = fold_leet(text);
        }
    }
}
