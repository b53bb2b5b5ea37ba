//! The SR drivers, one module per SR type, and the table that picks one by the plugin name xapi
//! executes (argv[0]'s basename, `<Name>SR`).
//!
//! | plugin | type | module |
//! |---|---|---|
//! | `FileSR` | `file` | [`file`]: VHD files in a local directory |
//! | `EXTSR` | `ext` | [`ext`]: VHD files on an ext4 filesystem made on a local device |
//! | `LVMSR` | `lvm` | [`lvm`]: raw logical volumes in a volume group on local devices |
//! | `MultipathLVMoISCSISR` | `multipathlvmoiscsi` | [`multipathlvmoiscsi`]: as `lvm`, on one iSCSI LUN through dm-multipath |
//! | `ReservedLUNSR` | `reservedlun` | [`reservedlun`]: a LUN of an iSCSI target per VDI, activated under a SCSI-3 reservation |
//!
//! Drivers are thin: they compose sm-core (request/response, errors, runner, locks, XenAPI, LVM),
//! `hostio` (what the host does to storage: VHD images and qemu-img, qemu-nbd exports, block
//! copies, filesystems, free space), multipath, reservations, and the shared pieces here:
//! [`filebased`] and [`lvmbased`] (everything an SR of VHD files or of logical volumes does), and
//! what every driver does on the XenAPI side ([`activation`], [`scan`], [`probe`],
//! [`static_vdi`], [`vdi_record`]). They never parse XML, build CDBs or spawn processes
//! themselves: `drivers/clippy.toml` makes building a `Cmd`, a runner's `run` or a
//! `std::process::Command` here a build error.
#![forbid(unsafe_code)]
#![deny(clippy::disallowed_methods)]

pub mod activation;
pub mod ext;
pub mod file;
pub mod filebased;
pub mod iscsi_sr;
pub mod lvm;
pub mod lvmbased;
pub mod multipathlvmoiscsi;
pub mod probe;
pub mod reservedlun;
pub mod scan;
pub mod static_vdi;
pub mod vdi_record;

#[cfg(any(test, feature = "test-utils"))]
pub mod testing;

use sm_core::Driver;

/// Every driver, in the order `--help` lists them.
pub static DRIVERS: &[&dyn Driver] = &[
    &file::DRIVER,
    &ext::DRIVER,
    &lvm::DRIVER,
    &multipathlvmoiscsi::DRIVER,
    &reservedlun::DRIVER,
];

/// The SR type a plugin name stands for: the name without its `SR` suffix, lowercased
/// (`EXTSR` -> `ext`, `LVMoISCSISR` -> `lvmoiscsi`), as xapi derives it.
pub fn sr_type_of_plugin(plugin: &str) -> Option<String> {
    plugin
        .strip_suffix("SR")
        .filter(|t| !t.is_empty())
        .map(str::to_ascii_lowercase)
}

/// The driver xapi means by plugin name `plugin` (the basename of argv[0]).
pub fn by_plugin_name(plugin: &str) -> Option<&'static dyn Driver> {
    let ty = sr_type_of_plugin(plugin)?;
    DRIVERS.iter().copied().find(|d| d.info().sr_type == ty)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_names_map_to_types() {
        assert_eq!(sr_type_of_plugin("FileSR").as_deref(), Some("file"));
        assert_eq!(sr_type_of_plugin("EXTSR").as_deref(), Some("ext"));
        assert_eq!(
            sr_type_of_plugin("ReservedLUNSR").as_deref(),
            Some("reservedlun")
        );
        assert_eq!(sr_type_of_plugin("SR"), None);
        assert_eq!(sr_type_of_plugin("xsm"), None);
        assert_eq!(
            by_plugin_name("FileSR").map(|d| d.info().sr_type),
            Some("file")
        );
        assert_eq!(
            by_plugin_name("EXTSR").map(|d| d.info().sr_type),
            Some("ext")
        );
        assert!(by_plugin_name("NoSuchSR").is_none());
    }

    #[test]
    fn every_driver_is_named_consistently() {
        for d in DRIVERS {
            let i = d.info();
            assert_eq!(
                sr_type_of_plugin(i.plugin).as_deref(),
                Some(i.sr_type),
                "{}",
                i.plugin
            );
            assert!(by_plugin_name(i.plugin).is_some());
        }
    }
}
