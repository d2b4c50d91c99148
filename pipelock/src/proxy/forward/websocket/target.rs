//! The upstream a WebSocket session is for: from `/ws?url=ws://host:port/path`, or from the
//! absolute URI of a forward-proxy upgrade (`GET http://host/path`).

use url::Url;

/// Where the session connects, taken apart once so every phase reads the same values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The host without IPv6 brackets, for resolution and budgets.
    pub host: String,
    pub port: u16,
    /// `host[:port]` as written in the URL (brackets kept), for `Host` and `Origin`.
    pub authority: String,
    /// The request target sent upstream: path and query, never the fragment.
    pub path_and_query: String,
    /// `wss://` (or `https://`): the upstream speaks TLS.
    pub tls: bool,
}

/// Why a target cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("/ws needs a url query parameter, e.g. /ws?url=ws://host:port/path")]
    Missing,
    #[error("the target is not a URL: {0}")]
    Unparseable(#[from] url::ParseError),
    #[error("the target scheme {0:?} is not ws:// or wss://")]
    Scheme(String),
    #[error("the target URL has no host")]
    NoHost,
}

impl Target {
    /// Parses `raw`: `ws://` and `http://` are plain, `wss://` and `https://` TLS.
    ///
    /// # Errors
    /// Not a URL, another scheme, or no host.
    pub fn parse(raw: &str) -> Result<Self, TargetError> {
        let url = Url::parse(raw)?;
        let tls = match url.scheme() {
            "ws" | "http" => false,
            "wss" | "https" => true,
            other => return Err(TargetError::Scheme(other.to_string())),
        };
        let host_str = url.host_str().filter(|h| !h.is_empty());
        let Some(host_str) = host_str else {
            return Err(TargetError::NoHost);
        };
        let port = url.port().unwrap_or(if tls { 443 } else { 80 });
        let authority = match url.port() {
            Some(port) => format!("{host_str}:{port}"),
            None => host_str.to_string(),
        };
        let mut path_and_query = url.path().to_string();
        if path_and_query.is_empty() {
            path_and_query.push('/');
        }
        if let Some(query) = url.query() {
            path_and_query.push('?');
            path_and_query.push_str(query);
        }
        Ok(Self {
            host: host_str
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port,
            authority,
            path_and_query,
            tls,
        })
    }

    /// The target as the URL scanner reads it: the `http(s)://` twin of the `ws(s)://` URL
    /// (the scanner allows only web schemes, and a WebSocket starts as an HTTP request).
    #[must_use]
    pub fn scan_form(&self) -> String {
        format!("{}{}", self.origin(), self.path_and_query)
    }

    /// `http(s)://host[:port]`: what `origin_policy: rewrite` sends as `Origin`.
    #[must_use]
    pub fn origin(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.authority)
    }
}

/// The `url` query parameter of a `/ws` request, percent-decoded.
///
/// # Errors
/// There is no `url` parameter (or it is empty).
pub fn from_query(query: Option<&str>) -> Result<String, TargetError> {
    url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .find(|(name, _)| name == "url")
        .map(|(_, value)| value.into_owned())
        .filter(|value| !value.is_empty())
        .ok_or(TargetError::Missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ws_targets_are_taken_apart() {
        let target = Target::parse("ws://127.0.0.1:9001/chat?room=1#frag").expect("parses");
        assert_eq!(target.host, "127.0.0.1");
        assert_eq!(target.port, 9001);
        assert_eq!(target.authority, "127.0.0.1:9001");
        assert_eq!(target.path_and_query, "/chat?room=1");
        assert!(!target.tls);
        assert_eq!(target.origin(), "http://127.0.0.1:9001");
        assert_eq!(target.scan_form(), "http://127.0.0.1:9001/chat?room=1");

        let target = Target::parse("wss://[::1]/").expect("parses");
        assert_eq!((target.host.as_str(), target.port), ("::1", 443));
        assert_eq!(target.origin(), "https://[::1]");
        assert!(target.tls);

        let target = Target::parse("http://example.com").expect("parses");
        assert_eq!((target.port, target.path_and_query.as_str()), (80, "/"));
    }

    #[test]
    fn other_schemes_and_missing_parts_are_refused() {
        assert!(matches!(
            Target::parse("ftp://example.com/"),
            Err(TargetError::Scheme(_))
        ));
        assert!(matches!(
            Target::parse("not a url"),
            Err(TargetError::Unparseable(_))
        ));
        assert!(matches!(from_query(None), Err(TargetError::Missing)));
        assert!(matches!(
            from_query(Some("url=")),
            Err(TargetError::Missing)
        ));
        assert_eq!(
            from_query(Some("x=1&url=ws%3A%2F%2Fh%3A1%2Fp%3Fa%3Db")).expect("found"),
            "ws://h:1/p?a=b"
        );
    }
}
