//! The scanner: pure, synchronous detection over bytes and text, with no I/O.
//!
//! Each detector (`dlp`, `injection`, …) is compiled once per config and shared behind an
//! `Arc`; scanning borrows the input and returns [`Finding`]s. Deciding what to do about a
//! finding (block, warn) is the policy's job, not the scanner's.

pub mod decode;
pub mod dlp;
pub mod env_secrets;
pub mod finding;
pub mod injection;
pub mod literals;
pub mod normalize;
pub mod runs;
pub mod seed_phrase;
pub mod shell;
pub mod text;
pub mod url;

pub use finding::{Finding, ScannerKind};
pub use text::TextDlp;
