//! The data path: what xapi does with an attached VDI's bytes (copy it, write an installer's
//! boot sector or a suspend image, read them back), done with qemu-img / qemu-io on the host
//! where the VDI is attached, reading the attach result's block device (`params`) or its NBD
//! export (`params_nbd`, `nbd:unix:<socket>:exportname=<name>`, which qemu opens directly).

use std::time::{Duration, Instant};

use sm_core::xmlrpc::Value;

use crate::emulator::{Emulator, OpCtx};
use crate::error::{ApiError, ApiResult, names};
use crate::trace::Event;

/// Deadline for one data command.
const DATA_TIMEOUT: Duration = Duration::from_secs(3600);

/// What qemu should open for an attach result: `params` when it names a device, else
/// `params_nbd`.
pub fn target(info: &Value) -> ApiResult<String> {
    let m = info
        .as_struct()
        .ok_or_else(|| ApiError::internal("attach result is not a struct"))?;
    let get = |k: &str| m.get(k).map(Value::to_text).filter(|s| !s.is_empty());
    get("params")
        .or_else(|| get("params_nbd"))
        .ok_or_else(|| ApiError::internal("attach result has neither params nor params_nbd"))
}

/// Runs a data command on `host`; returns its exit status and output, and traces it.
fn run(
    emu: &Emulator,
    ctx: &OpCtx,
    host: &str,
    what: &str,
    argv: Vec<String>,
) -> ApiResult<(i32, String)> {
    let h = emu.host(host)?;
    let started = Instant::now();
    let out = h
        .exec
        .run(&argv, None, DATA_TIMEOUT)
        .map_err(|e| ApiError::internal(format!("{}: {e}", argv.join(" "))))?;
    let text = format!("{}{}", out.stdout_str(), out.stderr);
    let ok = out.code == 0 && !text.contains("verification failed");
    emu.trace.write(&Event::Data {
        xe: ctx.xe,
        what: what.into(),
        host: h.uuid.clone(),
        detail: argv[1..].join(" "),
        ok,
        ms: started.elapsed().as_millis() as u64,
    });
    Ok((
        if ok { 0 } else { out.code.max(1) },
        text.trim().to_string(),
    ))
}

/// `qemu-io -f raw [-r] -c "<op> -P <pattern> <offset> <len>" <spec>`.
fn qemu_io(op: &str, pattern: u8, offset: u64, len: u64, spec: &str) -> Vec<String> {
    let mut argv = vec!["qemu-io".to_string(), "-f".into(), "raw".into()];
    if op == "read" {
        argv.push("-r".into());
    }
    argv.extend([
        "-c".to_string(),
        format!("{op} -P {pattern} {offset} {len}"),
        spec.to_string(),
    ]);
    argv
}

/// Writes byte `pattern` over `[offset, offset+len)`.
pub fn fill(
    emu: &Emulator,
    ctx: &OpCtx,
    host: &str,
    spec: &str,
    pattern: u8,
    offset: u64,
    len: u64,
) -> ApiResult<()> {
    match run(
        emu,
        ctx,
        host,
        "fill",
        qemu_io("write", pattern, offset, len, &resolve(emu, host, spec)?.0),
    )? {
        (0, _) => Ok(()),
        (_, out) => Err(ApiError::internal(format!(
            "writing to {spec} failed: {out}"
        ))),
    }
}

/// Whether `[offset, offset+len)` holds byte `pattern` only.
pub fn verify(
    emu: &Emulator,
    ctx: &OpCtx,
    host: &str,
    spec: &str,
    pattern: u8,
    offset: u64,
    len: u64,
) -> ApiResult<bool> {
    let (code, out) = run(
        emu,
        ctx,
        host,
        "verify",
        qemu_io("read", pattern, offset, len, &resolve(emu, host, spec)?.0),
    )?;
    if code != 0 && !out.contains("verification failed") {
        return Err(ApiError::internal(format!("reading {spec} failed: {out}")));
    }
    Ok(code == 0)
}

/// A tapdisk's NBD export read through the kernel NBD client on `host`, as xapi reads a VDI it
/// plugs into dom0 (`nbd-client`, queue limits of `nbd_client_manager.py`): qemu-img's block
/// status queries, which tapdisk answers with EIO, never reach the tapdisk. Disconnected by
/// [`KernelDev::release`].
struct KernelDev {
    device: String,
}

/// Runs an admin command on `host` (traced like the data commands); its exit status.
fn admin(
    emu: &Emulator,
    ctx: &OpCtx,
    host: &str,
    argv: &[&str],
    stdin: Option<&[u8]>,
) -> ApiResult<(i32, String)> {
    let h = emu.host(host)?;
    let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
    let started = Instant::now();
    let out = h
        .exec
        .run(&argv, stdin, Duration::from_secs(90))
        .map_err(|e| ApiError::internal(format!("{}: {e}", argv.join(" "))))?;
    emu.trace.write(&Event::Data {
        xe: ctx.xe,
        what: "nbd".into(),
        host: h.uuid.clone(),
        detail: argv.join(" "),
        ok: out.code == 0,
        ms: started.elapsed().as_millis() as u64,
    });
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), out.stderr);
    Ok((out.code, text.trim().to_string()))
}

/// An `nbd:unix:` spec's socket as the host resolves it, and its export name.
struct NbdSpec {
    real: String,
    name: String,
}

