//! Which SRs use a target's sessions, in sm's format: `/run/sr-ref/<target IQN>` holds one SR
//! uuid per line (sm's `_incr/_decr_iscsiSR_refcount`), so sm's drivers and ours count the
//! same users. Beside it, in our own directory, the portals whose sessions existed before the
//! first SR took a reference ("adopted"): the last SR to leave logs out only the sessions the
//! SRs made.

use std::path::{Path, PathBuf};

use super::{Iqn, Portal};
use crate::error::{MultipathError, Result};

/// The reference counts under a directory.
#[derive(Debug, Clone)]
pub struct RefCounts {
    dir: PathBuf,
    adopted_dir: PathBuf,
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, text).map_err(|e| MultipathError::file("write", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| MultipathError::file("rename", path, e))
}

impl RefCounts {
    /// Counts in `dir` (sm's `/run/sr-ref`), adopted portals in `adopted_dir`.
    pub fn new(dir: impl Into<PathBuf>, adopted_dir: impl Into<PathBuf>) -> RefCounts {
        RefCounts {
            dir: dir.into(),
            adopted_dir: adopted_dir.into(),
        }
    }

    fn file(&self, target: &Iqn) -> PathBuf {
        self.dir.join(target.as_str())
    }

    fn adopted_file(&self, target: &Iqn) -> PathBuf {
        self.adopted_dir.join(target.as_str())
    }

    /// The targets `sr` holds (every count file naming it).
    pub fn targets_of(&self, sr: &str) -> Vec<Iqn> {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        rd.filter_map(|e| e.ok())
            .filter_map(|e| Iqn::new(&e.file_name().to_string_lossy()).ok())
            .filter(|t| self.holders(t).iter().any(|h| h == sr))
            .collect()
    }

    /// The SRs holding `target`.
    pub fn holders(&self, target: &Iqn) -> Vec<String> {
        std::fs::read_to_string(self.file(target))
            .unwrap_or_default()
            .lines()
            .map(str::trim)
            .filter(|l| is_uuid(l))
            .map(str::to_string)
            .collect()
    }

    /// Adds `sr` as a user of `target`; returns the number of users.
    pub fn add(&self, target: &Iqn, sr: &str) -> Result<usize> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| MultipathError::file("create", &self.dir, e))?;
        let mut h = self.holders(target);
        if !h.iter().any(|u| u == sr) {
            h.push(sr.to_string());
        }
        write_atomic(&self.file(target), &format!("{}\n", h.join("\n")))?;
        Ok(h.len())
    }

    /// Removes `sr`; returns the number of users left (the file goes at 0).
    pub fn remove(&self, target: &Iqn, sr: &str) -> Result<usize> {
        let h: Vec<String> = self
            .holders(target)
            .into_iter()
            .filter(|u| u != sr)
            .collect();
        let f = self.file(target);
        if h.is_empty() {
            match std::fs::remove_file(&f) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(MultipathError::file("remove", &f, e)),
            }
        } else {
            write_atomic(&f, &format!("{}\n", h.join("\n")))?;
        }
        Ok(h.len())
    }

    /// The portals of `target` whose sessions were there before the SRs came.
    pub fn adopted(&self, target: &Iqn) -> Vec<String> {
        std::fs::read_to_string(self.adopted_file(target))
            .unwrap_or_default()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// Records the portals found logged in when the first SR took `target`.
    pub fn set_adopted(&self, target: &Iqn, portals: &[Portal]) -> Result<()> {
        std::fs::create_dir_all(&self.adopted_dir)
            .map_err(|e| MultipathError::file("create", &self.adopted_dir, e))?;
        let text: String = portals.iter().map(|p| format!("{p}\n")).collect();
        write_atomic(&self.adopted_file(target), &text)
    }

    /// Forgets the adopted portals (the last SR left).
    pub fn clear_adopted(&self, target: &Iqn) -> Result<()> {
        let f = self.adopted_file(target);
        match std::fs::remove_file(&f) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(MultipathError::file("remove", &f, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "7f0e1c3a-1b2c-4d5e-8f90-a1b2c3d4e5f6";
    const B: &str = "0a1b2c3d-0000-4000-8000-000000000001";

    #[test]
    fn counts_like_sm() {
        let d = tempfile::tempdir().unwrap();
        let r = RefCounts::new(d.path().join("sr-ref"), d.path().join("adopted"));
        let t = Iqn::new("iqn.2026-01.test.lab:t2").unwrap();
        assert_eq!(r.add(&t, A).unwrap(), 1);
        assert_eq!(r.add(&t, A).unwrap(), 1);
        assert_eq!(r.add(&t, B).unwrap(), 2);
        let text =
            std::fs::read_to_string(d.path().join("sr-ref/iqn.2026-01.test.lab:t2")).unwrap();
        assert_eq!(text, format!("{A}\n{B}\n"));
        assert_eq!(r.remove(&t, A).unwrap(), 1);
        assert_eq!(r.holders(&t), vec![B]);
        assert_eq!(r.remove(&t, B).unwrap(), 0);
        assert!(!d.path().join("sr-ref/iqn.2026-01.test.lab:t2").exists());
        assert_eq!(r.remove(&t, B).unwrap(), 0);
        r.set_adopted(&t, &[Portal::new("10.99.0.1", 3260)])
            .unwrap();
        assert_eq!(r.adopted(&t), vec!["10.99.0.1:3260"]);
        r.clear_adopted(&t).unwrap();
        assert!(r.adopted(&t).is_empty());
    }

    #[test]
    fn ignores_lines_sm_would_ignore() {
        let d = tempfile::tempdir().unwrap();
        let r = RefCounts::new(d.path(), d.path().join("a"));
        let t = Iqn::new("iqn.x:y").unwrap();
        std::fs::write(d.path().join("iqn.x:y"), format!("junk\n{A}\n\n")).unwrap();
        assert_eq!(r.holders(&t), vec![A]);
    }
}
