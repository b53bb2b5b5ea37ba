//! The SR drivers, one module per SR type, and the table that picks one by the plugin name xapi
//! executes (argv[0]'s basename, `<Name>SR`).
//!
//! | plugin | type | module |
//! |---|---|---|
//! | `XSMFileSR` | `xsmfile` | [`file`]: VHD files in a local directory |
//! | `XSMEXTSR` | `xsmext` | [`ext`]: VHD files on an ext4 filesystem made on a local device |
//! | `XSMLVMSR` | `xsmlvm` | [`lvm`]: raw logical volumes in a volume group on local devices |
//! | `MultipathLVMoISCSISR` | `multipathlvmoiscsi` | [`multipathlvmoiscsi`]: as `lvm`, on one iSCSI LUN through dm-multipath |
//! | `ReservedLUNSR` | `reservedlun` | [`reservedlun`]: a LUN of an iSCSI target per VDI, activated under a SCSI-3 reservation |
//!
//! No type is one that sm ships ([`SM_TYPES`]): the plugin files of those are sm's, and sm's own
//! tools load them as Python. The local drivers carry the `XSM` prefix; the shared ones have
//! names sm never used.
//!
//! Drivers are thin: they compose sm-core (request/response, errors, runner, locks, XenAPI, LVM),
//! `hostio` (what the host does to storage: VHD images and qemu-img, qemu-nbd exports, block
//! copies, filesystems, free space), multipath, reservations, and the shared pieces here:
//! [`filebased`] and [`lvmbased`] (everything an SR of VHD files or of logical volumes does), and
//! what every driver does on the XenAPI side ([`activation`], [`scan`], [`foreign`], [`probe`],
//! [`static_vdi`], [`vdi_record`]). They never parse XML, build CDBs or spawn processes
//! themselves: `drivers/clippy.toml` makes building a `Cmd`, a runner's `run` or a
//! `std::process::Command` here a build error.
#![forbid(unsafe_code)]
#![deny(clippy::disallowed_methods)]

pub mod activation;
pub mod datapath;
pub mod ext;
pub mod file;
pub mod filebased;
pub mod foreign;
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

/// The SR types whose `<Name>SR` plugin files sm ships (xapi-project/sm and xcp-ng/sm 3.2.12
/// for XCP-ng 8.3, `%files` of the sm package and its driver list): none of ours may take one.
pub const SM_TYPES: &[&str] = &[
    "cephfs",
    "dummy",
    "ext",
    "file",
    "glusterfs",
    "hba",
    "iscsi",
    "iso",
    "largeblock",
    "linstor",
    "lvm",
    "lvmofcoe",
    "lvmohba",
    "lvmoiscsi",
    "moosefs",
    "nfs",
    "rawhba",
    "shm",
    "smb",
    "udev",
    "xfs",
    "zfs",
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
        assert_eq!(sr_type_of_plugin("XSMEXTSR").as_deref(), Some("xsmext"));
        assert_eq!(
            sr_type_of_plugin("ReservedLUNSR").as_deref(),
            Some("reservedlun")
        );
        assert_eq!(sr_type_of_plugin("SR"), None);
        assert_eq!(sr_type_of_plugin("xsm"), None);
        assert_eq!(
            by_plugin_name("XSMFileSR").map(|d| d.info().sr_type),
            Some("xsmfile")
        );
        assert_eq!(
            by_plugin_name("XSMEXTSR").map(|d| d.info().sr_type),
            Some("xsmext")
        );
        assert!(by_plugin_name("FileSR").is_none());
        assert!(by_plugin_name("LVMSR").is_none());
        assert!(by_plugin_name("NoSuchSR").is_none());
    }

    #[test]
    fn no_driver_takes_a_type_sm_ships() {
        for d in DRIVERS {
            let i = d.info();
            assert!(!SM_TYPES.contains(&i.sr_type), "{} is sm's", i.sr_type);
            let file = i.plugin.to_ascii_lowercase();
            assert!(
                !SM_TYPES.iter().any(|t| file == format!("{t}sr")),
                "{} is sm's plugin file",
                i.plugin
            );
        }
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
