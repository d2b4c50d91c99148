//! BIP-39 seed phrases (`seed_phrase_detection`): runs of words from the BIP-39 English word
//! list, 12 to 24 long, whose last word's checksum bits match the SHA-256 of the entropy the
//! other words encode. The checksum makes a false positive on ordinary text a 1-in-16 (for 12
//! words) to 1-in-256 (24 words) chance *given* a run of list words, which prose almost never
//! has.
//!
//! The word list is the standard English list from BIP-39 (`bip39-english.txt`, 2048 words).

use sha2::{Digest, Sha256};

use super::finding::{redact, Finding, ScannerKind};
use crate::config::{SeedPhraseDetection, Severity};

const WORDLIST: &str = include_str!("bip39-english.txt");
/// How far left of a separator sample its word is looked for.
const SEPARATOR_REACH: usize = 16;
/// The phrase lengths BIP-39 defines.
const LENGTHS: [usize; 5] = [24, 21, 18, 15, 12];

/// The seed phrase detector for one config.
#[derive(Debug)]
pub struct SeedPhrases {
    /// Open-addressing hash table of the words packed into `u64`s (up to 8 ASCII bytes); 0
    /// marks an empty slot.
    keys: Vec<u64>,
    /// The list index of the word in the same slot of `keys`.
    indexes: Vec<u16>,
    min_words: usize,
    verify_checksum: bool,
}

/// A word of the text that is on the list: its list index and byte range.
#[derive(Debug, Clone, Copy)]
struct Word {
    index: u16,
    start: usize,
    end: usize,
}

impl SeedPhrases {
    /// Builds the detector; `min_words` is clamped to 12..=24.
    #[must_use]
    pub fn new(config: &SeedPhraseDetection) -> Self {
        let mut keys = vec![0u64; TABLE_SLOTS];
        let mut indexes = vec![0u16; TABLE_SLOTS];
        for (i, word) in WORDLIST.lines().enumerate() {
            let key = pack(word.as_bytes());
            let mut slot = slot_of(key);
            while keys[slot] != 0 {
                slot = (slot + 1) % TABLE_SLOTS;
            }
            keys[slot] = key;
            indexes[slot] = u16::try_from(i).unwrap_or(u16::MAX);
        }
        Self {
            keys,
            indexes,
            min_words: usize::try_from(config.min_words)
                .unwrap_or(12)
                .clamp(12, 24),
            verify_checksum: config.verify_checksum,
        }
    }

    /// Every seed phrase in `text`.
    ///
    /// A phrase of `min_words` words of at least 3 letters, one separator apart, spans at
    /// least `4·min_words − 1` bytes, so samples a third of that apart put at least three
    /// samples inside it, and each of them lands on a list word or between two. Samples are
    /// tested furthest first, Boyer-Moore style, so text with few list words costs a few
    /// lookups per hundred bytes; only where three samples in a row pass is the stretch
    /// between the failing samples around them tokenized and checked exactly.
    #[must_use]
    pub fn scan(&self, text: &str, view: &'static str) -> Vec<Finding> {
        let mut findings = Vec::new();
        let bytes = text.as_bytes();
        let stride = (4 * self.min_words - 1) / 3;
        let samples = bytes.len().div_ceil(stride);
        let pass = |k: usize| self.sample_passes(bytes, k * stride);
        let mut k = 0;
        while k + 2 < samples {
            if !pass(k + 2) {
                k += 3;
            } else if !pass(k + 1) {
                k += 2;
            } else if !pass(k) {
                k += 1;
            } else {
                let mut left = k;
                while left > 0 && pass(left - 1) {
                    left -= 1;
                }
                let mut right = k + 3;
                while right < samples && pass(right) {
                    right += 1;
                }
                // The failing samples sit inside words that are not on the list, which no
                // phrase can cross: everything between them is checked exactly.
                let start = if left == 0 {
                    0
                } else {
                    word_end(bytes, (left - 1) * stride)
                };
                let end = if right >= samples {
                    bytes.len()
                } else {
                    word_start(bytes, right * stride)
                };
                self.check_stretch(text, start..end.max(start), view, &mut findings);
                k = right + 1;
            }
        }
        findings
    }

