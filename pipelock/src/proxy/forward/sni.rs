//! The server name a TLS client asks for, read from its ClientHello, so a CONNECT tunnel
//! cannot name one host and talk to another (domain fronting). Pure parsing; the tunnel
//! reads the bytes.

/// What the first bytes of a tunnel say about the server name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sni {
    /// A ClientHello naming this host.
    Name(String),
    /// A ClientHello without a server name extension.
    NoExtension,
    /// Not TLS at all (the first byte is not a handshake record).
    NotTls,
    /// A TLS handshake that does not parse.
    Malformed,
    /// More bytes are needed.
    Incomplete,
}

/// Reads the server name from the start of a TLS stream (one or more handshake records).
#[must_use]
pub fn parse(bytes: &[u8]) -> Sni {
    if bytes.is_empty() {
        return Sni::Incomplete;
    }
    if bytes[0] != 0x16 {
        return Sni::NotTls;
    }
    // Join the handshake records' payloads until the ClientHello is whole.
    let mut handshake = Vec::new();
    let mut at = 0;
    loop {
        let Some(header) = bytes.get(at..at + 5) else {
            return Sni::Incomplete;
        };
        if header[0] != 0x16 || header[1] != 0x03 {
            return Sni::Malformed;
        }
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        let Some(payload) = bytes.get(at + 5..at + 5 + len) else {
            return Sni::Incomplete;
        };
        handshake.extend_from_slice(payload);
        at += 5 + len;
        if handshake.len() >= 4 {
            let body_len = usize::from(handshake[1]) << 16
                | usize::from(handshake[2]) << 8
                | usize::from(handshake[3]);
            if handshake.len() >= 4 + body_len {
                if handshake[0] != 0x01 {
                    return Sni::Malformed;
                }
                return client_hello(&handshake[4..4 + body_len]).unwrap_or(Sni::Malformed);
            }
        }
    }
}

/// A cursor over a ClientHello body.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (self.bytes.get(..n)?, self.bytes.get(n..)?);
        self.bytes = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<usize> {
        self.take(1).map(|b| usize::from(b[0]))
    }
    fn u16(&mut self) -> Option<usize> {
        self.take(2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
    }
}

fn client_hello(body: &[u8]) -> Option<Sni> {
    let mut r = Reader { bytes: body };
    r.take(2 + 32)?; // version, random
    let session = r.u8()?;
    r.take(session)?;
    let suites = r.u16()?;
    r.take(suites)?;
    let compression = r.u8()?;
    r.take(compression)?;
    if r.bytes.is_empty() {
        return Some(Sni::NoExtension);
    }
    let extensions = r.u16()?;
    let mut ext = Reader {
        bytes: r.take(extensions)?,
    };
    while !ext.bytes.is_empty() {
        let kind = ext.u16()?;
        let len = ext.u16()?;
        let data = ext.take(len)?;
        if kind == 0 {
            let mut list = Reader { bytes: data };
            let list_len = list.u16()?;
            let mut names = Reader {
                bytes: list.take(list_len)?,
            };
            while !names.bytes.is_empty() {
                let name_type = names.u8()?;
                let name_len = names.u16()?;
                let name = names.take(name_len)?;
                if name_type == 0 {
                    let name = std::str::from_utf8(name).ok()?;
                    return Some(Sni::Name(name.to_ascii_lowercase()));
                }
            }
            return Some(Sni::NoExtension);
        }
    }
    Some(Sni::NoExtension)
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// A minimal ClientHello record, with a server name extension when `name` is given.
    #[must_use]
    pub fn client_hello(name: Option<&str>) -> Vec<u8> {
        let mut body = vec![0x03, 0x03];
        body.extend([7u8; 32]);
        body.push(0); // session id
        body.extend([0x00, 0x02, 0x13, 0x01]); // one cipher suite
        body.extend([0x01, 0x00]); // null compression
        let mut extensions = Vec::new();
        if let Some(name) = name {
            let name = name.as_bytes();
            let mut list = vec![0u8];
            list.extend(u16::try_from(name.len()).unwrap_or(0).to_be_bytes());
            list.extend(name);
            let mut data = u16::try_from(list.len())
                .unwrap_or(0)
                .to_be_bytes()
                .to_vec();
            data.extend(list);
            extensions.extend([0x00, 0x00]);
            extensions.extend(u16::try_from(data.len()).unwrap_or(0).to_be_bytes());
            extensions.extend(data);
        }
        // Another extension (supported_versions), so the parser has to skip one.
        extensions.extend([0x00, 0x2b, 0x00, 0x03, 0x02, 0x03, 0x04]);
        body.extend(u16::try_from(extensions.len()).unwrap_or(0).to_be_bytes());
        body.extend(extensions);
        let mut handshake = vec![0x01];
        handshake.extend(&u32::try_from(body.len()).unwrap_or(0).to_be_bytes()[1..]);
        handshake.extend(body);
        let mut record = vec![0x16, 0x03, 0x01];
        record.extend(u16::try_from(handshake.len()).unwrap_or(0).to_be_bytes());
        record.extend(handshake);
        record
    }

    #[test]
    fn names_missing_names_and_other_protocols() {
        assert_eq!(
            parse(&client_hello(Some("API.OpenAI.com"))),
            Sni::Name("api.openai.com".into())
        );
        assert_eq!(parse(&client_hello(None)), Sni::NoExtension);
        assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Sni::NotTls);
        let hello = client_hello(Some("example.com"));
        for cut in 1..hello.len() {
            assert_eq!(parse(&hello[..cut]), Sni::Incomplete, "cut at {cut}");
        }
        let mut broken = hello.clone();
        broken[5] = 0x02; // not a ClientHello
        assert_eq!(parse(&broken), Sni::Malformed);
        let mut bad_version = hello;
        bad_version[1] = 0x09;
        assert_eq!(parse(&bad_version), Sni::Malformed);
    }

    #[test]
    fn a_hello_split_over_two_records() {
        let hello = client_hello(Some("example.com"));
        let handshake = &hello[5..];
        let (a, b) = handshake.split_at(20);
        let mut split = Vec::new();
        for part in [a, b] {
            split.extend([0x16, 0x03, 0x01]);
            split.extend(u16::try_from(part.len()).unwrap_or(0).to_be_bytes());
            split.extend(part);
        }
        assert_eq!(parse(&split), Sni::Name("example.com".into()));
    }

    #[test]
    fn garbage_never_panics() {
        let mut state = 0x1234_5678_u32;
        for len in 0..300 {
            let bytes: Vec<u8> = (0..len)
                .map(|i| {
                    state ^= state << 13;
                    state ^= state >> 17;
                    state ^= state << 5;
                    if i == 0 {
                        0x16
                    } else {
                        state as u8
                    }
                })
                .collect();
            let _ = parse(&bytes);
        }
    }
}
