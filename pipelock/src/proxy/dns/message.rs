//! The little of the DNS wire format (RFC 1035) the DNS listener needs: the header and the
//! one question of a query, read without trusting a byte, and the short answers Pipelock
//! gives itself (REFUSED, FORMERR, SERVFAIL, NOTIMP) with the question echoed. Everything
//! else in a query (EDNS options) is forwarded untouched, and answers are relayed as the
//! upstream resolver sent them.

use std::ops::Range;

/// Length of the DNS header.
pub const HEADER_LEN: usize = 12;
/// Longest name on the wire (RFC 1035 §2.3.4), length bytes included.
const MAX_NAME: usize = 255;
/// Longest label.
const MAX_LABEL: usize = 63;

/// Response codes Pipelock answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Rcode {
    FormErr = 1,
    ServFail = 2,
    NotImp = 4,
    Refused = 5,
}

/// The fixed header of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub id: u16,
    pub flags: u16,
    pub qdcount: u16,
}

impl Header {
    /// The QR bit: set in responses.
    #[must_use]
    pub fn is_response(&self) -> bool {
        self.flags & 0x8000 != 0
    }

    /// The operation (0 is a standard query).
    #[must_use]
    pub fn opcode(&self) -> u8 {
        ((self.flags >> 11) & 0x0f) as u8
    }
}

/// A query's header and its question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub header: Header,
    /// The question name's labels, as sent (case kept; any bytes).
    pub labels: Vec<Vec<u8>>,
    pub qtype: u16,
    pub qclass: u16,
    /// Where the question (name, type, class) lies in the message, to echo it.
    pub question: Range<usize>,
}

impl Query {
    /// The name as text, labels joined with dots (bytes that are not UTF-8 replaced).
    #[must_use]
    pub fn name(&self) -> String {
        self.labels
            .iter()
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .collect::<Vec<_>>()
            .join(".")
    }
}

/// Why a message is not a query Pipelock can judge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unusable {
    /// Shorter than a header, or a response: dropped without an answer.
    Drop,
    /// A header but no usable question: answered FORMERR.
    Malformed(Header),
    /// A well-formed message of another operation (NOTIFY, UPDATE, …): answered NOTIMP.
    NotAQuery(Header),
}

/// Reads the header and the single question of `message`.
///
/// # Errors
/// What to do with a message that is not a standard query with one well-formed question.
pub fn parse(message: &[u8]) -> Result<Query, Unusable> {
    let Some(fixed) = message.get(..HEADER_LEN) else {
        return Err(Unusable::Drop);
    };
    let word = |at: usize| u16::from_be_bytes([fixed[at], fixed[at + 1]]);
    let header = Header {
        id: word(0),
        flags: word(2),
        qdcount: word(4),
    };
    if header.is_response() {
        return Err(Unusable::Drop);
    }
    if header.opcode() != 0 {
        return Err(Unusable::NotAQuery(header));
    }
    if header.qdcount != 1 {
        return Err(Unusable::Malformed(header));
    }
    let mut at = HEADER_LEN;
    let mut labels = Vec::new();
    let mut wire_len = 0usize;
    loop {
        let Some(&len) = message.get(at) else {
            return Err(Unusable::Malformed(header));
        };
        let len = usize::from(len);
        wire_len += 1 + len;
        // Compression pointers (0xC0) and the reserved label types have no place in a
        // query's only question.
        if len > MAX_LABEL || wire_len > MAX_NAME {
            return Err(Unusable::Malformed(header));
        }
        at += 1;
        if len == 0 {
            break;
        }
        let Some(label) = message.get(at..at + len) else {
            return Err(Unusable::Malformed(header));
        };
        labels.push(label.to_vec());
        at += len;
    }
    let Some(tail) = message.get(at..at + 4) else {
        return Err(Unusable::Malformed(header));
    };
    Ok(Query {
        header,
        labels,
        qtype: u16::from_be_bytes([tail[0], tail[1]]),
        qclass: u16::from_be_bytes([tail[2], tail[3]]),
        question: HEADER_LEN..at + 4,
    })
}