    /// Could the sample at `at` lie inside a phrase: is it on a list word, or on a separator
    /// whose word to the left is one? (Inside a phrase, the word left of a separator is a
    /// phrase word.) Separators longer than [`SEPARATOR_REACH`] pass unexamined.
    fn sample_passes(&self, bytes: &[u8], mut at: usize) -> bool {
        let Some(b) = bytes.get(at) else {
            return true;
        };
        if !b.is_ascii_alphabetic() {
            let reach = at.saturating_sub(SEPARATOR_REACH);
            match bytes[reach..at].iter().rposition(u8::is_ascii_alphabetic) {
                Some(letter) => at = reach + letter,
                None => return true,
            }
        }
        // List words have 3 to 8 letters: look no further than that either way.
        let mut start = at;
        while start > 0 && at - start < 8 && bytes[start - 1].is_ascii_alphabetic() {
            start -= 1;
        }
        let mut end = at + 1;
        while end < bytes.len() && end - start <= 8 && bytes[end].is_ascii_alphabetic() {
            end += 1;
        }
        let whole = (start == 0 || !bytes[start - 1].is_ascii_alphabetic())
            && (end == bytes.len() || !bytes[end].is_ascii_alphabetic());
        whole && self.lookup_bytes(&bytes[start..end]).is_some()
    }

    /// Looks up the words of a stretch and checks each run of list words in it.
    fn check_stretch(
        &self,
        text: &str,
        stretch: std::ops::Range<usize>,
        view: &'static str,
        findings: &mut Vec<Finding>,
    ) {
        let bytes = text.as_bytes();
        let mut run: Vec<Word> = Vec::new();
        let mut i = stretch.start;
        while i < stretch.end {
            if !bytes[i].is_ascii_alphabetic() {
                i += 1;
                continue;
            }
            let start = i;
            while i < stretch.end && bytes[i].is_ascii_alphabetic() {
                i += 1;
            }
            match self.lookup(&text[start..i]) {
                Some(index) => run.push(Word {
                    index,
                    start,
                    end: i,
                }),
                None => {
                    self.check_run(text, &run, view, findings);
                    run.clear();
                }
            }
        }
        self.check_run(text, &run, view, findings);
    }

    fn lookup(&self, word: &str) -> Option<u16> {
        self.lookup_bytes(word.as_bytes())
    }

    /// The list index of a word of ASCII letters, in any case.
    fn lookup_bytes(&self, bytes: &[u8]) -> Option<u16> {
        if !(3..=8).contains(&bytes.len()) || !bytes.iter().all(u8::is_ascii_alphabetic) {
            return None;
        }
        let key = pack(bytes) | LOWERCASE_BITS[bytes.len()];
        let mut slot = slot_of(key);
        loop {
            match self.keys[slot] {
                0 => return None,
                k if k == key => return Some(self.indexes[slot]),
                _ => slot = (slot + 1) % TABLE_SLOTS,
            }
        }
    }

    /// Reports the longest valid phrase at each position of a run of list words.
    fn check_run(&self, text: &str, run: &[Word], view: &'static str, findings: &mut Vec<Finding>) {
        if run.len() < self.min_words {
            return;
        }
        let mut at = 0;
        while at + self.min_words <= run.len() {
            let found = LENGTHS
                .iter()
                .filter(|len| **len >= self.min_words && at + **len <= run.len())
                .find(|len| !self.verify_checksum || checksum_ok(&run[at..at + **len]));
            match found {
                Some(&len) => {
                    let span = run[at].start..run[at + len - 1].end;
                    findings.push(Finding {
                        rule_id: "dlp.bip39_seed_phrase".to_string(),
                        rule_name: format!("BIP-39 Seed Phrase ({len} words)"),
                        scanner: ScannerKind::Dlp,
                        severity: Severity::Critical,
                        preview: redact(&text[span.clone()]),
                        span,
                        view,
                    });
                    at += len;
                }
                None => at += 1,
            }
        }
    }
}

