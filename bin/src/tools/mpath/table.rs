//! The tool's output blocks: aligned tables, key/value blocks, pretty JSON, and the cell
//! formats they share (sizes, yes/no, `-` for nothing).

use std::io::Write;

use multipath::{MultipathError, Result};
use serde::Serialize;

/// A failed write to stdout.
pub fn io(e: std::io::Error) -> MultipathError {
    MultipathError::file("write", "stdout", e)
}

/// `v` as pretty JSON and a newline.
pub fn json<T: Serialize + ?Sized>(out: &mut dyn Write, v: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(v).map_err(|e| MultipathError::Parse {
        what: "json output",
        detail: e.to_string(),
    })?;
    writeln!(out, "{text}").map_err(io)
}

/// `yes` or `no`.
pub fn yes(b: bool) -> String {
    if b { "yes".into() } else { "no".into() }
}

/// The value, or `-`.
pub fn dash(o: Option<String>) -> String {
    o.unwrap_or_else(|| "-".into())
}

/// A size in the largest unit that divides it exactly (`256M`, `1536K`).
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "K", "M", "G", "T"];
    let mut v = bytes;
    let mut u = 0;
    while v >= 1024 && v.is_multiple_of(1024) && u < UNITS.len() - 1 {
        v /= 1024;
        u += 1;
    }
    format!("{v}{}", UNITS[u])
}

/// A title line, then `  key  value` lines with the keys aligned.
pub fn key_values(out: &mut dyn Write, title: &str, rows: &[(&str, String)]) -> Result<()> {
    writeln!(out, "{title}").map_err(io)?;
    let w = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in rows {
        writeln!(out, "  {k:<w$}  {v}").map_err(io)?;
    }
    Ok(())
}

/// A header line and one line per row, columns padded to their widest cell.
pub fn rows(out: &mut dyn Write, header: &[&str], rows: Vec<Vec<String>>) -> Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.len());
            }
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        s.trim_end().to_string()
    };
    writeln!(out, "{}", line(header.to_vec())).map_err(io)?;
    for r in &rows {
        writeln!(out, "{}", line(r.iter().map(String::as_str).collect())).map_err(io)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_alignment() {
        assert_eq!(size(256 << 20), "256M");
        assert_eq!(size(1536 << 10), "1536K");
        assert_eq!(size(1000), "1000B");
        let mut out = Vec::new();
        rows(
            &mut out,
            &["A", "BB"],
            vec![
                vec!["long".into(), "x".into()],
                vec!["s".into(), String::new()],
            ],
        )
        .unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "A     BB\nlong  x\ns\n");
    }
}
