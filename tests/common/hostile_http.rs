//! Listeners an attacker would run: one that redirects every request, one
//! that records the Authorization header of each request it gets.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

/// A server that answers every request with a redirect to `to`.
pub fn redirecting_server(to: String) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut line = String::new();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            while reader.read_line(&mut line).unwrap_or(0) > 2 {
                line.clear();
            }
            let answer = format!(
                "HTTP/1.1 302 Found\r\nLocation: {to}/info/refs?service=git-upload-pack\r\nContent-Length: 0\r\n\r\n"
            );
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    port
}

/// A listener that records each request's Authorization header (or "none").
pub fn recording_server() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut auth = "none".to_owned();
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 2 {
                if line.to_ascii_lowercase().starts_with("authorization:") {
                    auth = line.trim().to_owned();
                }
                line.clear();
            }
            record.lock().unwrap().push(auth);
            let _ = stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
        }
    });
    (port, seen)
}
