//! `XSMLVMSR` (type `xsmlvm`): VDIs as raw logical volumes in a volume group made on local block
//! devices (device_config `device`, one or more, comma-separated), laid out as sm's LVM SRs
//! (`VG_XenStorage-<sr_uuid>`, `LV-<vdi_uuid>`). Everything is [`crate::lvmbased`]; this type
//! only says where the devices come from.

use std::path::PathBuf;

use sm_core::driver::{ConfigKey, Ctx, DriverInfo};
use sm_core::errors::SmResult;

use crate::lvmbased::{self, Backing, LvmBasedSr};

/// The driver's contract.
pub static INFO: DriverInfo = DriverInfo {
    sr_type: "xsmlvm",
    plugin: "XSMLVMSR",
    name: "Local LVM",
    description: "SR plugin which represents disks as raw Logical Volumes within a Volume Group created on local block devices",
    vendor: "xsm project",
    copyright: "(C) xsm project contributors",
    driver_version: "1.0",
    required_api_version: "1.0",
    capabilities: lvmbased::CAPABILITIES,
    configuration: &[ConfigKey {
        key: "device",
        description: "local device path(s) (required), comma-separated (e.g. /dev/sdb,/dev/sdc)",
    }],
};

/// The `lvm` SR type: the devices of device_config `device`.
pub struct LocalDevices;

/// The `XSMLVMSR` driver.
pub type LvmSr = LvmBasedSr<LocalDevices>;

/// The driver instance.
pub static DRIVER: LvmSr = LvmBasedSr(LocalDevices);

impl Backing for LocalDevices {
    fn info(&self) -> &'static DriverInfo {
        &INFO
    }

    fn devices(&self, cx: &Ctx<'_>) -> SmResult<Vec<PathBuf>> {
        lvmbased::devices_from_config(cx)
    }
}