/// The end of the ASCII word around `at` (or `at` itself when it is not in one).
fn word_end(bytes: &[u8], mut at: usize) -> usize {
    while at < bytes.len() && bytes[at].is_ascii_alphabetic() {
        at += 1;
    }
    at
}

/// The start of the ASCII word around `at` (or `at` itself when it is not in one).
fn word_start(bytes: &[u8], mut at: usize) -> usize {
    while at > 0
        && at < bytes.len()
        && bytes[at].is_ascii_alphabetic()
        && bytes[at - 1].is_ascii_alphabetic()
    {
        at -= 1;
    }
    at
}

/// Up to 8 bytes as a `u64`.
fn pack(word: &[u8]) -> u64 {
    let mut buf = [0u8; 8];
    for (slot, b) in buf.iter_mut().zip(word) {
        *slot = *b;
    }
    u64::from_le_bytes(buf)
}

/// Slots of the word table: twice the list, a power of two.
const TABLE_SLOTS: usize = 4096;

fn slot_of(key: u64) -> usize {
    usize::try_from(key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 52).unwrap_or(0) % TABLE_SLOTS
}

/// Per word length, the bits that lowercase a packed word of ASCII letters.
const LOWERCASE_BITS: [u64; 9] = {
    let mut bits = [0u64; 9];
    let mut len = 1;
    while len <= 8 {
        bits[len] = bits[len - 1] | (0x20 << (8 * (len - 1)));
        len += 1;
    }
    bits
};

