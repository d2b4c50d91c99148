//! `pipelock healthcheck` against a real pipelock, a closed port, a server that answers
//! non-200, and a server that never answers.

use std::io::Read;
use std::net::TcpListener;
use std::process::Command;
use std::time::Duration;

use pipelock_e2e::{describe, free_port, run_pipelock, wait_timeout, Pipelock};

const TIMEOUT: Duration = Duration::from_secs(20);

#[test]
fn healthy_pipelock_exits_zero() {
    let pipelock = Pipelock::start(&["--listen", "127.0.0.1:0"]).expect("start");
    let addr = pipelock.addr.to_string();
    let output = run_pipelock(&["healthcheck", "--addr", &addr], None, TIMEOUT).expect("run");
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("healthy"));
}

#[test]
fn closed_port_fails_with_a_reason() {
    let addr = format!("127.0.0.1:{}", free_port().expect("port"));
    let output = run_pipelock(&["healthcheck", "--addr", &addr], None, TIMEOUT).expect("run");
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot connect"), "{}", describe(&output));
}

#[test]
fn non_200_fails_with_the_status() {
    // A real HTTP server on loopback that has no /health.
    let port = free_port().expect("port");
    let mut server = Command::new("python3")
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .current_dir(std::env::temp_dir())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("python http.server");
    let addr = format!("127.0.0.1:{port}");
    let mut ready = false;
    for _ in 0..200 {
        if std::net::TcpStream::connect(&addr).is_ok() {
            ready = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let output = run_pipelock(&["healthcheck", "--addr", &addr], None, TIMEOUT);
    let _ = server.kill();
    let _ = wait_timeout(&mut server, Duration::from_secs(5));
    assert!(ready, "python http.server did not start");
    let output = output.expect("run");
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("answered 404"),
        "{}",
        describe(&output)
    );
}

#[test]
fn silent_server_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    // Accept and hold the connection without answering.
    let holder = std::thread::spawn(move || {
        if let Ok((mut stream, _)) = listener.accept() {
            let mut buf = [0u8; 1024];
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = stream.read(&mut buf);
            std::thread::sleep(Duration::from_secs(2));
        }
    });
    let output = run_pipelock(
        &["healthcheck", "--addr", &addr, "--timeout-seconds", "1"],
        None,
        TIMEOUT,
    )
    .expect("run");
    let _ = holder.join();
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no response") || stderr.contains("timed out"),
        "{}",
        describe(&output)
    );
}

#[test]
fn malformed_address_is_rejected() {
    let output =
        run_pipelock(&["healthcheck", "--addr", "not an address"], None, TIMEOUT).expect("run");
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("invalid --addr"));
}
