//! The real [`Storage`] of ReservedLUNSR: the shared iSCSI-SR layer ([`crate::iscsi_sr`]) for
//! the sessions (every portal, reference-counted per SR), the target's LUNs, each LUN's
//! multipath map served by an active/optimized group; the map's SCSI disks from sysfs as the
//! reservation engine's paths.

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::Arc;

use multipath::System;
use multipath::dm::Multipathd;
use multipath::iscsi::luns::TargetLun;
use reservations::slaves::paths_of_map;
use reservations::{PrError, PrPath};
use sm_core::driver::Ctx;
use sm_core::errors::{SmCode, SmError, SmResult};
use sm_core::ids::ScsiId;
use sm_core::probe_xml::{Listing, Record};

use super::{LunInfo, Storage};
use crate::iscsi_sr::{self, IscsiSr, pbd};

/// sm's LUN-per-VDI SR logs in on every portal unless `multihomed=false`.
const MULTIHOMED_DEFAULT: bool = true;

/// The iSCSI + multipath layer on the host of each call, or on a given [`System`] (tests).
pub struct IscsiStorage {
    system: Option<System>,
}

impl IscsiStorage {
    /// The storage of the host of each call.
    pub const fn host() -> IscsiStorage {
        IscsiStorage { system: None }
    }

    /// The storage of `sys` (a fake host in tests).
    pub fn on(sys: System) -> IscsiStorage {
        IscsiStorage { system: Some(sys) }
    }

    fn sys(&self, cx: &Ctx<'_>) -> Cow<'_, System> {
        match &self.system {
            Some(s) => Cow::Borrowed(s),
            None => Cow::Owned(iscsi_sr::system(cx)),
        }
    }

    fn load<'a>(cx: &'a Ctx<'a>, sys: &'a System) -> SmResult<IscsiSr<'a>> {
        IscsiSr::load(cx, sys, MULTIHOMED_DEFAULT)
    }
}

fn lun_info(l: TargetLun) -> LunInfo {
    LunInfo {
        scsi_id: l.scsi_id,
        size: l.size,
        lun: u32::try_from(l.lun).unwrap_or(u32::MAX),
        vendor: l.vendor,
        serial: l.serial,
    }
}

/// sm's raw-iSCSI probe answer: `<SRlist><SR><UUID/><Target/><TargetIQN/></SR></SRlist>`.
fn srlist(target: &str, iqn: &str) -> String {
    Listing::new("SRlist")
        .with_records([Record::new("SR")
            .field("UUID", "")
            .field("Target", target)
            .field("TargetIQN", iqn)])
        .to_xml()
}

impl Storage for IscsiStorage {
    /// device_config complete up to `targetIQN` (95/97/142/140, 96 with the IQN listing) and
    /// the target answering with at least one LUN (141/68/83 otherwise; fault 107 with the
    /// empty listing when it exposes none).
    fn create(&self, cx: &Ctx<'_>) -> SmResult<()> {
        let sys = self.sys(cx);
        let sr = Self::load(cx, &sys)?;
        let target = sr.require_target()?;
        let luns = sr.list_luns(target)?;
        if luns.is_empty() {
            cx.emit_stderr(&iscsi_sr::probe::lun_listing(&luns));
            return Err(SmError::msg(
                SmCode::ConfigSCSIid,
                "the target exposes no LUN to this host",
            ));
        }
        Ok(())
    }

    fn attach(&self, cx: &Ctx<'_>) -> SmResult<()> {
        let sys = self.sys(cx);
        let sr = Self::load(cx, &sys)?;
        let uuid = cx.sr_uuid()?.to_string();
        let targets = sr.attach_target(&uuid)?;
        tracing::debug!(sr = %uuid, targets = ?targets, "logged in");
        if cx.has_session()
            && let Err(e) = pbd::mark_multipathable(cx)
        {
            tracing::warn!("marking the SR multipathable failed: {e}");
        }
        Ok(())
    }

