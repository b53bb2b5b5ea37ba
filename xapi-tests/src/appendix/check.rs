//! Checks a trace against the SMAPI spec's appendix A, `xe` command by `xe` command.
//!
//! [`RULES`] maps every `xe` command to the SMAPI sequence appendix A prescribes. A rule sees
//! the command, its SMAPI calls, the capabilities of the SR's driver and a [`Model`] of the pool
//! learnt from the trace so far (which SRs are attached where, which disks belong to which VM,
//! which are plugged, which VDI holds a VM's suspend image), and returns the first mismatch.
//!
//! Where the appendix leaves room, the rule accepts xapi's real behaviour, documented per rule:
//! `activate`/`deactivate` only with VDI_ACTIVATE/VDI_DEACTIVATE; the PV bootloader's
//! attach/activate/deactivate/detach of the boot disk before vm-start; the installer releasing
//! its disks after vm-install; `vdi_update` after a clone when the driver has VDI_UPDATE; calls
//! elided when the VDI is already in the wanted state on that host (a second `pbd-plug`; a
//! migration within one host, which is `deactivate` + `activate` only).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::trace::{Event, SmapiCall};

/// One `xe` command and what it caused.
#[derive(Debug, Clone, PartialEq)]
pub struct XeCommand {
    /// Trace sequence number.
    pub id: u64,
    /// Arguments.
    pub argv: Vec<String>,
    /// Exit status (`None`: no end record, the command did not finish).
    pub code: Option<i32>,
    /// What it printed.
    pub stdout: String,
    /// Its error output.
    pub stderr: String,
    /// Wall time.
    pub ms: u64,
    /// The SMAPI calls it caused, in order.
    pub calls: Vec<SmapiCall>,
}

impl XeCommand {
    /// The command name (`vm-start`).
    pub fn name(&self) -> &str {
        self.argv.first().map(String::as_str).unwrap_or("")
    }

    /// A `key=value` argument.
    pub fn arg(&self, k: &str) -> Option<&str> {
        self.argv
            .iter()
            .find_map(|a| a.strip_prefix(k).and_then(|r| r.strip_prefix('=')))
    }

    /// The first line of its stdout (the uuid a create command prints).
    pub fn output(&self) -> &str {
        self.stdout.lines().next().unwrap_or("").trim()
    }
}

/// Groups a trace into `xe` commands and collects the drivers' capabilities.
pub fn commands(events: &[Event]) -> (Vec<XeCommand>, BTreeMap<String, Vec<String>>) {
    let mut cmds: Vec<XeCommand> = Vec::new();
    let mut index: HashMap<u64, usize> = HashMap::new();
    let mut caps = BTreeMap::new();
    for e in events {
        match e {
            Event::Driver {
                sr_type,
                capabilities,
                ..
            } => {
                caps.insert(sr_type.clone(), capabilities.clone());
            }
            Event::XeBegin { id, argv, .. } => {
                index.insert(*id, cmds.len());
                cmds.push(XeCommand {
                    id: *id,
                    argv: argv.clone(),
                    code: None,
                    stdout: String::new(),
                    stderr: String::new(),
                    ms: 0,
                    calls: Vec::new(),
                });
            }
            Event::XeEnd {
                id,
                code,
                stdout,
                stderr,
                ms,
            } => {
                if let Some(c) = index.get(id).and_then(|i| cmds.get_mut(*i)) {
                    c.code = Some(*code);
                    c.stdout = stdout.clone();
                    c.stderr = stderr.clone();
                    c.ms = *ms;
                }
            }
            Event::Smapi(call) => {
                if let Some(c) = call
                    .xe
                    .and_then(|x| index.get(&x))
                    .and_then(|i| cmds.get_mut(*i))
                {
                    c.calls.push((**call).clone());
                }
            }
            Event::Rejected { .. } | Event::Data { .. } => {}
        }
    }
    (cmds, caps)
}

/// What the checker knows about the pool, learnt from the trace.
#[derive(Debug, Default, Clone)]
pub struct Model {
    /// SR uuid -> hosts it is attached on.
    pub sr_attached: BTreeMap<String, BTreeSet<String>>,
    /// PBD uuid -> SR uuid (learnt from the first call a pbd command caused).
    pub pbd_sr: BTreeMap<String, String>,
    /// VM uuid -> its disks' VDI uuids.
    pub vm_disks: BTreeMap<String, Vec<String>>,
    /// VM uuid -> disks currently plugged.
    pub vm_plugged: BTreeMap<String, BTreeSet<String>>,
    /// VM uuid -> its suspend image's VDI uuid.
    pub suspend_vdi: BTreeMap<String, String>,
    /// VBD uuid -> (VM uuid, VDI uuid).
    pub vbds: BTreeMap<String, (String, String)>,
    /// (host, VDI) pairs attached as the plugin sees it, with activation.
    pub attached: BTreeMap<(String, String), bool>,
    /// SR type -> capabilities.
    pub caps: BTreeMap<String, Vec<String>>,
}

