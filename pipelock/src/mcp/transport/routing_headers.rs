//! The routing headers of MCP 2026-07-28 (SEP-2243): `Mcp-Method` mirrors the body's
//! `method`, `Mcp-Name` the `params.name` of `tools/call` and `prompts/get` or the
//! `params.uri` of `resources/read`, and `MCP-Protocol-Version` the revision the body declares
//! in `params._meta`. Pipelock judges the body, while load balancers, rate limiters and the
//! server's own router may act on the headers; a request whose headers say something else
//! than its body would be judged as one call and routed as another, so it is refused here, as
//! the spec tells servers to (HTTP 400, JSON-RPC `-32020`). Headers that are absent are the
//! server's business (earlier revisions do not send them); only a disagreement is refused.
//! Pure: no I/O.

use hyper::header::HeaderMap;
use serde_json::Value;

use crate::mcp::jsonrpc::declared_protocol_version;
use crate::scan::decode::decode_base64;

/// JSON-RPC error code of a header/body disagreement (the spec's `HeaderMismatch`).
pub const HEADER_MISMATCH: i64 = -32020;

const METHOD: &str = "mcp-method";
const NAME: &str = "mcp-name";
const PROTOCOL_VERSION: &str = "mcp-protocol-version";

/// Whether the request carries `Mcp-Method` or `Mcp-Name`, as every request of a revision
/// with routing headers does; otherwise (earlier revisions, which send only
/// `MCP-Protocol-Version` and never declare it in the body) there is nothing to compare and
/// the body is not parsed a second time for it.
#[must_use]
pub fn any_present(headers: &HeaderMap) -> bool {
    headers.contains_key(METHOD) || headers.contains_key(NAME)
}

/// Why the headers of a request disagree with its body, if they do. `body` is the parsed
/// message (a batch is not checked: the revisions with routing headers have no batches).
#[must_use]
pub fn mismatch(headers: &HeaderMap, body: &Value) -> Option<String> {
    let Value::Object(message) = body else {
        return None;
    };
    let method = message.get("method").and_then(Value::as_str);
    if let Some(header) = single(headers, METHOD) {
        match (header, method) {
            (Ok(header), Some(method)) if header == method => {}
            (Ok(header), _) => {
                return Some(format!(
                    "Mcp-Method {header:?} does not match the body's method {method:?}"
                ))
            }
            (Err(why), _) => return Some(format!("Mcp-Method {why}")),
        }
    }
    if let Some(header) = single(headers, PROTOCOL_VERSION) {
        if let (Ok(header), Some(declared)) = (&header, declared_protocol_version(body)) {
            if header != declared {
                return Some(format!(
                    "MCP-Protocol-Version {header:?} does not match the body's {declared:?}"
                ));
            }
        } else if let Err(why) = header {
            return Some(format!("MCP-Protocol-Version {why}"));
        }
    }
    let field = match method {
        Some("tools/call" | "prompts/get") => "name",
        Some("resources/read") => "uri",
        _ => return None,
    };
    let header = single(headers, NAME)?;
    let named = message
        .get("params")
        .and_then(|p| p.get(field))
        .and_then(Value::as_str);
    match header.map(|h| decode_value(&h)) {
        Ok(Some(decoded)) if Some(decoded.as_str()) == named => None,
        Ok(Some(decoded)) => Some(format!(
            "Mcp-Name {decoded:?} does not match the body's params.{field} {named:?}"
        )),
        Ok(None) => Some("Mcp-Name carries a malformed =?base64?…?= value".to_string()),
        Err(why) => Some(format!("Mcp-Name {why}")),
    }
}

/// The one value of header `name`: `None` when absent, an error when repeated or not text.
fn single(headers: &HeaderMap, name: &str) -> Option<Result<String, &'static str>> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    if values.next().is_some() {
        return Some(Err("is sent more than once"));
    }
    Some(
        first
            .to_str()
            .map(str::to_string)
            .map_err(|_| "is not visible ASCII"),
    )
}

/// A header value as the sender meant it: verbatim, or the UTF-8 inside the `=?base64?…?=`
/// wrapping that carries values a header cannot hold; `None` when that wrapping is malformed.
fn decode_value(value: &str) -> Option<String> {
    let Some(payload) = value
        .strip_prefix("=?base64?")
        .and_then(|rest| rest.strip_suffix("?="))
    else {
        return Some(value.to_string());
    };
    let bytes = decode_base64(payload.as_bytes())?;
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().expect("valid header value"));
        }
        map
    }

    fn call(name: &str) -> Value {
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
            "name": name, "arguments": {},
            "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}})
    }

    #[test]
    fn agreeing_or_absent_headers_pass() {
        assert_eq!(mismatch(&HeaderMap::new(), &call("add")), None);
        let agreeing = headers(&[
            ("mcp-method", "tools/call"),
            ("mcp-name", "add"),
            ("mcp-protocol-version", "2026-07-28"),
        ]);
        assert_eq!(mismatch(&agreeing, &call("add")), None);
        // Non-ASCII names travel base64-wrapped.
        let wrapped = headers(&[("mcp-name", "=?base64?d2V0dGVyX8O8YmVyc2ljaHQ=?=")]);
        assert_eq!(mismatch(&wrapped, &call("wetter_übersicht")), None);
        // A legacy request declares no revision in the body: the header is not compared.
        let legacy = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"});
        assert_eq!(
            mismatch(&headers(&[("mcp-protocol-version", "2025-06-18")]), &legacy),
            None
        );
        let read = json!({"jsonrpc": "2.0", "id": 2, "method": "resources/read",
            "params": {"uri": "file:///a"}});
        assert_eq!(
            mismatch(&headers(&[("mcp-name", "file:///a")]), &read),
            None
        );
    }

    #[test]
    fn disagreeing_headers_are_reported() {
        let cases = [
            (
                headers(&[("mcp-name", "add")]),
                call("delete_everything"),
                "Mcp-Name",
            ),
            (
                headers(&[("mcp-method", "tools/list")]),
                call("add"),
                "Mcp-Method",
            ),
            (
                headers(&[("mcp-method", "tools/call"), ("mcp-method", "tools/call")]),
                call("add"),
                "more than once",
            ),
            (
                headers(&[("mcp-protocol-version", "2025-06-18")]),
                call("add"),
                "MCP-Protocol-Version",
            ),
            (
                headers(&[("mcp-name", "=?base64?%%%?=")]),
                call("add"),
                "malformed",
            ),
        ];
        for (map, body, expected) in cases {
            let why = mismatch(&map, &body).unwrap_or_default();
            assert!(why.contains(expected), "{map:?}: {why:?}");
        }
    }
}
