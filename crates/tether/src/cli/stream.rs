//! `tether stream <channel>`: standard input streamed into ONE message as
//! appends (pipe any program's output into a channel), completed at the
//! end of input.

use clap::Args;
use serde_json::json;
use tether_client::{Client, ResponseStream};
use tokio::sync::mpsc;

use super::{Failure, Format, Target, print_json, print_line};

/// Largest fragment sent in one append, well under the frame limit.
const MAX_FRAGMENT: usize = 16 * 1024;

/// Flags of `tether stream`.
#[derive(Debug, Args)]
pub struct StreamArgs {
    /// The channel.
    pub channel: String,
    /// The message name.
    #[arg(long, default_value = "response")]
    pub name: String,
    #[command(flatten)]
    pub target: Target,
}

/// Streams stdin; stops early (marking the message cancelled) when a client
/// sends a cancel request or on Ctrl-C.
pub async fn run(args: StreamArgs) -> Result<(), Failure> {
    let client = Client::connect(&args.target.url, args.target.options()).await?;
    let channel = client.channel(&args.channel)?;
    let mut response = channel
        .stream_response(&args.name, json!({"source": "tether stream"}))
        .await?;
    let mut stdin = read_stdin();
    let mut pending = Vec::new();
    let mut bytes = 0usize;
    loop {
        let chunk = tokio::select! {
            chunk = stdin.recv() => chunk.transpose()?,
            () = response.cancelled() => {
                response.cancel().await?;
                return Err("a client cancelled the response".to_owned().into());
            }
            _ = tokio::signal::ctrl_c() => {
                response.cancel().await?;
                return Err("interrupted; the response was marked cancelled".to_owned().into());
            }
        };
        let Some(chunk) = chunk else {
            break;
        };
        bytes += chunk.len();
        pending.extend_from_slice(&chunk);
        let text = take_utf8(&mut pending, false);
        append(&mut response, &text)?;
    }
    let rest = take_utf8(&mut pending, true);
    append(&mut response, &rest)?;
    let ack = response.complete().await?;
    match Format::detect() {
        Format::Json => print_json(&ack),
        Format::Human => print_line(&format!("streamed {bytes} bytes into {}", ack.serial)),
    }
}

/// Reads stdin on a plain thread (blocking reads are what stdin offers)
/// and hands chunks over as they come; the channel closes at end of input.
fn read_stdin() -> mpsc::Receiver<std::io::Result<Vec<u8>>> {
    let (tx, rx) = mpsc::channel(16);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = vec![0u8; 8192];
        loop {
            let chunk = match std::io::Read::read(&mut stdin, &mut buf) {
                Ok(0) => return,
                Ok(n) => Ok(buf[..n].to_vec()),
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(err) => Err(err),
            };
            let failed = chunk.is_err();
            if tx.blocking_send(chunk).is_err() || failed {
                return;
            }
        }
    });
    rx
}

fn append(response: &mut ResponseStream, text: &str) -> Result<(), Failure> {
    let mut rest = text;
    while !rest.is_empty() {
        let mut cut = rest.len().min(MAX_FRAGMENT);
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        response.append(&rest[..cut])?;
        rest = &rest[cut..];
    }
    Ok(())
}

/// Takes the decodable text from the front of `bytes`, leaving an
/// incomplete character at the end for the next read (unless `at_end`).
/// Invalid bytes become U+FFFD.
fn take_utf8(bytes: &mut Vec<u8>, at_end: bool) -> String {
    let mut text = String::new();
    let mut start = 0;
    loop {
        match std::str::from_utf8(&bytes[start..]) {
            Ok(valid) => {
                text.push_str(valid);
                start = bytes.len();
                break;
            }
            Err(err) => {
                let valid_end = start + err.valid_up_to();
                text.push_str(&String::from_utf8_lossy(&bytes[start..valid_end]));
                match err.error_len() {
                    Some(len) => {
                        text.push(char::REPLACEMENT_CHARACTER);
                        start = valid_end + len;
                    }
                    None if at_end => {
                        text.push(char::REPLACEMENT_CHARACTER);
                        start = bytes.len();
                        break;
                    }
                    None => {
                        start = valid_end;
                        break;
                    }
                }
            }
        }
    }
    bytes.drain(..start);
    text
}

#[cfg(test)]
mod tests {
    use super::take_utf8;

    #[test]
    fn keeps_split_characters_for_the_next_read() {
        let mut bytes = "hé".as_bytes().to_vec();
        let last = bytes.pop().expect("byte");
        assert_eq!(take_utf8(&mut bytes, false), "h");
        assert_eq!(bytes.len(), 1);
        bytes.push(last);
        assert_eq!(take_utf8(&mut bytes, false), "é");
        assert!(bytes.is_empty());
    }

    #[test]
    fn replaces_invalid_bytes() {
        let mut bytes = vec![b'a', 0xff, b'b', 0xc3];
        assert_eq!(take_utf8(&mut bytes, false), "a\u{fffd}b");
        assert_eq!(take_utf8(&mut bytes, true), "\u{fffd}");
        assert!(bytes.is_empty());
    }
}
