//! The benchmark's result: one row per case, rendered as a markdown table with the tools'
//! versions and notes on what was measured.

use std::fmt::Write;

/// Whether a case met its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Met {
    Yes,
    No,
    /// The case could not be measured (a feature Pipelock does not have yet, or a step that
    /// failed); the Pipelock cell says why.
    NotAvailable,
    /// A reference measurement with no target of its own.
    NoTarget,
}

/// One case: a cell per contender, the target, and whether Pipelock met it.
#[derive(Debug, Clone)]
pub struct Row {
    pub case: String,
    pub pipelock: String,
    pub tinyproxy: String,
    pub squid: String,
    pub direct: String,
    pub target: String,
    pub met: Met,
}

impl Row {
    /// A row for a case that could not be measured, `why` in the Pipelock cell.
    pub fn not_available(case: &str, target: &str, why: &str) -> Self {
        Self {
            case: case.to_string(),
            pipelock: format!("not available: {why}"),
            tinyproxy: "—".to_string(),
            squid: "—".to_string(),
            direct: "—".to_string(),
            target: target.to_string(),
            met: Met::NotAvailable,
        }
    }
}

/// The whole report in markdown: the table, then `versions` and `notes` as lists.
pub fn render(rows: &[Row], versions: &[(String, String)], notes: &[String]) -> String {
    let mut out = String::from("## Proxy benchmark (`cargo xtask bench-proxy`)\n\n");
    out.push_str("| Case | Pipelock | tinyproxy | squid | direct | Target | Met |\n");
    out.push_str("|---|---|---|---|---|---|---|\n");
    for row in rows {
        let met = match row.met {
            Met::Yes => "yes",
            Met::No => "**no**",
            Met::NotAvailable => "not available",
            Met::NoTarget => "—",
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {met} |",
            cell(&row.case),
            cell(&row.pipelock),
            cell(&row.tinyproxy),
            cell(&row.squid),
            cell(&row.direct),
            cell(&row.target),
        );
    }
    out.push_str("\nVersions and machine:\n\n");
    for (name, version) in versions {
        let _ = writeln!(out, "- {name}: {}", version.trim());
    }
    out.push_str("\nNotes:\n\n");
    for note in notes {
        let _ = writeln!(out, "- {note}");
    }
    out
}

/// A table cell: pipes escaped, line breaks flattened.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::{render, Met, Row};

    #[test]
    fn renders_a_row_per_case() {
        let rows = [Row {
            case: "small, req/s".into(),
            pipelock: "10 | 11".into(),
            tinyproxy: "9".into(),
            squid: "8".into(),
            direct: "20".into(),
            target: "≥ both".into(),
            met: Met::No,
        }];
        let text = render(
            &rows,
            &[("wrk".into(), "4.1.0\n".into())],
            &["a note".into()],
        );
        assert!(text.contains("| small, req/s | 10 \\| 11 | 9 | 8 | 20 | ≥ both | **no** |\n"));
        assert!(text.contains("- wrk: 4.1.0\n"));
        assert!(text.contains("- a note\n"));
    }
}