    /// Logs out when no other SR uses the target (sessions this SR's login made only). The
    /// LUNs' maps are left alone: each VDI's vdi_detach flushed its own, and the others may
    /// serve other SRs of the same target.
    fn detach(&self, cx: &Ctx<'_>) -> SmResult<()> {
        let sys = self.sys(cx);
        let sr = Self::load(cx, &sys)?;
        let uuid = cx.sr_uuid()?.to_string();
        if sr.counted_targets(&uuid).is_empty() {
            return Ok(());
        }
        sr.disconnect(&uuid)
    }

    /// Without `targetIQN` the IQN listing and fault 96; with it, the target is logged in to
    /// (and out of) to list its LUNs, and the answer is sm's raw-iSCSI `<SRlist>`.
    fn probe(&self, cx: &Ctx<'_>) -> SmResult<String> {
        let sys = self.sys(cx);
        let sr = Self::load(cx, &sys)?;
        let target = sr.require_target()?;
        let iqn = match &target {
            multipath::iscsi::login::TargetName::Exact(i) => i.as_str().to_string(),
            multipath::iscsi::login::TargetName::Any => "*".to_string(),
        };
        let luns = sr.list_luns(target)?;
        tracing::debug!(luns = luns.len(), "probe");
        Ok(srlist(&sr.cfg.target_text, &iqn))
    }

    /// Fault 47 (SRUnavailable) when the SR is not attached on this host: an empty list would
    /// make sr_scan forget every unmanaged LUN.
    fn luns(&self, cx: &Ctx<'_>) -> SmResult<Vec<LunInfo>> {
        let sys = self.sys(cx);
        let sr = Self::load(cx, &sys)?;
        let uuid = cx.sr_uuid()?.to_string();
        if sr.counted_targets(&uuid).is_empty() {
            return Err(SmError::msg(
                SmCode::SRUnavailable,
                "no iSCSI session to the SR's target: the SR is not attached on this host",
            ));
        }
        Ok(sr.luns(&uuid).into_iter().map(lun_info).collect())
    }

    fn open(&self, cx: &Ctx<'_>, scsi_id: &ScsiId) -> SmResult<PathBuf> {
        let sys = self.sys(cx);
        let sr = Self::load(cx, &sys)?;
        let lun = sr.open(cx.sr_uuid()?.as_ref(), scsi_id)?;
        tracing::debug!(
            lun = %scsi_id,
            active = lun.active_paths,
            total = lun.total_paths,
            "map ready"
        );
        Ok(lun.map)
    }

    fn close(&self, cx: &Ctx<'_>, scsi_id: &ScsiId) -> SmResult<()> {
        let sys = self.sys(cx);
        let sr = Self::load(cx, &sys)?;
        sr.close(scsi_id)
    }

    /// The slaves of the LUN's map (named by multipathd, the SCSI id unless aliased).
    fn paths(&self, cx: &Ctx<'_>, scsi_id: &ScsiId) -> Result<Vec<PrPath>, PrError> {
        let sys = self.sys(cx);
        let map = multipath::dm::show_map(sys.multipathd.as_ref(), scsi_id.as_str())
            .ok()
            .flatten()
            .map_or_else(|| scsi_id.to_string(), |m| m.name);
        paths_of_map(&sys.sysfs, &map)
    }

    /// The multipathd of the host of the call (of the given [`System`] in tests).
    fn multipathd(&self, cx: &Ctx<'_>) -> Arc<dyn Multipathd> {
        self.sys(cx).multipathd.clone()
    }
}

#[cfg(test)]
mod tests {
    use sm_core::driver::Ctx;

    use super::*;
    use crate::iscsi_sr::tests::{
        LUN1, T2_DCONF, code, request, script_t2_discovery, t2_sessions, world,
    };

    #[test]
    fn srlist_is_sms_raw_iscsi_shape_escaped() {
        let s = srlist("10.0.0.1,10.0.0.2", "iqn.2026-01.test:a&b");
        assert!(s.contains("<Target>10.0.0.1,10.0.0.2</Target>"), "{s}");
        assert!(
            s.contains("<TargetIQN>iqn.2026-01.test:a&amp;b</TargetIQN>"),
            "{s}"
        );
        assert!(s.starts_with("<?xml version=\"1.0\" ?>\n<SRlist>"));
    }