/// `spec` as a host's tools take it: an `nbd:unix:` socket link replaced by the socket it
/// resolves to, as the `block` hotplug script hands it to tapback (a link under a test root
/// can be longer than a socket address holds), with the resolved socket and export.
fn resolve(emu: &Emulator, host: &str, spec: &str) -> ApiResult<(String, Option<NbdSpec>)> {
    let Some((socket, name)) = spec
        .strip_prefix("nbd:unix:")
        .and_then(|r| r.rsplit_once(":exportname="))
    else {
        return Ok((spec.to_string(), None));
    };
    let h = emu.host(host)?;
    let real = h
        .exec
        .run(
            &["readlink".to_string(), "-e".into(), socket.into()],
            None,
            Duration::from_secs(10),
        )
        .ok()
        .filter(|o| o.code == 0)
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| socket.to_string());
    Ok((
        format!("nbd:unix:{real}:exportname={name}"),
        Some(NbdSpec {
            real,
            name: name.to_string(),
        }),
    ))
}

impl KernelDev {
    /// `spec` resolved ([`resolve`]), or a kernel NBD device on it when it is a tapdisk's
    /// export.
    fn open(
        emu: &Emulator,
        ctx: &OpCtx,
        host: &str,
        spec: &str,
    ) -> ApiResult<(String, Option<KernelDev>)> {
        let (spec, nbd) = resolve(emu, host, spec)?;
        let Some(NbdSpec { real, name }) = nbd.filter(|n| super::backend::tapback_path(&n.real))
        else {
            return Ok((spec, None));
        };
        let h = emu.host(host)?;
        admin(emu, ctx, host, &["modprobe", "nbd", "nbds_max=16"], None)?;
        let mut last = String::new();
        for n in 0..16 {
            let device = format!("/dev/nbd{n}");
            let check = ["nbd-client".to_string(), "-c".into(), device.clone()];
            if h.exec
                .run(&check, None, Duration::from_secs(10))
                .is_ok_and(|o| o.code == 0)
            {
                continue;
            }
            let argv = [
                "nbd-client",
                "-unix",
                &real,
                &device,
                "-timeout",
                "90",
                "-name",
                &name,
            ];
            let (code, out) = admin(emu, ctx, host, &argv, None)?;
            if code != 0 {
                last = out;
                continue;
            }
            let dev = KernelDev { device };
            let queue = format!("/sys/block/nbd{n}/queue");
            for (k, v) in [
                ("scheduler", "none"),
                ("max_sectors_kb", "512"),
                ("nr_requests", "8"),
            ] {
                let file = format!("{queue}/{k}");
                if admin(emu, ctx, host, &["tee", &file], Some(v.as_bytes()))?.0 != 0 {
                    dev.release(emu, ctx, host);
                    return Err(ApiError::internal(format!("cannot set {file}")));
                }
            }
            return Ok((dev.device.clone(), Some(dev)));
        }
        Err(ApiError::internal(format!(
            "no kernel NBD device could connect to {spec}: {last}"
        )))
    }

    fn release(self, emu: &Emulator, ctx: &OpCtx, host: &str) {
        match admin(emu, ctx, host, &["nbd-client", "-d", &self.device], None) {
            Ok((0, _)) => {}
            other => tracing::warn!("disconnecting {}: {other:?}", self.device),
        }
    }
}

/// Runs `f` on a readable form of `spec` ([`KernelDev::open`]).
fn reading<T>(
    emu: &Emulator,
    ctx: &OpCtx,
    host: &str,
    spec: &str,
    f: impl FnOnce(&str) -> ApiResult<T>,
) -> ApiResult<T> {
    let (path, dev) = KernelDev::open(emu, ctx, host, spec)?;
    let out = f(&path);
    if let Some(d) = dev {
        d.release(emu, ctx, host);
    }
    out
}

/// Copies every byte of `src` into `dst` (which must be at least as large).
pub fn copy(emu: &Emulator, ctx: &OpCtx, host: &str, src: &str, dst: &str) -> ApiResult<()> {
    let dst = resolve(emu, host, dst)?.0;
    reading(emu, ctx, host, src, |src| {
        copy_from(emu, ctx, host, src, &dst)
    })
}

fn copy_from(emu: &Emulator, ctx: &OpCtx, host: &str, src: &str, dst: &str) -> ApiResult<()> {
    let argv = [
        "qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", src, dst,
    ]
    .map(String::from)
    .to_vec();
    match run(emu, ctx, host, "copy", argv)? {
        (0, _) => Ok(()),
        (_, out) => {
            tracing::warn!("copy {src} -> {dst} failed: {out}");
            Err(ApiError::new(names::VDI_COPY_FAILED, Vec::<String>::new()))
        }
    }
}

/// Whether two images hold the same data (the shorter one's missing tail counting as zeros).
pub fn same(emu: &Emulator, ctx: &OpCtx, host: &str, a: &str, b: &str) -> ApiResult<bool> {
    reading(emu, ctx, host, a, |a| {
        reading(emu, ctx, host, b, |b| compare(emu, ctx, host, a, b))
    })
}

fn compare(emu: &Emulator, ctx: &OpCtx, host: &str, a: &str, b: &str) -> ApiResult<bool> {
    let argv = ["qemu-img", "compare", "-f", "raw", "-F", "raw", a, b]
        .map(String::from)
        .to_vec();
    match run(emu, ctx, host, "compare", argv)? {
        (0, _) => Ok(true),
        (1, _) => Ok(false),
        (_, out) => Err(ApiError::internal(format!(
            "comparing {a} and {b} failed: {out}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_prefers_the_block_device() {
        let v = Value::string_map([
            ("params", "/dev/sm/x"),
            ("params_nbd", "nbd:unix:/s:exportname=e"),
        ]);
        assert_eq!(target(&v).unwrap(), "/dev/sm/x");
        let v = Value::string_map([("params", ""), ("params_nbd", "nbd:unix:/s:exportname=e")]);
        assert_eq!(target(&v).unwrap(), "nbd:unix:/s:exportname=e");
        assert!(target(&Value::string_map([("params_nbd", "")])).is_err());
    }
}
