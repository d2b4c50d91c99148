//! Request headers at the proxy: which ones travel end to end (the hop-by-hop ones never do),
//! and which ones are DLP-scanned before anything is forwarded. Every forward-proxy door (HTTP
//! requests, WebSocket handshakes) uses these two, so a header is treated the same everywhere.

use hyper::header::{HeaderMap, CONNECTION};

use super::judge::Judgement;
use crate::config::BlockOrWarn;
use crate::proxy::ServerState;

/// Headers that describe one hop, never forwarded (RFC 9110 §7.6.1, plus the proxy ones).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "proxy-connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Copies the end-to-end headers of `from` into `to`: every header except the hop-by-hop
/// ones and those the `Connection` header names.
pub fn copy_end_to_end(from: &HeaderMap, to: &mut HeaderMap) {
    let named: Vec<String> = from
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|n| n.trim().to_ascii_lowercase())
        .collect();
    for (name, value) in from {
        let lower = name.as_str();
        if HOP_BY_HOP.contains(&lower) || named.iter().any(|n| n == lower) {
            continue;
        }
        to.append(name.clone(), value.clone());
    }
}

/// Request-header DLP (`request_body_scanning`): every header the section scans
/// (`scans_header`) goes through the outbound scanner, judged with the section's `action`.
pub fn scan_request_headers(state: &ServerState, headers: &HeaderMap, judged: &mut Judgement) {
    let section = &state.config.request_body_scanning;
    if !section.enabled {
        return;
    }
    let section_blocks = section.action == BlockOrWarn::Block;
    for (name, value) in headers {
        if section.scans_header(name.as_str()) {
            let text = String::from_utf8_lossy(value.as_bytes());
            judged.add(state, state.scanner.scan_outbound(&text), section_blocks);
        }
    }
}
