//! Where a transparent connection goes, decided from the client's first bytes alone (a pure
//! function, so every case is unit-tested): a TLS ClientHello, an HTTP/1.x request line, or
//! anything else.

use crate::proxy::forward::sni::{self, Sni};

/// How many bytes are read looking for the route (a ClientHello with many extensions, such
/// as post-quantum key shares, can take a few KiB).
pub const MAX_PEEK: usize = 16 * 1024;

/// The longest HTTP method accepted (`PROPPATCH`, `VERSION-CONTROL` and the usual ones fit).
const MAX_METHOD: usize = 16;

/// Where the connection goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// A TLS ClientHello, with its server name when it has one.
    Tls { sni: Option<String> },
    /// An HTTP/1.x request line (`METHOD SP …`).
    Http,
    /// Neither; the reason is logged.
    Other(&'static str),
}

/// What the bytes so far say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peeked {
    Decided(Route),
    /// More bytes are needed.
    NeedMore,
}

/// Classifies the first `bytes` a client sent.
///
/// TLS starts with a handshake record (0x16) holding a ClientHello, which is read whole to
/// find the server name. HTTP/1.x starts with a method of 1 to 16 uppercase letters, `-` or
/// `_`, then a space; `PRI` is HTTP/2's prior-knowledge preface, which is not served. Text
/// protocols that merely start with letters (an SSH banner `SSH-2.0-…`) have a digit or a
/// dot before any space, so they are not mistaken for HTTP.
#[must_use]
pub fn classify(bytes: &[u8]) -> Peeked {
    let Some(&first) = bytes.first() else {
        return Peeked::NeedMore;
    };
    if first == 0x16 {
        return match sni::parse(bytes) {
            Sni::Name(name) => Peeked::Decided(Route::Tls { sni: Some(name) }),
            Sni::NoExtension => Peeked::Decided(Route::Tls { sni: None }),
            Sni::Incomplete if bytes.len() < MAX_PEEK => Peeked::NeedMore,
            Sni::Incomplete => Peeked::Decided(Route::Other("TLS ClientHello larger than 16 KiB")),
            Sni::Malformed | Sni::NotTls => {
                Peeked::Decided(Route::Other("malformed TLS ClientHello"))
            }
        };
    }
    let method_len = bytes
        .iter()
        .take(MAX_METHOD + 1)
        .take_while(|b| b.is_ascii_uppercase() || matches!(b, b'-' | b'_'))
        .count();
    match bytes.get(method_len) {
        None if method_len <= MAX_METHOD => Peeked::NeedMore,
        Some(b' ') if method_len > 0 && method_len <= MAX_METHOD => {
            if &bytes[..method_len] == b"PRI" {
                Peeked::Decided(Route::Other("HTTP/2 with prior knowledge is not served"))
            } else {
                Peeked::Decided(Route::Http)
            }
        }
        _ => Peeked::Decided(Route::Other("neither TLS nor HTTP/1.x")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::forward::sni::tests::client_hello;

    fn decided(bytes: &[u8]) -> Route {
        match classify(bytes) {
            Peeked::Decided(route) => route,
            Peeked::NeedMore => panic!("undecided: {bytes:?}"),
        }
    }

    #[test]
    fn tls_with_and_without_a_server_name() {
        assert_eq!(
            decided(&client_hello(Some("API.Example.com"))),
            Route::Tls {
                sni: Some("api.example.com".into())
            }
        );
        assert_eq!(decided(&client_hello(None)), Route::Tls { sni: None });
        let hello = client_hello(Some("example.com"));
        for cut in 1..hello.len() {
            assert_eq!(classify(&hello[..cut]), Peeked::NeedMore, "cut at {cut}");
        }
        let mut broken = hello;
        broken[5] = 0x02; // a ServerHello is not what a client sends
        assert_eq!(decided(&broken), Route::Other("malformed TLS ClientHello"));
        let mut endless = vec![0x16, 0x03, 0x01, 0xff, 0xff];
        endless.resize(MAX_PEEK, 0);
        assert_eq!(
            decided(&endless),
            Route::Other("TLS ClientHello larger than 16 KiB")
        );
    }

    #[test]
    fn http_request_lines() {
        for line in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"POST /upload HTTP/1.1\r\n",
            b"GET http://example.com/ HTTP/1.1\r\n",
            b"OPTIONS * HTTP/1.1\r\n",
            b"VERSION-CONTROL /x HTTP/1.1\r\n",
            b"GET ",
        ] {
            assert_eq!(decided(line), Route::Http, "{line:?}");
        }
        for partial in [&b"G"[..], b"GE", b"DELETE", b"PROPPATCH"] {
            assert_eq!(classify(partial), Peeked::NeedMore, "{partial:?}");
        }
    }

    #[test]
    fn everything_else() {
        assert_eq!(classify(b""), Peeked::NeedMore);
        for other in [
            &b"SSH-2.0-OpenSSH_9.2p1\r\n"[..],
            b"SSH-2.0-Go\r\n",
            b"\x00\x00\x00\x08\x04\xd2\x16\x2f", // Postgres SSLRequest
            b"*1\r\n$4\r\nPING\r\n",             // Redis
            b"get / HTTP/1.1\r\n",
            b" GET / HTTP/1.1",
            b"AVERYLONGMETHODNAME / HTTP/1.1",
            b"GET\r\n",
        ] {
            assert_eq!(
                decided(other),
                Route::Other("neither TLS nor HTTP/1.x"),
                "{other:?}"
            );
        }
        assert_eq!(
            decided(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
            Route::Other("HTTP/2 with prior knowledge is not served")
        );
    }
}