    /// The documents the hand-written writer produced before the answer moved to
    /// `sm_core::probe_xml`, byte for byte.
    #[test]
    fn srlist_bytes_as_before() {
        assert_eq!(
            srlist("10.0.0.1,10.0.0.2", "iqn.x:y"),
            "<?xml version=\"1.0\" ?>\n<SRlist>\n\t<SR>\n\t\t<UUID></UUID>\n\t\t<Target>10.0.0.1,10.0.0.2</Target>\n\t\t<TargetIQN>iqn.x:y</TargetIQN>\n\t</SR>\n</SRlist>\n"
        );
        let w = "a<b>c&d\"e'f\u{1}g\th\ni\u{7f}j\u{FFFE}k\r";
        assert_eq!(
            srlist(w, w),
            "<?xml version=\"1.0\" ?>\n<SRlist>\n\t<SR>\n\t\t<UUID></UUID>\n\t\t<Target>a&lt;b&gt;c&amp;d\"e'f\u{FFFD}g\th\ni\u{7f}j\u{FFFD}k\r</Target>\n\t\t<TargetIQN>a&lt;b&gt;c&amp;d\"e'f\u{FFFD}g\th\ni\u{7f}j\u{FFFD}k\r</TargetIQN>\n\t</SR>\n</SRlist>\n"
        );
        assert_eq!(
            srlist("", "*"),
            "<?xml version=\"1.0\" ?>\n<SRlist>\n\t<SR>\n\t\t<UUID></UUID>\n\t\t<Target></Target>\n\t\t<TargetIQN>*</TargetIQN>\n\t</SR>\n</SRlist>\n"
        );
    }

    #[test]
    fn probe_create_attach_luns_open_close_detach() {
        let w = world();
        let st = IscsiStorage::on(w.lab.sys.clone());

        let mut req = request(&[("target", "10.99.0.1,10.99.0.2")]);
        req.command_name = "sr_probe".into();
        script_t2_discovery(&w.lab);
        let cx = Ctx::new(&req, &w.host);
        assert_eq!(code(st.probe(&cx)), 96);
        assert!(cx.take_stderr().contains("<iscsi-target-iqns>"));

        script_t2_discovery(&w.lab);
        let mut req = request(T2_DCONF);
        req.command_name = "sr_probe".into();
        let cx = Ctx::new(&req, &w.host);
        let answer = st.probe(&cx).unwrap();
        assert!(answer.contains("<SRlist>"), "{answer}");
        assert!(answer.contains("<Target>10.99.0.1,10.99.0.2</Target>"));
        assert_eq!(t2_sessions(&w), 0, "probe logs out again");

        script_t2_discovery(&w.lab);
        let req = request(T2_DCONF);
        let cx = Ctx::new(&req, &w.host);
        st.create(&cx).unwrap();
        assert_eq!(t2_sessions(&w), 0, "create logs out again");
        assert_eq!(code(st.luns(&cx)), 47, "not attached: no LUN list");

        script_t2_discovery(&w.lab);
        st.attach(&cx).unwrap();
        assert_eq!(t2_sessions(&w), 2, "both portals");
        let luns = st.luns(&cx).unwrap();
        assert_eq!(luns.iter().map(|l| l.lun).collect::<Vec<_>>(), [0, 1]);
        let l1 = luns.iter().find(|l| l.scsi_id == LUN1).unwrap();
        assert!(l1.size > 0 && !l1.serial.is_empty(), "{l1:?}");
        let map = st.open(&cx, &ScsiId::new(LUN1).unwrap()).unwrap();
        assert_eq!(map, w.lab.sys.dev_path(&format!("mapper/{LUN1}")));
        st.close(&cx, &ScsiId::new(LUN1).unwrap()).unwrap();
        st.detach(&cx).unwrap();
        assert_eq!(t2_sessions(&w), 0, "logged out at detach");
        let calls: Vec<String> = w.lab.runner.calls().iter().map(|c| c.join(" ")).collect();
        assert!(calls.contains(&format!("multipath -f {LUN1}")), "{calls:?}");
        st.detach(&cx).unwrap();
    }
}
