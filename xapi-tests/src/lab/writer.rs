//! A background writer for the lab's path-failure tests: writes a known pattern onto a block
//! device, one chunk after another with direct I/O, until it is stopped, so that the test can
//! take paths away under I/O and check afterwards that every write went through and the data
//! on the device is the pattern.
//!
//! The writer stops when it is dropped: a test that panics half-way (a timed-out wait) unwinds
//! through the writer and ends, instead of waiting for a thread that would write forever.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sm_core::host::Cmd;

use super::Lab;

/// Bytes per write.
pub const CHUNK: usize = 1 << 20;

/// A thread writing chunk `k % chunks` of a pattern to a device for k = 0, 1, 2, ...
pub struct PatternWriter {
    lab: Lab,
    device: PathBuf,
    pattern: Vec<u8>,
    stop: Arc<AtomicBool>,
    done: Arc<Mutex<Vec<Instant>>>,
    thread: Option<JoinHandle<Result<usize, String>>>,
    _dir: tempfile::TempDir,
}

/// The pattern of `chunks` chunks made with `seed`: every chunk differs from the others (a write
/// that lands on the wrong chunk is seen), and different seeds give different data.
fn pattern(chunks: usize, seed: u32) -> Vec<u8> {
    (0..(CHUNK * chunks) as u32)
        .map(|i| {
            let x = (i ^ (i >> 20).wrapping_mul(0x9e37_79b9)).wrapping_mul(seed | 1);
            (x >> 24) as u8
        })
        .collect()
}

impl PatternWriter {
    /// Starts writing `chunks` chunks of the pattern of `seed` to `device` on host A (each write
    /// one `dd ... oflag=direct` with a 120 s limit).
    pub fn start(
        lab: &Lab,
        device: &Path,
        chunks: usize,
        seed: u32,
    ) -> std::io::Result<PatternWriter> {
        let pattern = pattern(chunks, seed);
        let dir = tempfile::tempdir()?;
        let src = dir.path().join("pattern");
        std::fs::write(&src, &pattern)?;
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (lab, device, stop, done) = (
                lab.clone(),
                device.to_path_buf(),
                stop.clone(),
                done.clone(),
            );
            std::thread::spawn(move || {
                write_until_stopped(&lab, &src, &device, chunks, &stop, &done)
            })
        };
        Ok(PatternWriter {
            lab: lab.clone(),
            device: device.to_path_buf(),
            pattern,
            stop,
            done,
            thread: Some(thread),
            _dir: dir,
        })
    }

    /// How many writes have completed.
    pub fn count(&self) -> usize {
        self.done
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// When each completed write ended, in order.
    pub fn completions(&self) -> Vec<Instant> {
        self.done
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Waits up to `secs` for at least `n` completed writes.
    ///
    /// # Panics
    /// When they do not come in time.
    pub fn wait_for(&self, secs: u64, what: &str, n: usize) {
        super::wait_until(secs, what, || {
            if self.count() >= n {
                Ok(())
            } else {
                Err(format!("{} writes done", self.count()))
            }
        });
    }

    /// Stops the writer and returns how many writes completed, or the first write's error.
    pub fn stop(&mut self) -> Result<usize, String> {
        self.stop.store(true, Ordering::SeqCst);
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err("the writer thread panicked".into()),
            None => Err("the writer was already stopped".into()),
        }
    }

    /// Reads the chunks that `writes` writes covered back from the device (direct I/O) and
    /// compares them with the pattern.
    pub fn check_device(&self, writes: usize) -> Result<(), String> {
        let chunks = (self.pattern.len() / CHUNK).min(writes);
        let back = self._dir.path().join("back");
        let cmd = Cmd::new("dd")
            .args([
                format!("if={}", self.device.display()),
                format!("of={}", back.display()),
                format!("bs={CHUNK}"),
                format!("count={chunks}"),
                "iflag=direct".into(),
            ])
            .timeout(Duration::from_secs(300));
        self.lab
            .run(&cmd)
            .map_err(|e| format!("reading back: {}", sm_core::errors::error_chain(&e)))?;
        let data = std::fs::read(&back).map_err(|e| format!("reading back: {e}"))?;
        if data == self.pattern[..chunks * CHUNK] {
            Ok(())
        } else {
            Err(format!(
                "the {chunks} chunks read back from {} differ from what was written",
                self.device.display()
            ))
        }
    }
}

impl Drop for PatternWriter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn write_until_stopped(
    lab: &Lab,
    src: &Path,
    device: &Path,
    chunks: usize,
    stop: &AtomicBool,
    done: &Mutex<Vec<Instant>>,
) -> Result<usize, String> {
    let mut k = 0usize;
    while !stop.load(Ordering::SeqCst) {
        let i = k % chunks;
        let cmd = Cmd::new("dd")
            .args([
                format!("if={}", src.display()),
                format!("of={}", device.display()),
                format!("bs={CHUNK}"),
                "count=1".into(),
                format!("skip={i}"),
                format!("seek={i}"),
                "oflag=direct".into(),
            ])
            .timeout(Duration::from_secs(120));
        lab.run(&cmd).map_err(|e| {
            format!(
                "write {k} (chunk {i}): {}",
                sm_core::errors::error_chain(&e)
            )
        })?;
        done.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Instant::now());
        k += 1;
    }
    Ok(k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_differ_by_seed_and_cover_every_chunk() {
        let a = pattern(2, 2_654_435_761);
        let b = pattern(2, 2_246_822_519);
        assert_eq!(a.len(), 2 * CHUNK);
        assert_ne!(a, b);
        assert_ne!(a[..CHUNK], a[CHUNK..], "chunks differ from each other");
        let mut counts = [0usize; 256];
        a.iter().for_each(|&b| counts[usize::from(b)] += 1);
        assert!(
            counts.iter().all(|&c| c > a.len() / 512),
            "every byte value occurs: the data is not constant or sparse"
        );
    }
}
