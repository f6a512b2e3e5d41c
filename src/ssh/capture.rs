//! What a remote command writes, kept in bounded memory: the first [`HEAD`] bytes and the last
//! [`TAIL`] bytes of each stream (a playbook's result line is its last line), the middle
//! handed to a spill (the run's log file) as it goes and replaced by one marker line. A host
//! that writes 200 MB costs a few MB here, not 400.

use tokio::io::{AsyncRead, AsyncReadExt};

/// Bytes kept from the start of a stream.
pub const HEAD: usize = 1 << 20;
/// Bytes kept from the end of a stream.
pub const TAIL: usize = 4 << 20;

/// Where the middle of a long output goes: (stream name, bytes).
pub type Spill<'a> = &'a (dyn Fn(&str, &[u8]) + Send + Sync);

/// One stream's bounded copy.
#[derive(Default)]
pub struct Bounded {
    head: Vec<u8>,
    tail: Vec<u8>,
    dropped: u64,
    head_max: usize,
    tail_max: usize,
}

impl Bounded {
    pub fn new(head_max: usize, tail_max: usize) -> Self {
        Self {
            head_max,
            tail_max,
            ..Self::default()
        }
    }

    /// Adds a chunk; what falls out of the kept parts goes to `spill`.
    pub fn push(&mut self, mut chunk: &[u8], spill: &mut dyn FnMut(&[u8])) {
        if self.head.len() < self.head_max {
            let n = (self.head_max - self.head.len()).min(chunk.len());
            self.head.extend_from_slice(&chunk[..n]);
            chunk = &chunk[n..];
        }
        self.tail.extend_from_slice(chunk);
        // Drained in blocks: the tail grows to twice its size at most, then gives up the
        // oldest half at once.
        if self.tail.len() > 2 * self.tail_max.max(1) {
            let excess = self.tail.len() - self.tail_max;
            spill(&self.tail[..excess]);
            self.dropped += excess as u64;
            self.tail.drain(..excess);
        }
    }

    /// The kept bytes: the head, a marker line when something was dropped, the tail (its
    /// last `tail_max` bytes).
    pub fn finish(mut self, spill: &mut dyn FnMut(&[u8])) -> Vec<u8> {
        if self.tail.len() > self.tail_max {
            let excess = self.tail.len() - self.tail_max;
            spill(&self.tail[..excess]);
            self.dropped += excess as u64;
            self.tail.drain(..excess);
        }
        let mut out = self.head;
        if self.dropped > 0 {
            out.extend_from_slice(
                format!(
                    "\n[0km: {} bytes of this output were not kept in memory; the run's log has them]\n",
                    self.dropped
                )
                .as_bytes(),
            );
        }
        out.extend_from_slice(&self.tail);
        out
    }
}

/// Reads `r` to its end into a [`Bounded`] copy; the middle goes to `spill` as `name`.
pub async fn read_bounded<R: AsyncRead + Unpin>(
    r: Option<R>,
    name: &str,
    spill: Option<Spill<'_>>,
) -> Vec<u8> {
    let Some(mut r) = r else {
        return Vec::new();
    };
    let mut kept = Bounded::new(HEAD, TAIL);
    let mut to_log = |b: &[u8]| {
        if let Some(s) = spill {
            s(name, b);
        }
    };
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => kept.push(&buf[..n], &mut to_log),
        }
    }
    kept.finish(&mut to_log)
}

#[cfg(test)]
mod tests {
    use super::Bounded;

    #[test]
    fn a_long_output_keeps_its_start_and_end_and_spills_the_middle() {
        let mut b = Bounded::new(10, 20);
        let mut spilled = Vec::new();
        let data: Vec<u8> = (0..1000u32).map(|i| b'a' + (i % 26) as u8).collect();
        for chunk in data.chunks(7) {
            b.push(chunk, &mut |s| spilled.extend_from_slice(s));
        }
        let out = b.finish(&mut |s| spilled.extend_from_slice(s));
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with(std::str::from_utf8(&data[..10]).unwrap()));
        assert!(text.ends_with(std::str::from_utf8(&data[980..]).unwrap()));
        assert!(text.contains("[0km: 970 bytes of this output were not kept in memory"));
        // Nothing lost: head + spilled + tail is the whole output.
        assert_eq!([&data[..10], &spilled[..], &data[980..]].concat(), data);
    }

    #[test]
    fn a_short_output_is_kept_whole() {
        let mut b = Bounded::new(10, 20);
        b.push(b"hello ", &mut |_| panic!("nothing to spill"));
        b.push(b"world", &mut |_| panic!("nothing to spill"));
        assert_eq!(
            b.finish(&mut |_| panic!("nothing to spill")),
            b"hello world"
        );
    }
}