impl Model {
    fn has(&self, sr_type: &str, cap: &str) -> bool {
        self.caps.get(sr_type).is_some_and(|c| {
            c.iter()
                .any(|x| x == cap || x.split('/').next() == Some(cap))
        })
    }

    /// A VDI is gone (destroyed or forgotten): no VM has it any more.
    fn forget_vdi(&mut self, v: &str) {
        for d in self.vm_disks.values_mut() {
            d.retain(|x| x != v);
        }
        for p in self.vm_plugged.values_mut() {
            p.remove(v);
        }
        self.vbds.retain(|_, (_, vdi)| vdi != v);
    }

    /// Updates the attach state from calls that succeeded.
    fn learn_calls(&mut self, calls: &[SmapiCall]) {
        for c in calls.iter().filter(|c| c.ok) {
            let key = (c.host.clone(), c.vdi.clone().unwrap_or_default());
            match c.command.as_str() {
                "sr_attach" => {
                    self.sr_attached
                        .entry(c.sr.clone().unwrap_or_default())
                        .or_default()
                        .insert(c.host.clone());
                }
                "sr_detach" | "sr_delete" => {
                    if let Some(h) = self.sr_attached.get_mut(&c.sr.clone().unwrap_or_default()) {
                        h.remove(&c.host);
                    }
                }
                "vdi_attach" => {
                    self.attached.insert(key, false);
                }
                "vdi_activate" => {
                    self.attached.insert(key, true);
                }
                "vdi_deactivate" => {
                    if let Some(a) = self.attached.get_mut(&key) {
                        *a = false;
                    }
                }
                "vdi_detach" | "vdi_delete" => {
                    self.attached.remove(&key);
                }
                _ => {}
            }
        }
    }
}

/// Each VDI's commands in order.
fn per_vdi(calls: &[SmapiCall]) -> BTreeMap<String, Vec<String>> {
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for c in calls.iter().filter(|c| c.vdi.is_some()) {
        m.entry(c.vdi.clone().unwrap_or_default())
            .or_default()
            .push(c.command.clone());
    }
    m
}

fn short(u: &str) -> &str {
    u.get(..8).unwrap_or(u)
}