/// Pipelock's own answer to a query with `header`: the same id, opcode and RD bit, QR and RA
/// set, `rcode`, and the question echoed when there is one.
#[must_use]
pub fn answer(header: Header, question: Option<&[u8]>, rcode: Rcode) -> Vec<u8> {
    let recursion_desired = header.flags & 0x0100;
    let opcode = header.flags & 0x7800;
    let flags = 0x8000 | opcode | recursion_desired | 0x0080 | rcode as u16;
    let mut out = Vec::with_capacity(HEADER_LEN + question.map_or(0, <[u8]>::len));
    out.extend_from_slice(&header.id.to_be_bytes());
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&u16::from(question.is_some()).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    if let Some(question) = question {
        out.extend_from_slice(question);
    }
    out
}

/// A standard query for `name` (dotted) of `qtype`, with RD set: for tests and tools.
#[must_use]
pub fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + name.len() + 6);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&0x0100u16.to_be_bytes());
    out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.').filter(|l| !l.is_empty()) {
        out.push(u8::try_from(label.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_is_read_back() {
        let bytes = query(0xbeef, "www.Example.com", 1);
        let parsed = parse(&bytes).expect("parses");
        assert_eq!(parsed.header.id, 0xbeef);
        assert_eq!(parsed.name(), "www.Example.com");
        assert_eq!((parsed.qtype, parsed.qclass), (1, 1));
        assert_eq!(parsed.question, HEADER_LEN..bytes.len());
        // The root name has no labels.
        let root = parse(&query(1, ".", 2)).expect("root");
        assert!(root.labels.is_empty());
        // EDNS after the question is left alone.
        let mut edns = bytes.clone();
        edns[11] = 1;
        edns.extend_from_slice(&[0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(parse(&edns).expect("edns").name(), "www.Example.com");
    }

    #[test]
    fn unusable_messages() {
        assert_eq!(parse(b""), Err(Unusable::Drop));
        assert_eq!(parse(&[0u8; 11]), Err(Unusable::Drop));
        let good = query(7, "example.com", 1);
        let mut response = good.clone();
        response[2] |= 0x80;
        assert_eq!(parse(&response), Err(Unusable::Drop));
        let header = |bytes: &[u8]| Header {
            id: 7,
            flags: u16::from_be_bytes([bytes[2], bytes[3]]),
            qdcount: u16::from_be_bytes([bytes[4], bytes[5]]),
        };
        let mut notify = good.clone();
        notify[2] |= 4 << 3;
        assert_eq!(parse(&notify), Err(Unusable::NotAQuery(header(&notify))));
        let mut two = good.clone();
        two[5] = 2;
        assert_eq!(parse(&two), Err(Unusable::Malformed(header(&two))));
        for cut in HEADER_LEN..good.len() {
            assert_eq!(
                parse(&good[..cut]),
                Err(Unusable::Malformed(header(&good))),
                "cut at {cut}"
            );
        }
        let mut pointer = good.clone();
        pointer[HEADER_LEN] = 0xc0;
        assert_eq!(parse(&pointer), Err(Unusable::Malformed(header(&good))));
        let long_label = query(7, &format!("{}.com", "a".repeat(64)), 1);
        assert!(matches!(parse(&long_label), Err(Unusable::Malformed(_))));
        let long_name = query(7, &vec!["a".repeat(60); 5].join("."), 1);
        assert!(matches!(parse(&long_name), Err(Unusable::Malformed(_))));
    }

    #[test]
    fn answers_echo_the_question() {
        let bytes = query(0x1234, "example.com", 28);
        let parsed = parse(&bytes).expect("parses");
        let refused = answer(
            parsed.header,
            bytes.get(parsed.question.clone()),
            Rcode::Refused,
        );
        assert_eq!(&refused[..2], &[0x12, 0x34]);
        assert_eq!(refused[2] & 0x80, 0x80, "QR");
        assert_eq!(refused[2] & 0x01, 0x01, "RD copied");
        assert_eq!(refused[3] & 0x0f, 5, "REFUSED");
        assert_eq!(&refused[4..6], &[0, 1]);
        assert_eq!(&refused[HEADER_LEN..], &bytes[HEADER_LEN..]);
        let formerr = answer(parsed.header, None, Rcode::FormErr);
        assert_eq!(formerr.len(), HEADER_LEN);
        assert_eq!(formerr[3] & 0x0f, 1);
        assert_eq!(&formerr[4..6], &[0, 0]);
    }

    #[test]
    fn garbage_never_panics() {
        let mut state = 0x2545_f491_u32;
        for len in 0..600 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 17;
                    state ^= state << 5;
                    state.to_le_bytes()[0]
                })
                .collect();
            let _ = parse(&bytes);
        }
    }
}
