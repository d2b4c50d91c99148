//! Keyword hits in lowercased views, for the injection patterns: where each keyword occurs,
//! so that a pattern's regex only runs around its keywords.
//!
//! A keyword that starts with an ASCII letter is looked for only at word starts (an ASCII
//! letter whose previous byte is not one); any other keyword (`.env`, `<|im_start`, `忽略`)
//! at every occurrence of its first byte. So a keyword must be chosen such that every match
//! of its pattern holds it at such a place, which `\b`- and `\s`-delimited words are.
//!
//! Candidate places come from byte-class masks, 64 bytes at a time. At each, the first four
//! bytes are hashed into a 64-kibibit filter, and only when that bit is set are keywords with
//! those four bytes compared. The cost is a few operations per word of text, however many
//! keywords there are.

use super::classes::BLOCK;

/// Keywords need this many bytes: the filter hashes the first four.
pub const MIN_KEYWORD_LEN: usize = 4;
/// Non-letter ASCII first bytes that the mask pass can look for.
const MAX_SYMBOLS: usize = 8;
const FILTER_BITS: usize = 1 << 16;

/// Why a keyword set could not be built.
#[derive(Debug, thiserror::Error)]
pub enum KeywordError {
    #[error("keyword {0:?} is shorter than {MIN_KEYWORD_LEN} bytes")]
    TooShort(String),
    #[error("keywords start with more than {MAX_SYMBOLS} different ASCII symbols")]
    TooManySymbols,
}

#[derive(Debug, Clone)]
struct Entry {
    bytes: Box<[u8]>,
    rules: Vec<usize>,
}

/// A set of keywords, each arming one or more rules.
#[derive(Debug, Clone)]
pub struct Keywords {
    entries: Vec<Entry>,
    /// (first four bytes, entry index), sorted.
    by_prefix: Vec<(u32, usize)>,
    filter: Vec<u64>,
    /// ASCII non-letter first bytes.
    symbols: Vec<u8>,
    /// Non-ASCII first bytes (UTF-8 lead bytes).
    high_first: [bool; 128],
}

impl Keywords {
    /// Builds the set from (keyword, rule index) pairs; a keyword named by several rules arms
    /// them all.
    ///
    /// # Errors
    /// A keyword shorter than [`MIN_KEYWORD_LEN`] bytes, or too many different ASCII symbols
    /// starting keywords.
    pub fn new<'a>(
        pairs: impl IntoIterator<Item = (&'a str, usize)>,
    ) -> Result<Self, KeywordError> {
        let mut entries: Vec<Entry> = Vec::new();
        for (keyword, rule) in pairs {
            if keyword.len() < MIN_KEYWORD_LEN {
                return Err(KeywordError::TooShort(keyword.to_string()));
            }
            match entries.iter_mut().find(|e| *e.bytes == *keyword.as_bytes()) {
                Some(entry) if !entry.rules.contains(&rule) => entry.rules.push(rule),
                Some(_) => {}
                None => entries.push(Entry {
                    bytes: keyword.as_bytes().into(),
                    rules: vec![rule],
                }),
            }
        }
        let mut by_prefix: Vec<(u32, usize)> = entries
            .iter()
            .enumerate()
            .map(|(i, e)| (prefix(&e.bytes), i))
            .collect();
        by_prefix.sort_unstable();
        let mut filter = vec![0u64; FILTER_BITS / 64];
        let mut symbols = Vec::new();
        let mut high_first = [false; 128];
        for &(key, i) in &by_prefix {
            let bit = slot(key);
            filter[bit / 64] |= 1 << (bit % 64);
            let first = entries[i].bytes[0];
            if first >= 0x80 {
                high_first[usize::from(first - 0x80)] = true;
            } else if !first.is_ascii_alphabetic() && !symbols.contains(&first) {
                symbols.push(first);
            }
        }
        if symbols.len() > MAX_SYMBOLS {
            return Err(KeywordError::TooManySymbols);
        }
        Ok(Self {
            entries,
            by_prefix,
            filter,
            symbols,
            high_first,
        })
    }

    /// Calls `f(rule, range)` for every occurrence of a keyword at a place it is looked for,
    /// once per rule it arms.
    pub fn for_each_hit(&self, view: &[u8], mut f: impl FnMut(usize, std::ops::Range<usize>)) {
        if self.entries.is_empty() {
            return;
        }
        let mut letter_carry = 0u64;
        let blocks = view.chunks(BLOCK);
        let mut offset = 0;
        let mut padded = [0u8; BLOCK];
        for block in blocks {
            let full = super::classes::pad(block, &mut padded);
            let masks = super::classes::letters_symbols(full, &self.symbols);
            let starts = masks.letter & !((masks.letter << 1) | letter_carry);
            letter_carry = masks.letter >> 63;
            let mut anchors = starts | masks.symbol;
            let mut high = masks.high;
            while high != 0 {
                let i = high.trailing_zeros() as usize;
                high &= high - 1;
                if self.high_first[usize::from(full[i] & 0x7f)] {
                    anchors |= 1 << i;
                }
            }
            while anchors != 0 {
                let i = offset + anchors.trailing_zeros() as usize;
                anchors &= anchors - 1;
                self.check(view, i, &mut f);
            }
            offset += block.len();
        }
    }

