//! A readable summary of an appendix run: every `xe` command with its exit status, time, the
//! SMAPI calls it caused and the checker's verdict; then totals and the slowest plugin calls.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::check::Verdict;
use crate::trace::SmapiCall;

fn short(u: &str) -> &str {
    u.get(..8).unwrap_or(u)
}

/// `vdi_attach(a6d97aa5)`-style rendering of calls.
pub fn calls_text(calls: &[SmapiCall]) -> String {
    if calls.is_empty() {
        return "-".into();
    }
    calls
        .iter()
        .map(|c| {
            let obj = c
                .vdi
                .as_deref()
                .map(short)
                .or(c.sr.as_deref().map(short))
                .unwrap_or("");
            let mark = if c.ok { "" } else { "!" };
            format!("{}{mark}({obj})", c.command)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!(
            "{}...",
            s.chars().take(n.saturating_sub(3)).collect::<String>()
        )
    }
}

/// The summary text for one variant.
pub fn summary(title: &str, verdicts: &[Verdict], wall_ms: u128, trace: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "== {title} ==");
    let _ = writeln!(
        out,
        "{:>4}  {:<58} {:>4} {:>7}  SMAPI calls",
        "#", "xe command", "exit", "ms"
    );
    let mut per_cmd: BTreeMap<String, (usize, u64)> = BTreeMap::new();
    let mut all: Vec<&SmapiCall> = Vec::new();
    for v in verdicts {
        let c = &v.cmd;
        let code = c.code.map(|x| x.to_string()).unwrap_or_else(|| "?".into());
        let _ = writeln!(
            out,
            "{:>4}  {:<58} {:>4} {:>7}  {}",
            c.id,
            clip(&c.argv.join(" "), 58),
            code,
            c.ms,
            calls_text(&c.calls)
        );
        if let Err(e) = &v.result {
            let _ = writeln!(out, "      MISMATCH: {e}");
        }
        for call in &c.calls {
            let e = per_cmd.entry(call.command.clone()).or_default();
            e.0 += 1;
            e.1 += call.ms;
            all.push(call);
        }
    }
    let bad = verdicts.iter().filter(|v| v.result.is_err()).count();
    let smapi_ms: u64 = all.iter().map(|c| c.ms).sum();
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{} xe commands, {} SMAPI calls ({} ms in plugins), wall time {:.1} s; {}",
        verdicts.len(),
        all.len(),
        smapi_ms,
        wall_ms as f64 / 1000.0,
        if bad == 0 {
            "every command matches appendix A".to_string()
        } else {
            format!("{bad} command(s) do NOT match appendix A")
        }
    );
    let _ = writeln!(out, "calls by command (count, mean ms):");
    for (k, (n, ms)) in &per_cmd {
        let _ = writeln!(
            out,
            "  {k:<16} {n:>4} {:>7.1}",
            *ms as f64 / (*n).max(1) as f64
        );
    }
    all.sort_by_key(|c| std::cmp::Reverse(c.ms));
    let slow: Vec<String> = all
        .iter()
        .take(3)
        .map(|c| format!("{} {} ms", c.command, c.ms))
        .collect();
    let _ = writeln!(out, "slowest: {}", slow.join(", "));
    let _ = writeln!(out, "trace: {trace}");
    out
}