fn show(calls: &[SmapiCall]) -> String {
    if calls.is_empty() {
        return "no SMAPI call".into();
    }
    calls
        .iter()
        .map(|c| match (&c.vdi, &c.sr) {
            (Some(v), _) => format!("{}({})", c.command, short(v)),
            (None, Some(s)) => format!("{}(sr {})", c.command, short(s)),
            _ => c.command.clone(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Capability filter: drops activate/deactivate the driver does not declare.
fn gate(model: &Model, ty: &str, want: &[&str]) -> Vec<String> {
    want.iter()
        .filter(|c| match **c {
            "vdi_activate" => model.has(ty, "VDI_ACTIVATE"),
            "vdi_deactivate" => model.has(ty, "VDI_DEACTIVATE"),
            _ => true,
        })
        .map(|c| c.to_string())
        .collect()
}

fn sr_type_of(calls: &[SmapiCall]) -> String {
    calls.first().map(|c| c.sr_type.clone()).unwrap_or_default()
}

fn expect_exact(calls: &[SmapiCall], want: &[&str]) -> Result<(), String> {
    let got: Vec<&str> = calls.iter().map(|c| c.command.as_str()).collect();
    if got == want {
        Ok(())
    } else if want.is_empty() {
        Err(format!("expected no SMAPI call, got [{}]", show(calls)))
    } else {
        Err(format!(
            "expected [{}], got [{}]",
            want.join(", "),
            show(calls)
        ))
    }
}

fn expect_vdi(
    per: &BTreeMap<String, Vec<String>>,
    vdi: &str,
    want: &[String],
    what: &str,
) -> Result<(), String> {
    let got = per.get(vdi).cloned().unwrap_or_default();
    if got == want {
        Ok(())
    } else {
        Err(format!(
            "{what} {}: expected [{}], got [{}]",
            short(vdi),
            want.join(", "),
            got.join(", ")
        ))
    }
}

/// Index of the first call matching.
fn pos(calls: &[SmapiCall], f: impl Fn(&SmapiCall) -> bool) -> Option<usize> {
    calls.iter().position(f)
}

/// Index of the last call matching.
fn rpos(calls: &[SmapiCall], f: impl Fn(&SmapiCall) -> bool) -> Option<usize> {
    calls.iter().rposition(f)
}

/// A check: the model before the command, the command; `Err` names the first mismatch.
pub type Rule = fn(&mut Model, &XeCommand) -> Result<(), String>;

fn none(_: &mut Model, c: &XeCommand) -> Result<(), String> {
    expect_exact(&c.calls, &[])
}

fn sr_create(m: &mut Model, c: &XeCommand) -> Result<(), String> {
    let n = c
        .calls
        .iter()
        .filter(|x| x.command == "sr_attach")
        .count()
        .max(1);
    let mut want = vec!["sr_create"];
    want.extend(std::iter::repeat_n("sr_attach", n));
    expect_exact(&c.calls, &want)?;
    m.learn_calls(&c.calls);
    Ok(())
}

fn sr_destroy(m: &mut Model, c: &XeCommand) -> Result<(), String> {
    expect_exact(&c.calls, &["sr_attach", "sr_delete"])?;
    m.learn_calls(&c.calls);
    Ok(())
}

fn one(command: &'static str) -> Rule {
    match command {
        "sr_scan" => |_, c| expect_exact(&c.calls, &["sr_scan"]),
        "sr_probe" => |_, c| expect_exact(&c.calls, &["sr_probe"]),
        "vdi_introduce" => |_, c| expect_exact(&c.calls, &["vdi_introduce"]),
        "vdi_resize" => |_, c| expect_exact(&c.calls, &["vdi_resize"]),
        _ => |_, c| expect_exact(&c.calls, &["sr_update"]),
    }
}

fn pbd(m: &mut Model, c: &XeCommand, op: &str) -> Result<(), String> {
    let pbd = c.arg("uuid").unwrap_or("").to_string();
    let plug = op == "sr_attach";
    if let Some(sr) = m.pbd_sr.get(&pbd) {
        let attached = m.sr_attached.get(sr).is_some_and(|h| !h.is_empty());
        if attached == plug {
            return expect_exact(&c.calls, &[]).map_err(|e| {
                format!(
                    "the PBD is already {}: {e}",
                    if plug { "plugged" } else { "unplugged" }
                )
            });
        }
    }
    expect_exact(&c.calls, &[op])?;
    if let Some(sr) = c.calls.first().and_then(|x| x.sr.clone()) {
        m.pbd_sr.insert(pbd, sr);
    }
    m.learn_calls(&c.calls);
    Ok(())
}

fn pbd_plug(m: &mut Model, c: &XeCommand) -> Result<(), String> {
    pbd(m, c, "sr_attach")
}

fn pbd_unplug(m: &mut Model, c: &XeCommand) -> Result<(), String> {
    pbd(m, c, "sr_detach")
}

/// Ordering: every call matching `a` comes before every call matching `b`.
fn before(
    calls: &[SmapiCall],
    a: impl Fn(&SmapiCall) -> bool,
    b: impl Fn(&SmapiCall) -> bool,
    what: &str,
) -> Result<(), String> {
    match (rpos(calls, a), pos(calls, b)) {
        (Some(x), Some(y)) if x > y => Err(format!("{what}: got [{}]", show(calls))),
        _ => Ok(()),
    }
}

fn vdi_create(m: &mut Model, c: &XeCommand) -> Result<(), String> {
    expect_exact(&c.calls, &["vdi_create"])?;
    m.learn_calls(&c.calls);
    Ok(())
}

fn vdi_destroy(m: &mut Model, c: &XeCommand) -> Result<(), String> {
    expect_exact(&c.calls, &["vdi_detach", "vdi_delete"])?;
    let v = c.arg("uuid").unwrap_or("");
    if c.calls.iter().any(|x| x.vdi.as_deref() != Some(v)) {
        return Err(format!(
            "calls for another VDI than {}: [{}]",
            short(v),
            show(&c.calls)
        ));
    }
    m.forget_vdi(v);
    m.learn_calls(&c.calls);
    Ok(())
}

const FULL_CYCLE: [&str; 4] = ["vdi_attach", "vdi_activate", "vdi_deactivate", "vdi_detach"];

/// vdi-copy (and vm-clone without VDI_CLONE): the copy is created, source and copy attached and
/// activated, then deactivated and detached. A source already active on that host is not
/// attached again (xapi's datapath refcount).
fn copy_calls(
    m: &Model,
    calls: &[SmapiCall],
    src: &str,
    dst: &str,
    ty: &str,
) -> Result<(), String> {
    let per = per_vdi(calls);
    let mut want_dst = vec!["vdi_create".to_string()];
    want_dst.extend(gate(m, ty, &FULL_CYCLE));
    expect_vdi(&per, dst, &want_dst, "copy")?;
    let host = calls
        .iter()
        .find(|c| c.vdi.as_deref() == Some(dst) && c.command == "vdi_attach")
        .map(|c| c.host.clone());
    let src_busy = host.is_some_and(|h| m.attached.get(&(h, src.to_string())) == Some(&true));
    let want_src = if src_busy {
        Vec::new()
    } else {
        gate(m, ty, &FULL_CYCLE)
    };
    expect_vdi(&per, src, &want_src, "source")?;
    let is = |c: &SmapiCall, cmds: &[&str]| cmds.contains(&c.command.as_str());
    before(
        calls,
        |c| c.command == "vdi_create",
        |c| is(c, &["vdi_attach"]),
        "the copy is created before anything is attached",
    )?;
    before(
        calls,
        |c| is(c, &["vdi_attach", "vdi_activate"]),
        |c| is(c, &["vdi_deactivate", "vdi_detach"]),
        "both VDIs are attached and activated before either is released",
    )
}

fn vdi_copy(m: &mut Model, c: &XeCommand) -> Result<(), String> {
    let src = c.arg("uuid").unwrap_or("").to_string();
    let dst = c.output().to_string();
    copy_calls(m, &c.calls, &src, &dst, &sr_type_of(&c.calls))?;
    m.learn_calls(&c.calls);
    Ok(())
}

fn snap_or_clone(m: &mut Model, c: &XeCommand, command: &str) -> Result<(), String> {
    let ty = sr_type_of(&c.calls);
    if m.has(&ty, "VDI_UPDATE") {
        expect_exact(&c.calls, &[command, "vdi_update"])?;
    } else {
        expect_exact(&c.calls, &[command])?;
    }
    m.learn_calls(&c.calls);
    Ok(())
}

fn vdi_snapshot(m: &mut Model, c: &XeCommand) -> Result<(), String> {
    snap_or_clone(m, c, "vdi_snapshot")
}

fn vdi_clone(m: &mut Model, c: &XeCommand) -> Result<(), String> {
    snap_or_clone(m, c, "vdi_clone")
}

fn vbd_create(m: &mut Model, c: &XeCommand) -> Result<(), String> {
    expect_exact(&c.calls, &[])?;
    let (vm, vdi) = (
        c.arg("vm-uuid").unwrap_or("").to_string(),
        c.arg("vdi-uuid").unwrap_or("").to_string(),
    );
    m.vbds
        .insert(c.output().to_string(), (vm.clone(), vdi.clone()));
    m.vm_disks.entry(vm).or_default().push(vdi);
    Ok(())
}

fn vbd_plug(m: &mut Model, c: &XeCommand) -> Result<(), String> {
    let ty = sr_type_of(&c.calls);
    expect_exact(
        &c.calls,
        &gate(m, &ty, &["vdi_attach", "vdi_activate"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    )?;
    if let Some((vm, vdi)) = m.vbds.get(c.arg("uuid").unwrap_or("")).cloned() {
        if c.calls
            .iter()
            .any(|x| x.vdi.as_deref() != Some(vdi.as_str()))
        {
            return Err(format!(
                "calls for another VDI than the VBD's {}",
                short(&vdi)
            ));
        }
        m.vm_plugged.entry(vm).or_default().insert(vdi);
    }
    m.learn_calls(&c.calls);
    Ok(())
}

fn vbd_unplug(m: &mut Model, c: &XeCommand) -> Result<(), String> {
    let ty = sr_type_of(&c.calls);
    expect_exact(
        &c.calls,
        &gate(m, &ty, &["vdi_deactivate", "vdi_detach"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    )?;
    if let Some((vm, vdi)) = m.vbds.get(c.arg("uuid").unwrap_or("")).cloned()
        && let Some(p) = m.vm_plugged.get_mut(&vm)
    {
        p.remove(&vdi);
    }
    m.learn_calls(&c.calls);
    Ok(())
}

fn vdi_forget(m: &mut Model, c: &XeCommand) -> Result<(), String> {
    expect_exact(&c.calls, &[])?;
    m.forget_vdi(c.arg("uuid").unwrap_or(""));
    Ok(())
}

/// The VDIs a command touched, in first-touch order.
fn touched(calls: &[SmapiCall]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in calls {
        if let Some(v) = &c.vdi
            && !out.contains(v)
        {
            out.push(v.clone());
        }
    }
    out
}

fn same_set(got: &[String], want: &BTreeSet<String>, what: &str) -> Result<(), String> {
    let g: BTreeSet<String> = got.iter().cloned().collect();
    if &g == want {
        Ok(())
    } else {
        let f = |s: &BTreeSet<String>| {
            s.iter()
                .map(|x| short(x).to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        Err(format!(
            "{what}: expected VDIs {{{}}}, got {{{}}}",
            f(want),
            f(&g)
        ))
    }
}

/// The VM a command names.
fn vm_of(c: &XeCommand) -> String {
    c.arg("uuid").or(c.arg("vm")).unwrap_or("").to_string()
}

/// vm-install: one `vdi_create` per template disk, then `attach` + `activate` of each (the
/// installer), then `deactivate` + `detach` of each (the installer is done; without them the
/// following vm-start could not attach). An `sr_scan` may follow.
fn vm_install(m: &mut Model, c: &XeCommand) -> Result<(), String> {
    let calls: Vec<SmapiCall> = c
        .calls
        .iter()
        .filter(|x| x.command != "sr_scan")
        .cloned()
        .collect();
    let ty = sr_type_of(&calls);
    let created: Vec<String> = calls
        .iter()
        .filter(|x| x.command == "vdi_create")
        .filter_map(|x| x.vdi.clone())
        .collect();
    if created.is_empty() {
        return Err(format!("no vdi_create: [{}]", show(&c.calls)));
    }
    let per = per_vdi(&calls);
    let mut want = vec!["vdi_create".to_string()];
    want.extend(gate(m, &ty, &FULL_CYCLE));
    for v in &created {
        expect_vdi(&per, v, &want, "disk")?;
    }
    same_set(
        &touched(&calls),
        &created.iter().cloned().collect(),
        "vm-install touches exactly the disks it creates",
    )?;
    before(
        &calls,
        |x| x.command == "vdi_create",
        |x| x.command == "vdi_attach",
        "every disk is created before any is attached",
    )?;
    before(
        &calls,
        |x| x.command == "vdi_activate" || x.command == "vdi_attach",
        |x| x.command == "vdi_deactivate" || x.command == "vdi_detach",
        "every disk is attached and activated before any is released",
    )?;
    m.vm_disks.insert(c.output().to_string(), created);
    m.learn_calls(&c.calls);
    Ok(())
}

/// vm-start: `attach` + `activate` per disk; a PV guest's bootloader first attaches, activates,
/// deactivates and detaches the boot disk.
fn vm_start(m: &mut Model, c: &XeCommand) -> Result<(), String> {
    let vm = vm_of(c);
    let ty = sr_type_of(&c.calls);
    let per = per_vdi(&c.calls);
    let plain = gate(m, &ty, &["vdi_attach", "vdi_activate"]);
    let mut boot = gate(m, &ty, &FULL_CYCLE);
    boot.extend(plain.clone());
    let mut booted = 0;
    for (v, got) in &per {
        if *got == boot {
            booted += 1;
        } else if *got != plain {
            return Err(format!(
                "disk {}: expected [{}] (or the bootloader's cycle first), got [{}]",
                short(v),
                plain.join(", "),
                got.join(", ")
            ));
        }
    }
    if booted > 1 {
        return Err(format!(
            "the bootloader read {booted} disks: [{}]",
            show(&c.calls)
        ));
    }
    if booted == 1 {
        let boot_end = pos(&c.calls, |x| x.command == "vdi_detach").unwrap_or(0);
        if pos(&c.calls, |x| {
            x.command == "vdi_attach" && x.vdi != c.calls[0].vdi
        })
        .is_some_and(|p| p < boot_end)
        {
            return Err(format!(
                "a disk was attached before the bootloader finished: [{}]",
                show(&c.calls)
            ));
        }
    }
    let disks: BTreeSet<String> = m
        .vm_disks
        .get(&vm)
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .collect();
    if m.vm_disks.contains_key(&vm) {
        same_set(
            &touched(&c.calls),
            &disks,
            "vm-start attaches every disk of the VM",
        )?;
    }
    m.vm_plugged.insert(vm, per.keys().cloned().collect());
    m.learn_calls(&c.calls);
    Ok(())
}

fn release_all(m: &mut Model, vm: &str, calls: &[SmapiCall], what: &str) -> Result<(), String> {
    let ty = sr_type_of(calls);
    let per = per_vdi(calls);
    let want = gate(m, &ty, &["vdi_deactivate", "vdi_detach"]);
    let plugged = m.vm_plugged.get(vm).cloned().unwrap_or_default();
    for v in per.keys() {
        expect_vdi(&per, v, &want, "disk")?;
    }
    if m.vm_plugged.contains_key(vm) {
        same_set(&touched(calls), &plugged, what)?;
    }
    m.vm_plugged.insert(vm.to_string(), BTreeSet::new());
    Ok(())
}

/// vm-shutdown (clean or forced): `deactivate` + `detach` per plugged disk.
fn vm_shutdown(m: &mut Model, c: &XeCommand) -> Result<(), String> {
    let vm = vm_of(c);
    release_all(
        m,
        &vm,
        &c.calls.clone(),
        "vm-shutdown releases every plugged disk",
    )?;
    m.learn_calls(&c.calls);
    Ok(())
}

/// vm-suspend: the suspend VDI is created, attached, activated, deactivated and detached; then
/// every data disk is deactivated and detached.
fn vm_suspend(m: &mut Model, c: &XeCommand) -> Result<(), String> {
    let vm = vm_of(c);
    let ty = sr_type_of(&c.calls);
    let image = c
        .calls
        .iter()
        .find(|x| x.command == "vdi_create")
        .and_then(|x| x.vdi.clone())
        .ok_or_else(|| format!("no suspend VDI created: [{}]", show(&c.calls)))?;
    let per = per_vdi(&c.calls);
    let mut want = vec!["vdi_create".to_string()];
    want.extend(gate(m, &ty, &FULL_CYCLE));
    expect_vdi(&per, &image, &want, "suspend VDI")?;
    let last_image = rpos(&c.calls, |x| x.vdi.as_deref() == Some(image.as_str())).unwrap_or(0);
    if pos(&c.calls, |x| x.vdi.as_deref() != Some(image.as_str())).is_some_and(|p| p < last_image) {
        return Err(format!(
            "data disks released before the memory image was written: [{}]",
            show(&c.calls)
        ));
    }
    let data: Vec<SmapiCall> = c
        .calls
        .iter()
        .filter(|x| x.vdi.as_deref() != Some(image.as_str()))
        .cloned()
        .collect();
    release_all(m, &vm, &data, "vm-suspend releases every plugged disk")?;
    m.suspend_vdi.insert(vm, image);
    m.learn_calls(&c.calls);
    Ok(())
}

/// vm-resume: the suspend VDI is attached and activated, then every data disk; then the suspend
/// VDI is deactivated, detached and deleted.
fn vm_resume(m: &mut Model, c: &XeCommand) -> Result<(), String> {
    let vm = vm_of(c);
    let ty = sr_type_of(&c.calls);
    let image = m
        .suspend_vdi
        .get(&vm)
        .cloned()
        .or_else(|| c.calls.first().and_then(|x| x.vdi.clone()))
        .unwrap_or_default();
    let per = per_vdi(&c.calls);
    let mut want = gate(m, &ty, &FULL_CYCLE);
    want.push("vdi_delete".into());
    expect_vdi(&per, &image, &want, "suspend VDI")?;
    let plain = gate(m, &ty, &["vdi_attach", "vdi_activate"]);
    for v in per.keys().filter(|v| **v != image) {
        expect_vdi(&per, v, &plain, "disk")?;
    }
    let is_img = |x: &SmapiCall| x.vdi.as_deref() == Some(image.as_str());
    before(
        &c.calls,
        |x| is_img(x) && (x.command == "vdi_attach" || x.command == "vdi_activate"),
        |x| !is_img(x),
        "the suspend VDI is attached before the disks",
    )?;
    before(
        &c.calls,
        |x| !is_img(x),
        |x| is_img(x) && x.command == "vdi_deactivate",
        "the suspend VDI is released after the disks are attached",
    )?;
    let data: Vec<String> = per.keys().filter(|v| **v != image).cloned().collect();
    if let Some(disks) = m.vm_disks.get(&vm) {
        same_set(
            &data,
            &disks.iter().cloned().collect(),
            "vm-resume attaches every disk of the VM",
        )?;
    }
    m.vm_plugged.insert(vm.clone(), data.into_iter().collect());
    m.suspend_vdi.remove(&vm);
    m.learn_calls(&c.calls);
    Ok(())
}

/// vm-migrate: per disk `attach` on the target, `deactivate` on the source, `activate` on the
/// target, `detach` on the source, in those four phases. Within one host the attach and detach
/// change nothing the plugin can see and are elided: `deactivate`, `activate`.
fn vm_migrate(m: &mut Model, c: &XeCommand) -> Result<(), String> {
    let vm = vm_of(c);
    let ty = sr_type_of(&c.calls);
    let hosts: BTreeSet<&str> = c.calls.iter().map(|x| x.host.as_str()).collect();
    let per = per_vdi(&c.calls);
    if hosts.len() <= 1 {
        let want = gate(m, &ty, &["vdi_deactivate", "vdi_activate"]);
        for v in per.keys() {
            expect_vdi(&per, v, &want, "disk (migration within one host)")?;
        }
        before(
            &c.calls,
            |x| x.command == "vdi_deactivate",
            |x| x.command == "vdi_activate",
            "every disk is deactivated before any is activated",
        )?;
    } else {
        let src = c
            .calls
            .iter()
            .find(|x| x.command == "vdi_deactivate" || x.command == "vdi_detach")
            .map(|x| x.host.clone())
            .unwrap_or_default();
        let want = gate(
            m,
            &ty,
            &["vdi_attach", "vdi_deactivate", "vdi_activate", "vdi_detach"],
        );
        for v in per.keys() {
            expect_vdi(&per, v, &want, "disk")?;
            for call in c
                .calls
                .iter()
                .filter(|x| x.vdi.as_deref() == Some(v.as_str()))
            {
                let on_source = call.host == src;
                let should = matches!(call.command.as_str(), "vdi_deactivate" | "vdi_detach");
                if on_source != should {
                    return Err(format!(
                        "{} of {} ran on the wrong host",
                        call.command,
                        short(v)
                    ));
                }
            }
        }
        let phase = |x: &SmapiCall| {
            ["vdi_attach", "vdi_deactivate", "vdi_activate", "vdi_detach"]
                .iter()
                .position(|p| *p == x.command)
                .unwrap_or(0)
        };
        let phases: Vec<usize> = c.calls.iter().map(phase).collect();
        if phases.windows(2).any(|w| w[0] > w[1]) {
            return Err(format!("calls out of phase order: [{}]", show(&c.calls)));
        }
    }
    let silent = hosts.len() <= 1 && gate(m, &ty, &["vdi_deactivate", "vdi_activate"]).is_empty();
    if let Some(p) = m.vm_plugged.get(&vm).filter(|_| !silent) {
        same_set(
            &per.keys().cloned().collect::<Vec<_>>(),
            p,
            "vm-migrate moves every plugged disk",
        )?;
    }
    m.learn_calls(&c.calls);
    Ok(())
}

/// vm-clone: one `vdi_clone` per disk (then `vdi_update` with VDI_UPDATE); without VDI_CLONE
/// the vdi-copy sequence per disk.
fn vm_clone(m: &mut Model, c: &XeCommand) -> Result<(), String> {
    let vm = vm_of(c);
    let ty = sr_type_of(&c.calls);
    let disks = m.vm_disks.get(&vm).cloned();
    let mut new_disks = Vec::new();
    if m.has(&ty, "VDI_CLONE") {
        let clones: Vec<&SmapiCall> = c
            .calls
            .iter()
            .filter(|x| x.command == "vdi_clone")
            .collect();
        let mut want = Vec::new();
        for cl in &clones {
            want.push("vdi_clone");
            if m.has(&ty, "VDI_UPDATE") {
                want.push("vdi_update");
            }
            if let Some(r) = cl
                .result
                .as_ref()
                .and_then(|r| r.get("uuid"))
                .and_then(|u| u.as_str())
            {
                new_disks.push(r.to_string());
            }
        }
        expect_exact(&c.calls, &want)?;
        if let Some(d) = &disks {
            let src: Vec<String> = clones.iter().filter_map(|x| x.vdi.clone()).collect();
            same_set(
                &src,
                &d.iter().cloned().collect(),
                "vm-clone clones every disk",
            )?;
        }
    } else {
        let copies: Vec<String> = c
            .calls
            .iter()
            .filter(|x| x.command == "vdi_create")
            .filter_map(|x| x.vdi.clone())
            .collect();
        for d in disks.clone().unwrap_or_default() {
            let dst = copies
                .iter()
                .find(|n| {
                    let first_attach = pos(&c.calls, |x| {
                        x.vdi.as_deref() == Some(n.as_str()) && x.command == "vdi_attach"
                    });
                    let src_attach = pos(&c.calls, |x| {
                        x.vdi.as_deref() == Some(d.as_str()) && x.command == "vdi_attach"
                    });
                    matches!((first_attach, src_attach), (Some(a), Some(b)) if a.abs_diff(b) <= 2)
                })
                .cloned()
                .ok_or_else(|| {
                    format!("disk {} was not copied: [{}]", short(&d), show(&c.calls))
                })?;
            let calls: Vec<SmapiCall> = c
                .calls
                .iter()
                .filter(|x| {
                    x.vdi.as_deref() == Some(d.as_str()) || x.vdi.as_deref() == Some(dst.as_str())
                })
                .cloned()
                .collect();
            copy_calls(m, &calls, &d, &dst, &ty)?;
            new_disks.push(dst);
        }
        if disks.is_none() {
            return Err("vm-clone of a VM whose disks the trace never showed".into());
        }
    }
    m.vm_disks.insert(c.output().to_string(), new_disks);
    m.learn_calls(&c.calls);
    Ok(())
}

/// vm-uninstall: per disk `detach`, `deactivate`, `delete` (appendix A's order); a running VM
/// (with `--force`) is first shut down.
fn vm_uninstall(m: &mut Model, c: &XeCommand) -> Result<(), String> {
    let vm = vm_of(c);
    let ty = sr_type_of(&c.calls);
    let plugged = m.vm_plugged.get(&vm).cloned().unwrap_or_default();
    let per = per_vdi(&c.calls);
    let tail = gate(m, &ty, &["vdi_detach", "vdi_deactivate", "vdi_delete"]);
    for v in per.keys() {
        let mut want = if plugged.contains(v) {
            gate(m, &ty, &["vdi_deactivate", "vdi_detach"])
        } else {
            Vec::new()
        };
        want.extend(tail.clone());
        expect_vdi(&per, v, &want, "disk")?;
    }
    if let Some(d) = m.vm_disks.get(&vm) {
        same_set(
            &per.keys().cloned().collect::<Vec<_>>(),
            &d.iter().cloned().collect(),
            "vm-uninstall deletes every disk",
        )?;
    }
    m.vm_disks.remove(&vm);
    m.vm_plugged.remove(&vm);
    m.learn_calls(&c.calls);
    Ok(())
}

/// The table: `xe` command -> rule. Commands not listed here (lists, param-get/set, ...) must
/// not make SMAPI calls.
pub static RULES: &[(&str, Rule)] = &[
    ("sr-create", sr_create),
    ("sr-destroy", sr_destroy),
    ("sr-forget", none),
    ("sr-introduce", none),
    ("sr-scan", |m, c| one("sr_scan")(m, c)),
    ("sr-probe", |m, c| one("sr_probe")(m, c)),
    ("sr-update", |m, c| one("sr_update")(m, c)),
    ("pbd-create", none),
    ("pbd-destroy", none),
    ("pbd-plug", pbd_plug),
    ("pbd-unplug", pbd_unplug),
    ("vm-install", vm_install),
    ("vm-start", vm_start),
    ("vm-shutdown", vm_shutdown),
    ("vm-suspend", vm_suspend),
    ("vm-resume", vm_resume),
    ("vm-migrate", vm_migrate),
    ("vm-clone", vm_clone),
    ("vm-uninstall", vm_uninstall),
    ("vdi-create", vdi_create),
    ("vdi-destroy", vdi_destroy),
    ("vdi-copy", vdi_copy),
    ("vdi-forget", vdi_forget),
    ("vdi-introduce", |m, c| one("vdi_introduce")(m, c)),
    ("vdi-snapshot", vdi_snapshot),
    ("vdi-clone", vdi_clone),
    ("vdi-resize", |m, c| one("vdi_resize")(m, c)),
    ("vbd-create", vbd_create),
    ("vbd-destroy", none),
    ("vbd-plug", vbd_plug),
    ("vbd-unplug", vbd_unplug),
];

/// The verdict on one command.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// The command.
    pub cmd: XeCommand,
    /// `Err`: why it does not match appendix A (or failed).
    pub result: Result<(), String>,
}

/// Checks every command of a trace; the model is updated even after a mismatch so that later
/// commands are judged in context.
pub fn check(events: &[Event]) -> Vec<Verdict> {
    let (cmds, caps) = commands(events);
    let mut m = Model {
        caps,
        ..Model::default()
    };
    cmds.into_iter()
        .map(|c| {
            let rule = RULES
                .iter()
                .find(|(n, _)| *n == c.name())
                .map(|(_, r)| *r)
                .unwrap_or(none);
            let result = match c.code {
                None => Err("the command did not finish (no end record in the trace)".to_string()),
                Some(code) if code != 0 => {
                    m.learn_calls(&c.calls);
                    Err(format!("exit status {code}: {}", c.stderr.trim()))
                }
                Some(_) => rule(&mut m, &c),
            };
            Verdict { cmd: c, result }
        })
        .collect()
}

/// The first mismatch, as one line: `xe <argv>: <why>`.
pub fn first_mismatch(verdicts: &[Verdict]) -> Option<String> {
    verdicts.iter().find_map(|v| {
        v.result
            .as_ref()
            .err()
            .map(|e| format!("xe {}: {e}", v.cmd.argv.join(" ")))
    })
}

#[cfg(test)]
mod tests;
