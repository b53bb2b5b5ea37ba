//! The SMAPI error-code table and the one rendering of errors into XML-RPC faults.
//!
//! Every code of sm's `XE_SR_ERRORCODES.xml` (xapi-project/sm, 173 codes) plus the XCP-ng
//! additions is listed once in [`SmCode`], with its name, numeric value and description. A fault
//! string is `<description> [opterr=<detail>]`, exactly as sm formats it, because xapi passes it
//! on verbatim (`SR_BACKEND_FAILURE_<code>`) and users and tools match on it.
//!
//! Internal crates keep their own typed errors (`RunError`, `ScsiError`, `LvmError`, ...); a driver
//! chooses the code where the meaning is known: `SmError::new(SmCode::LVMCreate, err)`.

use std::fmt;

macro_rules! sm_codes {
    ($( $(#[$meta:meta])* $name:ident = $value:literal, $desc:literal; )*) => {
        /// One SMAPI error code (sm's `XE_SR_ERRORCODES.xml`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[allow(clippy::upper_case_acronyms)]
        pub enum SmCode {
            $( $(#[$meta])* #[doc = $desc] $name, )*
        }

        impl SmCode {
            /// Every code in the table, in table order.
            pub const ALL: &'static [SmCode] = &[$(SmCode::$name,)*];

            /// The numeric fault code xapi sees.
            pub const fn value(self) -> i32 {
                match self { $(SmCode::$name => $value,)* }
            }

            /// The symbolic name used in sm (`XenError('SRInUse')`).
            pub const fn name(self) -> &'static str {
                match self { $(SmCode::$name => stringify!($name),)* }
            }

            /// The description that opens the fault string.
            pub const fn description(self) -> &'static str {
                match self { $(SmCode::$name => $desc,)* }
            }
        }
    };
}

sm_codes! {
    InvalidArg = 1, "Invalid argument";
    BadCharacter = 2, "A bad character was detected in the dconf string";
    SRInUse = 16, "The SR device is currently in use";
    InvalidDev = 19, "No such device";
    InvalidSecret = 20, "No such secret.";
    VDIInUse = 24, "The VDI is currently in use";
    LockErr = 37, "The lock/unlock request failed";
    Unimplemented = 38, "The requested method is not supported/implemented";
    SRNotEmpty = 39, "The SR is not empty";
    SRScan = 40, "The SR scan failed";
    SRLog = 41, "The SR log operation failed";
    SRExists = 42, "The SR already exists";
    VDIExists = 43, "The VDI already exists";
    SRNoSpace = 44, "There is insufficient space";
    VDIUnavailable = 46, "The VDI is not available";
    SRUnavailable = 47, "The SR is not available";
    SRUnknownType = 48, "Unknown repository type";
    SRBadXML = 49, "Malformed XML string";
    LVMCreate = 50, "Logical Volume creation error";
    LVMDelete = 51, "Logical Volume deletion error";
    LVMMount = 52, "Logical Volume mount/activate error";
    LVMUnMount = 53, "Logical Volume unmount/deactivate error";
    LVMWrite = 54, "Logical Volume write error";
    LVMPartCreate = 55, "Logical Volume partition creation error";
    LVMPartInUse = 56, "Logical Volume partition in use";
    LVMFilesystem = 57, "Logical Volume filesystem creation error";
    LVMMaster = 58, "Logical Volume request must come from master";
    LVMResize = 59, "Logical Volume resize failed";
    LVMSize = 60, "Logical Volume invalid size";
    FileSRCreate = 61, "File SR creation error";
    FileSRRmDir = 62, "File SR failed to remove directory";
    FileSRDelete = 63, "File SR deletion error";
    VDIRemove = 64, "Failed to remove VDI";
    VDILoad = 65, "Failed to load VDI";
    VDIType = 66, "Invalid VDI type";
    ISCSIDevice = 67, "ISCSI device failed to appear";
    ISCSILogin = 68, "ISCSI login failed - check access settings for the initiator on the storage, if CHAP is used verify CHAP credentials";
    ISCSILogout = 69, "ISCSI logout failed";
    ISCSIInitiator = 70, "Failed to set ISCSI initiator";
    ISCSIDaemon = 71, "Failed to start ISCSI daemon";
    NFSVersion = 72, "Required NFS server version unsupported";
    NFSMount = 73, "NFS mount error";
    NFSUnMount = 74, "NFS unmount error";
    NFSAttached = 75, "NFS mount point already attached";
    NFSDelete = 76, "Failed to remove NFS mount point";
    LVMGroupCreate = 77, "Logical Volume group creation failed";
    VDICreate = 78, "VDI Creation failed";
    VDISize = 79, "VDI Invalid size";
    VDIDelete = 80, "Failed to mark VDI hidden";
    VDIClone = 81, "Failed to clone VDI";
    VDISnapshot = 82, "Failed to snapshot VDI";
    ISCSIDiscovery = 83, "ISCSI discovery failed";
    ISCSIIQN = 84, "ISCSI target and received IQNs differ";
    ISCSIDetach = 85, "ISCSI detach failed";
    ISCSIQueryDaemon = 86, "Failed to query the iscsi daemon";
    ConfigLUNMissing = 87, "The request is missing the LUNid parameter";
    NFSCreate = 88, "NFS SR creation error";
    ConfigLUNIDMissing = 89, "The request is missing the LUNid parameter";
    ConfigDeviceMissing = 90, "The request is missing the device parameter";
    ConfigDeviceInvalid = 91, "The device is not a valid path";
    VolNotFound = 92, "The volume cannot be found";
    PVSfailed = 93, "pvs failed";
    ConfigLocationMissing = 94, "The request is missing the location parameter";
    ConfigTargetMissing = 95, "The request is missing the target parameter";
    ConfigTargetIQNMissing = 96, "The request is missing or has an incorrect target IQN parameter";
    ConfigISCSIIQNMissing = 97, "Unable to retrieve the host configuration ISCSI IQN parameter";
    ConfigLUNSerialMissing = 98, "The request is missing the LUN serial number";
    LVMOneLUN = 99, "Only 1 LUN may be used with shared LVM";
    LVMNoVolume = 100, "Cannot find volume";
    ConfigServerPathMissing = 101, "The request is missing the serverpath parameter";
    ConfigServerMissing = 102, "The request is missing the server parameter";
    ConfigServerPathBad = 103, "The serverpath argument is not valid";
    LVMRefCount = 104, "Unable to open the refcount file";
    Rootdev = 105, "Root system device, cannot be used for VM storage";
    InvalidIQN = 106, "The IQN provided is an invalid format";
    ConfigSCSIid = 107, "The SCSIid parameter is missing or incorrect";
    NFSTarget = 108, "Unable to detect an NFS service on this target.";
    SnapshotChainTooLong = 109, "The snapshot chain is too long";
    VDIResize = 110, "VDI resize failed";
    SMBMount = 111, "SMB mount error";
    SMBUnMount = 112, "SMB unmount error";
    SMBAttached = 113, "SMB mount point already attached";
    SMBDelete = 114, "Failed to remove SMB mount point";
    ConfigParamsMissing = 115, "Not all required parameters specified.";
    SMBCreate = 116, "Failed to create SMB SR.";
    LVMRead = 117, "Logical Volume read error";
    NoRootDev = 118, "Root system device not found";
    PVMultiIDs = 119, "PVs found with multiple SCSI IDs";
    NAPPTarget = 120, "Netapp Target parameter missing in Dconf string";
    NAPPUsername = 121, "Netapp Username parameter missing in Dconf string";
    NAPPPassword = 122, "Netapp Password parameter missing in Dconf string";
    NAPPAggregate = 123, "Netapp Aggregate parameter missing in Dconf string";
    NAPPTargetFailed = 124, "Failed to connect to Netapp target";
    NAPPAuthFailed = 125, "Authentication credentials incorrect";
    NAPPInsufficientPriv = 126, "Auth credentials have insufficient access privileges";
    NAPPFVolNum = 127, "Max number of flexvols reached on target. Unable to allocate requested resource.";
    NAPPSnapLimit = 128, "Max number of Snapshots reached on target Volume. Unable to create snapshot.";
    NAPPSnapNoMem = 129, "Insufficient space, unable to create snapshot.";
    NAPPUnsupportedVersion = 130, "Netapp Target version unsupported";
    NAPPTargetIQN = 131, "Unable to retrieve target IQN";
    NAPPNoISCSIService = 132, "ISCSI service not running on the Netapp target.";
    NAPPAsisLicense = 133, "Failed to enable A-SIS for the SR. Requires valid license on the filer.";
    NAPPAsisError = 134, "The filer will not support A-SIS on this aggregate. The license is valid however on some filers A-SIS is limited to smaller aggregates, e.g. FAS3020 max supported aggregate is 1TB. See filer support documentation for details on your model. You must either disable A-SIS support, or re-configure your aggregate to the max supported size.";
    NAPPExclActivate = 135, "Failed to acquire an exclusive lock on the LUN.";
    DNSError = 140, "Incorrect DNS name, unable to resolve.";
    ISCSITarget = 141, "Unable to connect to ISCSI service on target";
    ISCSIPort = 142, "Incorrect value for iSCSI port, must be a number between 1 and 65535";
    BadRequest = 143, "Failed to parse the request";
    VDIMissing = 144, "VDI could not be found";
    APISession = 150, "Failed to initialize XMLRPC connection";
    APILocalhost = 151, "Failed to query Local Control Domain";
    APIPBDQuery = 152, "A Failure occurred querying the PBD entries";
    APIFailure = 153, "A Failure occurred accessing an API object";
    APIProtocolError = 154, "A protocol error was received when accessing the API";
    EQLTarget = 160, "Equallogic Target parameter missing in Dconf string";
    EQLUsername = 161, "Equallogic Username parameter missing in Dconf string";
    EQLPassword = 162, "Equallogic Password parameter missing in Dconf string";
    EQLStoragePool = 163, "Equallogic StoragePool parameter missing in Dconf string";
    EQLConnectfail = 164, "Failed to connect to Equallogic Array; maximum SSH CLI sessions reached";
    EQLInvalidSnapReserve = 165, "Invalid snap-reserver-percentage value, must be an integer indicating the amount of space, as a percentage of the VDI size, to reserve for snapshots.";
    EQLInvalidSnapDepletionKey = 166, "Invalid snap-depletion value, must be one of 'delete-oldest' or 'volume-offline'";
    EQLVolOutofSpace = 167, "Volume out of space, probably due to insufficient snapshot reserve allocation.";
    EQLSnapshotOfSnapshot = 168, "Cannot create Snapshot of a Snapshot VDI, operation unsupported";
    EQLPermDenied = 169, "Failed to connect to Equallogic Array, Permission denied;username/password invalid";
    EQLUnsupportedVersion = 170, "Equallogic Target version unsupported";
    EQLTargetPort = 171, "Unable to logon to Array. Check IP settings.";
    EQLInvalidStoragePool = 172, "Equallogic StoragePool parameter specified in Dconf string is Invalid";
    EQLInvalidTargetIP = 173, "Equallogic Target parameter specified in Dconf string is Invalid, please specify the correct Group IPaddress";
    EQLInvalidSNMPResp = 174, "Invalid SNMP response received for a CLI command";
    EQLInvalidVolMetaData = 175, "Volume metadata stored in the 'Description' field is invalid, this field contains encoded data and is not user editable";
    EQLInvalidEOFRecv = 176, "Invalid EOF response received for a CLI command";
    LVMProvisionAttach = 180, "Volume Group out of space. The SR is over-provisioned, and out of space. Unable to grow the underlying volume to accommodate the virtual size of the disk.";
    MetadataError = 181, "Error in Metadata volume operation for SR.";
    ISCSIDelete = 182, "ISCSI delete failed";
    EIO = 200, "General IO error";
    EGAIN = 201, "Currently unavailable, try again";
    SMGeneral = 202, "General backend error";
    FistPoint = 203, "An active FIST point was reached that causes the process to exit abnormally";
    LeafGCSkip = 204, "Gave up on leaf coalesce after leaf grew bigger than before snapshot taken";
    VBDListNotStable = 205, "LVHDRT: found a non-stable VBD";
    ISODconfMissingLocation = 220, "'Location' parameter must be specified in Device Configuration";
    ISOMustHaveISOExtension = 221, "ISO name must have .iso extension";
    ISOMountFailure = 222, "Could not mount the directory specified in Device Configuration";
    ISOUnmountFailure = 223, "Could not unmount the directory specified in Device Configuration";
    ISOSharenameFailure = 224, "Could not locate the ISO sharename on the target, or the access permissions may be incorrect.";
    ISOLocationStringError = 225, "Incorrect Location string format. String must be in the format SERVER:PATH for NFS targets, or \\\\SERVER\\PATH for CIFS targets";
    ISOLocalPath = 226, "Invalid local path";
    ISOInvalidSMBversion = 227, "Given SMB version is not allowed. Choose either 1.0 or 3.0";
    ISOInvalidXeMountOptions = 228, "Require \"-o\" along with xe-mount-iso-sr";
    XMLParse = 413, "Unable to parse XML";
    MultipathdCommsFailure = 430, "Failed to communicate with the multipath daemon";
    MultipathGenericFailure = 431, "Multipath generic failure";
    MultipathMapperPathMissing = 432, "Device Mapper path missing";
    MultipathDeviceNotAppeared = 433, "Device Mapper path not appeared yet";
    MultipathDeviceNoScsiid = 434, "Device Mapper path no SCSI ID supplied";
    TapdiskAlreadyRunning = 445, "The tapdisk is already running";
    CIFSExtendedCharsNotSupported = 446, "XenServer does not support extended characters in CIFS paths, usernames, passwords, and file names.";
    IllegalXMLChar = 447, "Illegal XML character.";
    UnsupportedKernel = 448, "Unsupported kernel: neither 2.6 nor 3.x.";
    OCFSOneLUN = 449, "Only 1 LUN may be used with shared OCFS";
    OCFSMount = 450, "OCFS mount error";
    OCFSUnMount = 451, "OCFS unmount error";
    OCFSFilesystem = 452, "OCFS filesystem creation error";
    TapdiskFailed = 453, "tapdisk experienced an error";
    NoSMBLicense = 454, "SMB SR is not licensed on this host";
    VGReg = 455, "VG Registration failure";
    TapdiskDriveEmpty = 456, "Unable to attach empty optical drive to VM.";
    CBTActivateFailed = 457, "Unable to activate changed block tracking.";
    CBTDeactivateFailed = 458, "Unable to deactivate changed block tracking.";
    CBTMetadataInconsistent = 459, "Changed block tracking log is in an inconsistent state.";
    CBTChangedBlocksError = 460, "Failed to calculate changed blocks for given VDIs.";
    SharedFileSystemNoWrite = 461, "The file system for SR cannot be written to.";
    /// XCP-ng addition.
    WipefsFailure = 462, "Failed to wipe pre-existing filesystem signature.";
    GenericException = 1200, "SM has thrown a generic python exception";
}

impl SmCode {
    /// Looks a code up by its numeric value.
    pub fn from_value(value: i32) -> Option<SmCode> {
        SmCode::ALL.iter().copied().find(|c| c.value() == value)
    }

    /// Looks a code up by its sm name (`"SRInUse"`).
    pub fn from_name(name: &str) -> Option<SmCode> {
        SmCode::ALL.iter().copied().find(|c| c.name() == name)
    }
}

impl fmt::Display for SmCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.value())
    }
}

