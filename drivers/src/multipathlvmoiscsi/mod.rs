//! `MultipathLVMoISCSISR` (type `multipathlvmoiscsi`).

pub mod lun;
