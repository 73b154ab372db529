//! A Server-Sent Events decoder: bytes in, the `data` of each event out.
//!
//! Pure (no I/O) so it can be tested on every way a network splits a
//! stream: events across reads, a UTF-8 character across reads, `\r\n` line
//! ends, comments and fields we do not use.

/// Longest line accepted. An upstream that sends a longer one is broken or
/// hostile; buffering it without bound would let it exhaust memory.
pub(crate) const MAX_LINE: usize = 1024 * 1024;

/// Why a stream cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum SseError {
    /// A line is not valid UTF-8.
    #[error("an SSE line is not valid UTF-8")]
    NotUtf8,
    /// A line is longer than [`MAX_LINE`].
    #[error("an SSE line is longer than {MAX_LINE} bytes")]
    LineTooLong,
}

/// Incremental decoder. Feed it with [`SseDecoder::push`]; call
/// [`SseDecoder::finish`] at the end of the stream.
#[derive(Debug, Default)]
pub(crate) struct SseDecoder {
    /// Bytes of the current, incomplete line.
    line: Vec<u8>,
    /// `data` lines of the current event, joined with `\n`.
    data: Option<String>,
}

impl SseDecoder {
    /// A decoder at the start of a stream.
    pub(crate) fn new() -> SseDecoder {
        SseDecoder::default()
    }

    /// Decodes `bytes`, appending the data of each completed event to
    /// `events`.
    pub(crate) fn push(&mut self, bytes: &[u8], events: &mut Vec<String>) -> Result<(), SseError> {
        let mut rest = bytes;
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            self.line.extend_from_slice(&rest[..end]);
            rest = &rest[end + 1..];
            let mut line = std::mem::take(&mut self.line);
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            self.line_done(&line, events)?;
        }
        self.line.extend_from_slice(rest);
        if self.line.len() > MAX_LINE {
            return Err(SseError::LineTooLong);
        }
        Ok(())
    }

    /// Ends the stream: an event not terminated by a blank line still
    /// counts (some servers close right after the last `data:` line).
    pub(crate) fn finish(&mut self, events: &mut Vec<String>) -> Result<(), SseError> {
        let line = std::mem::take(&mut self.line);
        if !line.is_empty() {
            self.line_done(&line, events)?;
        }
        if let Some(data) = self.data.take() {
            events.push(data);
        }
        Ok(())
    }

    fn line_done(&mut self, line: &[u8], events: &mut Vec<String>) -> Result<(), SseError> {
        if line.is_empty() {
            if let Some(data) = self.data.take() {
                events.push(data);
            }
            return Ok(());
        }
        let line = std::str::from_utf8(line).map_err(|_| SseError::NotUtf8)?;
        if line.starts_with(':') {
            return Ok(()); // a comment (keep-alive)
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        if field == "data" {
            match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            }
        }
        // `event`, `id`, `retry`: OpenAI-compatible streams do not use them.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(parts: &[&[u8]]) -> Result<Vec<String>, SseError> {
        let mut decoder = SseDecoder::new();
        let mut events = Vec::new();
        for part in parts {
            decoder.push(part, &mut events)?;
        }
        decoder.finish(&mut events)?;
        Ok(events)
    }

    #[test]
    fn events_split_anywhere_decode_the_same() {
        let stream = "data: {\"a\":1}\n\n: keep-alive\n\ndata: é\r\n\r\nevent: x\ndata: l1\ndata:l2\n\ndata: [DONE]\n\n";
        let expected = vec!["{\"a\":1}", "é", "l1\nl2", "[DONE]"];
        let bytes = stream.as_bytes();
        for cut in 0..bytes.len() {
            let (a, b) = bytes.split_at(cut);
            assert_eq!(decode(&[a, b]).unwrap(), expected, "cut at {cut}");
        }
        let bytewise: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(decode(&bytewise).unwrap(), expected);
    }

    #[test]
    fn unterminated_last_event_counts() {
        assert_eq!(decode(&[b"data: x"]).unwrap(), vec!["x"]);
        assert_eq!(decode(&[b""]).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        assert_eq!(decode(&[b"data: \xff\xfe\n\n"]), Err(SseError::NotUtf8));
        let long = vec![b'a'; MAX_LINE + 1];
        assert_eq!(decode(&[&long]), Err(SseError::LineTooLong));
    }
}
