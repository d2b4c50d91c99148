//! The gates a tunnel passes before a byte is relayed, in order: the host as a URL
//! (`https://host:port/`, every URL layer), the per-site rate limit and data budget, then the
//! addresses with the SSRF check. CONNECT tunnels resolve the host; TLS connections of the
//! transparent listener name their host in the ClientHello (SNI) and already have an address,
//! the one the client dialled. Both front doors call [`admit`], so a tunnel is judged the same
//! whichever way it arrived.

use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use hyper::StatusCode;

use super::dial;
use super::judge::Judgement;
use crate::proxy::ServerState;

/// A tunnel that passed: the findings that only warn, and the vetted addresses.
#[derive(Debug)]
pub struct Admitted {
    pub judged: Judgement,
    pub addrs: Vec<SocketAddr>,
}

/// Why a tunnel was refused.
#[derive(Debug)]
pub enum Refusal {
    /// A finding blocks; `status` is what an HTTP front door answers (403, or 429 for the
    /// rate limit and budget).
    Blocked {
        judged: Judgement,
        status: StatusCode,
    },
    /// The host did not resolve.
    Unresolved(io::Error),
}

/// Runs the gates for a tunnel to `host:port`; `known` is the original destination of a
/// transparent connection (see [`dial::vet`]).
///
/// # Errors
/// The [`Refusal`]; nothing is counted or logged yet, the front door does that.
pub async fn admit(
    state: &ServerState,
    host: &str,
    port: u16,
    known: Option<SocketAddr>,
) -> Result<Admitted, Refusal> {
    let mut judged = Judgement::default();
    judged.add(state, state.scanner.scan_url(&url_of(host, port)), true);
    if judged.block.is_some() {
        return Err(Refusal::Blocked {
            judged,
            status: StatusCode::FORBIDDEN,
        });
    }
    if let Err(finding) = state.scanner.budgets().admit(host, Instant::now()) {
        judged.add(state, vec![finding], true);
        if judged.block.is_some() {
            return Err(Refusal::Blocked {
                judged,
                status: StatusCode::TOO_MANY_REQUESTS,
            });
        }
    }
    let resolved = dial::vet(state, host, port, known)
        .await
        .map_err(Refusal::Unresolved)?;
    judged.add(state, resolved.findings, true);
    if judged.block.is_some() {
        return Err(Refusal::Blocked {
            judged,
            status: StatusCode::FORBIDDEN,
        });
    }
    Ok(Admitted {
        judged,
        addrs: resolved.addrs,
    })
}

/// `https://host:port/` as the URL scanner reads a tunnel (IPv6 literals bracketed).
fn url_of(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("https://[{host}]:{port}/")
    } else {
        format!("https://{host}:{port}/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tunnel_urls_bracket_ipv6() {
        assert_eq!(url_of("example.com", 443), "https://example.com:443/");
        assert_eq!(url_of("::1", 8443), "https://[::1]:8443/");
    }
}