/// An XML-RPC fault as the plugin prints it: `{faultCode, faultString}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// The numeric SMAPI code.
    pub code: i32,
    /// `<description>` or `<description> [opterr=<detail>]`.
    pub string: String,
}

/// The error every SMAPI call returns: a code and an optional detail (sm's `opterr`).
///
/// The detail carries the cause chain of the internal error that led here (a command's argv and
/// stderr, a SCSI sense decode, ...), so the administrator sees why, not only what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmError {
    /// The SMAPI code.
    pub code: SmCode,
    /// sm's `opterr`: what exactly failed, or `None`.
    pub detail: Option<String>,
}

impl SmError {
    /// An error with a detail built from any displayable cause, including its `source()` chain.
    pub fn new(code: SmCode, cause: impl std::error::Error) -> SmError {
        SmError {
            code,
            detail: Some(error_chain(&cause)),
        }
    }

    /// An error with a free-form detail.
    pub fn msg(code: SmCode, detail: impl Into<String>) -> SmError {
        SmError {
            code,
            detail: Some(detail.into()),
        }
    }

    /// An error without a detail.
    pub fn bare(code: SmCode) -> SmError {
        SmError { code, detail: None }
    }

    /// Renders the fault exactly as sm does: `<description> [opterr=<detail>]`.
    pub fn to_fault(&self) -> Fault {
        let string = match &self.detail {
            Some(d) if !d.is_empty() => format!("{} [opterr={}]", self.code.description(), d),
            _ => self.code.description().to_string(),
        };
        Fault {
            code: self.code.value(),
            string,
        }
    }
}