    fn check(&self, view: &[u8], at: usize, f: &mut impl FnMut(usize, std::ops::Range<usize>)) {
        let Some(head) = view.get(at..at + MIN_KEYWORD_LEN) else {
            return;
        };
        let key = prefix(head);
        let bit = slot(key);
        if self.filter[bit / 64] & (1 << (bit % 64)) == 0 {
            return;
        }
        let first = self.by_prefix.partition_point(|(k, _)| *k < key);
        for &(_, i) in self.by_prefix[first..]
            .iter()
            .take_while(|(k, _)| *k == key)
        {
            let entry = &self.entries[i];
            // The first four bytes are the key; compare the rest in line (keywords are short).
            let rest = &entry.bytes[MIN_KEYWORD_LEN..];
            let tail = view.get(at + MIN_KEYWORD_LEN..at + entry.bytes.len());
            if tail.is_some_and(|tail| tail.iter().zip(rest).all(|(a, b)| a == b)) {
                for &rule in &entry.rules {
                    f(rule, at..at + entry.bytes.len());
                }
            }
        }
    }
}

fn prefix(bytes: &[u8]) -> u32 {
    u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

fn slot(key: u32) -> usize {
    (key.wrapping_mul(0x9E37_79B1) >> 16) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every (rule, range) that a plain search finds at the places keywords are looked for.
    fn naive(keywords: &[(&str, usize)], view: &[u8]) -> Vec<(usize, std::ops::Range<usize>)> {
        let mut hits = Vec::new();
        for at in 0..view.len() {
            let first = view[at];
            let place = if first.is_ascii_alphabetic() {
                at == 0 || !view[at - 1].is_ascii_alphabetic()
            } else {
                true
            };
            if !place {
                continue;
            }
            let mut seen = Vec::new();
            for (keyword, rule) in keywords {
                if view[at..].starts_with(keyword.as_bytes()) && !seen.contains(&(keyword, rule)) {
                    seen.push((keyword, rule));
                    hits.push((*rule, at..at + keyword.len()));
                }
            }
        }
        hits.sort_by_key(|(rule, range)| (range.start, range.end, *rule));
        hits
    }

    #[test]
    fn finds_what_a_plain_search_finds() {
        let keywords = [
            ("ignore", 0),
            ("ignore", 1),
            ("ignorer", 2),
            ("you are now", 3),
            (".env", 4),
            ("<|im_start", 5),
            ("忽略", 6),
            ("забуд", 7),
            ("néglige", 8),
            ("[inst]", 9),
        ];
        let set = Keywords::new(keywords.iter().copied()).expect("builds");
        let pieces = [
            "ignore",
            "ignorer",
            "xignore",
            " ",
            "you are now",
            ".env",
            "x.env",
            "<|im_start",
            "<|im_",
            "忽略",
            "забудь",
            "néglige",
            "[inst]",
            "a",
            "\n",
            "é",
            "ignor",
        ];
        let mut state = 0x2545_f491_u32;
        for _ in 0..3000 {
            let mut text = String::new();
            for _ in 0..(state % 40) {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                text.push_str(pieces[state as usize % pieces.len()]);
            }
            let mut hits = Vec::new();
            set.for_each_hit(text.as_bytes(), |rule, range| hits.push((rule, range)));
            hits.sort_by_key(|(rule, range)| (range.start, range.end, *rule));
            assert_eq!(hits, naive(&keywords, text.as_bytes()), "{text:?}");
        }
    }

    #[test]
    fn letter_keywords_only_at_word_starts() {
        let set = Keywords::new([("ignore", 0)]).expect("builds");
        let mut hits = 0;
        set.for_each_hit(b"xignore 1ignore ignore", |_, _| hits += 1);
        assert_eq!(hits, 2);
        let long = format!("{}ignore", "a ".repeat(40));
        let mut at = Vec::new();
        set.for_each_hit(long.as_bytes(), |_, range| at.push(range.start));
        assert_eq!(at, vec![80]);
    }

    #[test]
    fn short_keywords_are_refused() {
        assert!(matches!(
            Keywords::new([("<|", 0)]),
            Err(KeywordError::TooShort(_))
        ));
    }
}