/// Whether the words' checksum bits match SHA-256 of the entropy they encode.
fn checksum_ok(words: &[Word]) -> bool {
    let n = words.len();
    let total_bits = n * 11;
    let checksum_bits = total_bits / 33;
    let entropy_bits = total_bits - checksum_bits;
    let mut bits = Vec::with_capacity(total_bits);
    for word in words {
        for shift in (0..11).rev() {
            bits.push((word.index >> shift) & 1 == 1);
        }
    }
    let entropy: Vec<u8> = bits[..entropy_bits]
        .chunks(8)
        .map(|byte| {
            byte.iter()
                .fold(0u8, |acc, bit| (acc << 1) | u8::from(*bit))
        })
        .collect();
    let hash = Sha256::digest(&entropy);
    (0..checksum_bits).all(|i| {
        let expected = (hash[i / 8] >> (7 - i % 8)) & 1 == 1;
        expected == bits[entropy_bits + i]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The BIP-39 test vector for all-zero 128-bit entropy.
    const VALID_12: &str = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";
    /// The BIP-39 test vector for all-0x7f 256-bit entropy.
    const VALID_24: &str = "legal winner thank year wave sausage worth useful legal winner thank year wave sausage worth useful legal winner thank year wave sausage worth title";

    fn detector() -> SeedPhrases {
        SeedPhrases::new(&SeedPhraseDetection::default())
    }

    #[test]
    fn the_word_list_is_the_standard_one() {
        assert_eq!(WORDLIST.lines().count(), 2048);
        let digest = Sha256::digest(WORDLIST.as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "2f5eed53a4727b4bf8880d8f3f199efc90e58503646d9ff8eff3a2ed3b24dbda"
        );
    }

    #[test]
    fn every_list_word_is_found_at_its_index() {
        let d = detector();
        for (i, word) in WORDLIST.lines().enumerate() {
            assert_eq!(d.lookup(word).map(usize::from), Some(i), "{word}");
            assert_eq!(
                d.lookup(&word.to_uppercase()).map(usize::from),
                Some(i),
                "{word}"
            );
        }
        for word in ["the", "xylophone", "ab", "zzzz", "abandons"] {
            assert_eq!(d.lookup(word), None, "{word}");
        }
    }

    #[test]
    fn valid_phrases_are_found_in_any_case_and_separator() {
        let d = detector();
        for text in [
            VALID_12.to_string(),
            VALID_12.to_uppercase(),
            VALID_12.replace(' ', ","),
            VALID_12.replace(' ', "-"),
            format!("my wallet: {VALID_24}\nthanks"),
        ] {
            let found = d.scan(&text, "raw");
            assert_eq!(found.len(), 1, "{text}");
            assert!(
                !found[0].preview.contains("abandon abandon"),
                "{}",
                found[0].preview
            );
        }
        assert!(d.scan(VALID_24, "raw")[0].rule_name.contains("24 words"));
    }

    #[test]
    fn wrong_checksums_and_short_runs_are_not_phrases() {
        let d = detector();
        let bad = VALID_12.replace("about", "abandon");
        assert!(d.scan(&bad, "raw").is_empty());
        let eleven = VALID_12.split_once(' ').map_or("", |(_, rest)| rest);
        assert!(d.scan(eleven, "raw").is_empty());
        assert!(d
            .scan(
                "The quarterly report shows revenue grew in every region.",
                "raw"
            )
            .is_empty());
        let unchecked = SeedPhrases::new(&SeedPhraseDetection {
            verify_checksum: false,
            ..SeedPhraseDetection::default()
        });
        assert_eq!(unchecked.scan(&bad, "raw").len(), 1);
    }

    /// The sampled scan must find exactly what tokenizing the whole text finds.
    #[test]
    fn sampling_finds_what_a_full_pass_finds() {
        let d = detector();
        let unchecked = SeedPhrases::new(&SeedPhraseDetection {
            verify_checksum: false,
            ..SeedPhraseDetection::default()
        });
        let list: Vec<&str> = WORDLIST.lines().collect();
        let others = ["the", "of", "a", "xylophones", "report", "zz", "mmmmmmmmm"];
        let separators = [
            " ",
            ", ",
            "\n",
            "  ",
            "1. ",
            " - ",
            "\", \"",
            "\t",
            "................",
        ];
        let mut state = 0x9e37_79b9_u32;
        let mut next = |n: usize| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as usize % n
        };
        for round in 0..1500 {
            let mut text = String::new();
            for _ in 0..next(6) {
                text.push_str(others[next(others.len())]);
                text.push_str(separators[next(separators.len())]);
            }
            // A phrase (valid checksum) or a run of list words, among other words.
            let phrase = if round % 2 == 0 { VALID_12 } else { VALID_24 };
            let sep = separators[next(separators.len())];
            text.push_str(&phrase.replace(' ', sep));
            for _ in 0..next(30) {
                text.push_str(separators[next(separators.len())]);
                let word = if next(3) == 0 {
                    others[next(others.len())]
                } else {
                    list[next(list.len())]
                };
                text.push_str(word);
            }
            // The shortest possible run: twelve three-letter words, one byte apart.
            if round % 3 == 0 {
                text.push(' ');
                let short: Vec<&str> = list.iter().copied().filter(|w| w.len() == 3).collect();
                let run: Vec<&str> = (0..12).map(|_| short[next(short.len())]).collect();
                text.push_str(&run.join(","));
                text.push_str(" of");
            }
            let d = if round % 3 == 0 { &unchecked } else { &d };
            let sampled = d.scan(&text, "raw");
            let mut full = Vec::new();
            d.check_stretch(&text, 0..text.len(), "raw", &mut full);
            let spans = |f: &[Finding]| f.iter().map(|f| f.span.clone()).collect::<Vec<_>>();
            assert_eq!(spans(&sampled), spans(&full), "{text:?}");
            assert!(!full.is_empty(), "{text:?}");
        }
    }
}