impl fmt::Display for SmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_fault().string)
    }
}

impl std::error::Error for SmError {}

/// Joins an error and its `source()` chain with ": ", the way the cause is shown in opterr.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = e.source();
    }
    out
}

/// Result of an SMAPI call.
pub type SmResult<T> = Result<T, SmError>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn table_has_unique_values_and_names() {
        let mut values = HashSet::new();
        let mut names = HashSet::new();
        for c in SmCode::ALL {
            assert!(values.insert(c.value()), "duplicate value {}", c.value());
            assert!(names.insert(c.name()), "duplicate name {}", c.name());
            assert!(!c.description().is_empty());
        }
        // 173 upstream codes + XCP-ng's WipefsFailure.
        assert_eq!(SmCode::ALL.len(), 174);
    }

    #[test]
    fn xapi_special_codes() {
        assert_eq!(SmCode::SRInUse.value(), 16);
        assert_eq!(SmCode::VDIInUse.value(), 24);
        assert_eq!(SmCode::Unimplemented.value(), 38);
        assert_eq!(SmCode::SRNotEmpty.value(), 39);
        assert_eq!(SmCode::VDIMissing.value(), 144);
        assert_eq!(SmCode::BadRequest.value(), 143);
    }

    #[test]
    fn fault_string_matches_sm() {
        let e = SmError::msg(SmCode::SRUnavailable, "no such VG");
        assert_eq!(
            e.to_fault().string,
            "The SR is not available [opterr=no such VG]"
        );
        assert_eq!(e.to_fault().code, 47);
        assert_eq!(
            SmError::bare(SmCode::VDISize).to_fault().string,
            "VDI Invalid size"
        );
    }

    #[test]
    fn lookup_by_value_and_name() {
        assert_eq!(SmCode::from_value(107), Some(SmCode::ConfigSCSIid));
        assert_eq!(SmCode::from_name("LVMOneLUN"), Some(SmCode::LVMOneLUN));
        assert_eq!(SmCode::from_value(9999), None);
    }

    #[derive(Debug, thiserror::Error)]
    #[error("outer failed")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn detail_includes_cause_chain_once() {
        let e = SmError::new(SmCode::EIO, Outer(std::io::Error::other("disk gone")));
        assert_eq!(e.detail.as_deref(), Some("outer failed: disk gone"));
    }

    /// Diffs the table against sm's own XE_SR_ERRORCODES.xml where sm is installed (the file is
    /// sm's, not ours to commit); skips elsewhere.
    #[test]
    fn matches_installed_sm_table_when_present() {
        let Some(xml) = [
            "/usr/share/sm/XE_SR_ERRORCODES.xml",
            "/opt/xensource/sm/XE_SR_ERRORCODES.xml",
        ]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok()) else {
            return;
        };
        for block in xml.split("<code>").skip(1) {
            let field = |tag: &str| {
                let open = format!("<{tag}>");
                let close = format!("</{tag}>");
                block
                    .split(&open)
                    .nth(1)
                    .and_then(|s| s.split(&close).next())
                    .map(str::trim)
            };
            let (Some(name), Some(value)) = (field("name"), field("value")) else {
                continue;
            };
            let Ok(value) = value.parse::<i32>() else {
                continue;
            };
            if let Some(code) = SmCode::from_name(name) {
                assert_eq!(code.value(), value, "{name}");
            }
        }
    }
}
