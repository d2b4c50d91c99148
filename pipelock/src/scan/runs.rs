//! One pass over a text's byte classes that tells the DLP rules and the decoders whether they
//! have anything to look at: long runs of base64 or token bytes, and digit runs.

use super::classes::{for_each_block, RunFinder};

/// Shortest base64 or hex run worth decoding.
pub const MIN_ENCODED_RUN: u32 = 16;
/// Token bytes in a row that make the long-token DLP formats worth checking.
pub const MIN_TOKEN_RUN: u32 = 20;
/// Digits (single spaces or dashes between them allowed) that make a number worth checking.
pub const MIN_DIGITS: usize = 9;

/// What the pass found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Runs {
    /// A run of [`MIN_ENCODED_RUN`] base64-alphabet bytes (base64 and hex payloads need one).
    pub encoded: bool,
    /// A run of [`MIN_TOKEN_RUN`] token bytes (letters, digits, `_`, `-`): every prefix-less
    /// format needs one, and so does every format whose rule is gated by `Trigger::Token`.
    pub token: bool,
    /// [`MIN_DIGITS`] digits in a row, each pair joined by at most one space or dash (card
    /// numbers, SSNs, IBANs).
    pub digits: bool,
}

impl Runs {
    /// Every gate open: for callers that have not looked.
    pub const ALL: Self = Self {
        encoded: true,
        token: true,
        digits: true,
    };
}

/// Looks at `bytes` once.
#[must_use]
pub fn runs(bytes: &[u8]) -> Runs {
    let mut encoded = RunFinder::<MIN_ENCODED_RUN>::default();
    let mut token = RunFinder::<MIN_TOKEN_RUN>::default();
    // Digits with single joiners form a run of at least MIN_DIGITS bytes in which no two
    // joiners touch; such a run only makes a candidate, confirmed by the exact count below.
    let mut numeric = RunFinder::<{ MIN_DIGITS as u32 }>::default();
    let mut found = Runs {
        encoded: false,
        token: false,
        digits: false,
    };
    let mut candidate = false;
    for_each_block(bytes, |_, c| {
        found.encoded |= encoded.push(c.base64);
        found.token |= token.push(c.token);
        let joiner = c.joiner;
        let lone_joiner = joiner & !(joiner << 1) & !(joiner >> 1);
        candidate |= numeric.push(c.digit | lone_joiner);
    });
    found.digits = candidate && has_digit_run(bytes);
    found
}

/// The exact digit-run rule: [`MIN_DIGITS`] digits, consecutive ones separated by at most one
/// space or dash.
#[must_use]
pub fn has_digit_run(bytes: &[u8]) -> bool {
    let (mut digits, mut joiners) = (0usize, 0usize);
    for &b in bytes {
        if b.is_ascii_digit() {
            digits += 1;
            joiners = 0;
            if digits >= MIN_DIGITS {
                return true;
            }
        } else if (b == b' ' || b == b'-') && digits > 0 && joiners == 0 {
            joiners = 1;
        } else {
            digits = 0;
            joiners = 0;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digit_runs() {
        for yes in [
            "card 4111 1111 1111 1111",
            "123-45-6789",
            "x123456789",
            "1 2 3 4 5 6 7 8 9",
        ] {
            assert!(runs(yes.as_bytes()).digits, "{yes}");
        }
        for no in [
            "in 2024 we had 45 people",
            "no digits at all",
            "12345678",
            "1234  5678  9",
            "1234--56789",
            "fn x() {\n        let a = 1;\n        let b = 22;\n}",
        ] {
            assert!(!runs(no.as_bytes()).digits, "{no}");
        }
    }

    #[test]
    fn runs_are_found_wherever_they_start() {
        for len in [15usize, 16, 19, 20, 21, 40, 70, 130] {
            for offset in 0..70 {
                let text = format!("{}{} tail", "x ".repeat(offset), "a".repeat(len));
                let found = runs(text.as_bytes());
                assert_eq!(found.encoded, len >= 16, "len {len} offset {offset}");
                assert_eq!(found.token, len >= 20, "len {len} offset {offset}");
                let digits = format!("{}{}", "x ".repeat(offset), "7".repeat(len % 12));
                assert_eq!(runs(digits.as_bytes()).digits, len % 12 >= 9);
            }
        }
        let b64 = "ab+/".repeat(5);
        assert_eq!(
            runs(b64.as_bytes()),
            Runs {
                encoded: true,
                token: false,
                digits: false
            }
        );
        assert_eq!(
            runs(b""),
            Runs {
                encoded: false,
                token: false,
                digits: false
            }
        );
    }
}
