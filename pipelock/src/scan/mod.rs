//! The scanner: pure, synchronous detection over bytes and text, with no I/O.
//!
//! Each detector (`dlp`, `injection`, …) is compiled once per config and shared behind an
//! `Arc`; scanning borrows the input and returns [`Finding`]s. Deciding what to do about a
//! finding (block, warn) is the policy's job, not the scanner's.

pub mod body;
pub mod budget;
pub mod classes;
pub mod decode;
pub mod dlp;
pub mod dns;
pub mod env_secrets;
pub mod finding;
pub mod html;
pub mod inflate;
pub mod injection;
pub mod keywords;
pub mod literals;
pub mod normalize;
pub mod runs;
pub mod scanner;
pub mod seed_phrase;
pub mod shell;
pub mod text;
pub mod url;

pub use finding::{Finding, ScannerKind};
pub use scanner::{Scanner, ScannerBuildError};
pub use text::TextDlp;

#[cfg(test)]
mod robustness {
    //! Random input through every scanner: nothing may panic, and every finding's span must
    //! lie on character boundaries of some view no longer than the bounded decodings allow.

    use super::injection::InjectionScanner;
    use super::shell::ShellScanner;
    use super::url::UrlScanner;
    use super::TextDlp;
    use crate::config::Config;

    const PIECES: &[&str] = &[
        "a",
        "Z",
        "0",
        "7",
        " ",
        "\n",
        "\t",
        "%",
        "%2",
        "%41",
        "%0a",
        "\\",
        "\\u00",
        "\\x4",
        "{",
        "}",
        ",",
        "$",
        "$(",
        "`",
        "'",
        "\"",
        "+",
        "=",
        ":",
        "/",
        "..",
        ".",
        "-",
        "_",
        "@",
        "#",
        "<|",
        "|>",
        "é",
        "无",
        "시",
        "\u{200B}",
        "\u{FEFF}",
        "\u{0301}",
        "😀",
        "ѕ",
        "ｉ",
        "AKIA",
        "sk-ant-",
        "ghp_",
        "ignore",
        "previous",
        "instructions",
        "system:",
        "rm",
        "-rf",
        "${IFS}",
        "abandon",
        "about",
        "http://",
        "https://",
        "[::1]",
        "0x7f",
        "QUtJQU",
        "==",
        "password=",
        "://",
        "\r",
    ];

    #[test]
    fn random_input_never_panics() {
        let config = Config::default();
        let dlp = TextDlp::with_env(&config.dlp, None)
            .expect("dlp")
            .with_seed_phrases(&config.seed_phrase_detection);
        let injection = InjectionScanner::new(&config.response_scanning).expect("injection");
        let shell = ShellScanner::new().expect("shell");
        let urls = UrlScanner::new(&config);
        let mut state = 0x9E37_79B9_7F4A_7C15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..1500 {
            let len = usize::try_from(next() % 40).unwrap_or(0);
            let text: String = (0..len)
                .map(|_| PIECES[usize::try_from(next() % PIECES.len() as u64).unwrap_or(0)])
                .collect();
            for finding in dlp
                .scan(&text)
                .into_iter()
                .chain(injection.scan(&text))
                .chain(shell.scan(&text))
            {
                assert!(
                    finding.span.start <= finding.span.end,
                    "{text:?}: {finding:?}"
                );
            }
            let _ = urls.scan(&text, &dlp);
            let _ = urls.scan(&format!("https://{text}"), &dlp);
        }
    }
}
