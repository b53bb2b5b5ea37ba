//! XenAPI errors as xapi raises them: a name from `Api_errors` and positional string parameters,
//! sent to clients as `{Status: "Failure", ErrorDescription: [name, params...]}`.
//!
//! [`describe`] holds xapi's documentation line and parameter names for the errors this emulator
//! raises, which is what the real `xe` prints for them (`Cli_util.server_error`); errors without
//! an entry (every `SR_BACKEND_FAILURE_<N>`) print as `Error code:` / `Error parameters:`.

/// One XenAPI failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code} [{}]", params.join("; "))]
pub struct ApiError {
    /// The error name (`HANDLE_INVALID`, `SR_BACKEND_FAILURE_47`, ...).
    pub code: String,
    /// Its parameters.
    pub params: Vec<String>,
}

/// Result of a XenAPI operation.
pub type ApiResult<T> = Result<T, ApiError>;

/// Error names used by the emulator (xapi's `Api_errors`).
pub mod names {
    #![allow(missing_docs)]
    pub const INTERNAL_ERROR: &str = "INTERNAL_ERROR";
    pub const PERMISSION_DENIED: &str = "PERMISSION_DENIED";
    pub const UUID_INVALID: &str = "UUID_INVALID";
    pub const HANDLE_INVALID: &str = "HANDLE_INVALID";
    pub const MAP_DUPLICATE_KEY: &str = "MAP_DUPLICATE_KEY";
    pub const MESSAGE_METHOD_UNKNOWN: &str = "MESSAGE_METHOD_UNKNOWN";
    pub const MESSAGE_PARAMETER_COUNT_MISMATCH: &str = "MESSAGE_PARAMETER_COUNT_MISMATCH";
    pub const INVALID_VALUE: &str = "INVALID_VALUE";
    pub const FIELD_TYPE_ERROR: &str = "FIELD_TYPE_ERROR";
    pub const OPERATION_NOT_ALLOWED: &str = "OPERATION_NOT_ALLOWED";
    pub const OTHER_OPERATION_IN_PROGRESS: &str = "OTHER_OPERATION_IN_PROGRESS";
    pub const UNIMPLEMENTED_IN_SM_BACKEND: &str = "UNIMPLEMENTED_IN_SM_BACKEND";
    pub const LOCATION_NOT_UNIQUE: &str = "LOCATION_NOT_UNIQUE";
    pub const SESSION_AUTHENTICATION_FAILED: &str = "SESSION_AUTHENTICATION_FAILED";
    pub const SESSION_INVALID: &str = "SESSION_INVALID";
    pub const VM_BAD_POWER_STATE: &str = "VM_BAD_POWER_STATE";
    pub const VM_HAS_NO_SUSPEND_VDI: &str = "VM_HAS_NO_SUSPEND_VDI";
    pub const VM_REQUIRES_SR: &str = "VM_REQUIRES_SR";
    pub const BOOTLOADER_FAILED: &str = "BOOTLOADER_FAILED";
    pub const SR_BACKEND_FAILURE: &str = "SR_BACKEND_FAILURE";
    pub const SR_UUID_EXISTS: &str = "SR_UUID_EXISTS";
    pub const SR_NO_PBDS: &str = "SR_NO_PBDS";
    pub const PBD_EXISTS: &str = "PBD_EXISTS";
    pub const SR_HAS_PBD: &str = "SR_HAS_PBD";
    pub const SR_UNKNOWN_DRIVER: &str = "SR_UNKNOWN_DRIVER";
    pub const SR_OPERATION_NOT_SUPPORTED: &str = "SR_OPERATION_NOT_SUPPORTED";
    pub const SR_NOT_EMPTY: &str = "SR_NOT_EMPTY";
    pub const SR_DEVICE_IN_USE: &str = "SR_DEVICE_IN_USE";
    pub const SR_NOT_SHARABLE: &str = "SR_NOT_SHARABLE";
    pub const VDI_READONLY: &str = "VDI_READONLY";
    pub const VDI_IN_USE: &str = "VDI_IN_USE";
    pub const VDI_MISSING: &str = "VDI_MISSING";
    pub const VDI_NOT_MANAGED: &str = "VDI_NOT_MANAGED";
    pub const VDI_COPY_FAILED: &str = "VDI_COPY_FAILED";
    pub const DEVICE_ALREADY_ATTACHED: &str = "DEVICE_ALREADY_ATTACHED";
    pub const DEVICE_ALREADY_DETACHED: &str = "DEVICE_ALREADY_DETACHED";
    pub const DEVICE_ALREADY_EXISTS: &str = "DEVICE_ALREADY_EXISTS";
    pub const DEFAULT_SR_NOT_FOUND: &str = "DEFAULT_SR_NOT_FOUND";
}

impl ApiError {
    /// An error with parameters.
    pub fn new<S: Into<String>>(code: &str, params: impl IntoIterator<Item = S>) -> ApiError {
        ApiError {
            code: code.to_string(),
            params: params.into_iter().map(Into::into).collect(),
        }
    }

    /// `INTERNAL_ERROR [msg]`.
    pub fn internal(msg: impl Into<String>) -> ApiError {
        ApiError::new(names::INTERNAL_ERROR, [msg.into()])
    }

    /// `HANDLE_INVALID [class; ref]`.
    pub fn handle_invalid(class: &str, r: &str) -> ApiError {
        ApiError::new(names::HANDLE_INVALID, [class, r])
    }

    /// `UUID_INVALID [class; uuid]`.
    pub fn uuid_invalid(class: &str, uuid: &str) -> ApiError {
        ApiError::new(names::UUID_INVALID, [class, uuid])
    }

    /// `INVALID_VALUE [field; value]`.
    pub fn invalid_value(field: &str, value: &str) -> ApiError {
        ApiError::new(names::INVALID_VALUE, [field, value])
    }

    /// `OPERATION_NOT_ALLOWED [reason]`.
    pub fn not_allowed(reason: impl Into<String>) -> ApiError {
        ApiError::new(names::OPERATION_NOT_ALLOWED, [reason.into()])
    }

    /// `VM_BAD_POWER_STATE [vm; expected; actual]`.
    pub fn bad_power_state(vm: &str, expected: &str, actual: &str) -> ApiError {
        ApiError::new(names::VM_BAD_POWER_STATE, [vm, expected, actual])
    }

    /// The `ErrorDescription` array: the name followed by the parameters.
    pub fn description(&self) -> Vec<String> {
        std::iter::once(self.code.clone())
            .chain(self.params.iter().cloned())
            .collect()
    }

    /// Rebuilds an error from an `ErrorDescription` array.
    pub fn from_description(d: &[String]) -> ApiError {
        match d.split_first() {
            Some((code, params)) => ApiError {
                code: code.clone(),
                params: params.to_vec(),
            },
            None => ApiError::internal("empty ErrorDescription"),
        }
    }
}

/// xapi's documentation and parameter names for an error (`datamodel_errors.ml`), for the ones
/// this emulator raises. `None`: the CLI prints the raw code and parameters.
pub fn describe(code: &str) -> Option<(&'static str, &'static [&'static str])> {
    use names::*;
    Some(match code {
        INTERNAL_ERROR => (
            "The server failed to handle your request, due to an internal error.  The given message may give details useful for debugging the problem.",
            &["message"],
        ),
        PERMISSION_DENIED => (
            "Caller not allowed to perform this operation.",
            &["message"],
        ),
        UUID_INVALID => ("The uuid you supplied was invalid.", &["type", "uuid"]),
        HANDLE_INVALID => (
            "You gave an invalid object reference.  The object may have recently been deleted.  The class parameter gives the type of reference given, and the handle parameter echoes the bad value given.",
            &["class", "handle"],
        ),
        MAP_DUPLICATE_KEY => (
            "You tried to add a key-value pair to a map, but that key is already there.",
            &["type", "param_name", "uuid", "key"],
        ),
        MESSAGE_METHOD_UNKNOWN => (
            "You tried to call a method that does not exist.  The method name that you used is echoed.",
            &["method"],
        ),
        MESSAGE_PARAMETER_COUNT_MISMATCH => (
            "You tried to call a method with the incorrect number of parameters.  The fully-qualified method name that you used, and the number of received and expected parameters are returned.",
            &["method", "expected", "received"],
        ),
        INVALID_VALUE => ("The value given is invalid", &["field", "value"]),
        FIELD_TYPE_ERROR => ("The value specified is of the wrong type", &["field"]),
        OPERATION_NOT_ALLOWED => (
            "You attempted an operation that was not allowed.",
            &["reason"],
        ),
        OTHER_OPERATION_IN_PROGRESS => (
            "Another operation involving the object is currently in progress",
            &["class", "object"],
        ),
        UNIMPLEMENTED_IN_SM_BACKEND => (
            "You have attempted a function which is not implemented",
            &["message"],
        ),
        LOCATION_NOT_UNIQUE => (
            "A VDI with the specified location already exists within the SR",
            &["SR", "location"],
        ),
        SESSION_AUTHENTICATION_FAILED => (
            "The credentials given by the user are incorrect, so access has been denied, and you have not been issued a session handle.",
            &[],
        ),
        SESSION_INVALID => (
            "You gave an invalid session reference.  It may have been invalidated by a server restart, or timed out.  You should get a new session handle, using one of the session.login_ calls.  This error does not invalidate the current connection.  The handle parameter echoes the bad value given.",
            &["handle"],
        ),
        VM_BAD_POWER_STATE => (
            "You attempted an operation on a VM that was not in an appropriate power state at the time; for example, you attempted to start a VM that was already running.  The parameters returned are the VM's handle, and the expected and actual VM state at the time of the call.",
            &["vm", "expected", "actual"],
        ),
        VM_HAS_NO_SUSPEND_VDI => (
            "VM cannot be resumed because it has no suspend VDI",
            &["vm"],
        ),
        VM_REQUIRES_SR => (
            "You attempted to run a VM on a host which doesn't have access to an SR needed by the VM. The VM has at least one VBD attached to a VDI in the SR.",
            &["vm", "sr"],
        ),
        BOOTLOADER_FAILED => ("The bootloader returned an error", &["vm", "msg"]),
        SR_BACKEND_FAILURE => (
            "There was an SR backend failure.",
            &["status", "stdout", "stderr"],
        ),
        SR_UUID_EXISTS => ("An SR with that uuid already exists.", &["uuid"]),
        SR_NO_PBDS => ("The SR has no attached PBDs", &["sr"]),
        PBD_EXISTS => (
            "A PBD already exists connecting the SR to the host",
            &["sr", "host", "pbd"],
        ),
        SR_HAS_PBD => (
            "The SR is still connected to a host via a PBD. It cannot be destroyed or forgotten.",
            &["sr"],
        ),
        SR_UNKNOWN_DRIVER => (
            "The SR could not be connected because the driver was not recognised.",
            &["driver"],
        ),
        SR_OPERATION_NOT_SUPPORTED => (
            "The SR backend does not support the operation (check the SR's allowed operations)",
            &["sr"],
        ),
        SR_NOT_EMPTY => (
            "The SR operation cannot be performed because the SR is not empty.",
            &[],
        ),
        SR_DEVICE_IN_USE => (
            "The SR operation cannot be performed because a device underlying the SR is in use by the host.",
            &[],
        ),
        SR_NOT_SHARABLE => (
            "The PBD could not be plugged because the SR is in use by another host and is not marked as sharable.",
            &["sr", "host"],
        ),
        VDI_READONLY => (
            "The operation required write access but this VDI is read-only",
            &["vdi"],
        ),
        VDI_IN_USE => (
            "This operation cannot be performed because this VDI is in use by some other operation",
            &["vdi", "operation"],
        ),
        VDI_MISSING => (
            "This operation cannot be performed because the specified VDI could not be found on the storage substrate",
            &["sr", "vdi"],
        ),
        VDI_NOT_MANAGED => (
            "This operation cannot be performed because the system does not manage this VDI",
            &["vdi"],
        ),
        VDI_COPY_FAILED => ("The VDI copy action has failed", &[]),
        DEVICE_ALREADY_ATTACHED => ("The device is already attached to a VM", &["device"]),
        DEVICE_ALREADY_DETACHED => ("The device is not currently attached", &["device"]),
        DEVICE_ALREADY_EXISTS => (
            "A device with the name given already exists on the selected VM",
            &["device"],
        ),
        DEFAULT_SR_NOT_FOUND => (
            "The default SR reference does not point to a valid SR",
            &["sr"],
        ),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn description_roundtrip() {
        let e = ApiError::uuid_invalid("VM", "x");
        assert_eq!(e.description(), vec!["UUID_INVALID", "VM", "x"]);
        assert_eq!(ApiError::from_description(&e.description()), e);
    }

    #[test]
    fn backend_failures_have_no_doc() {
        assert!(describe("SR_BACKEND_FAILURE_47").is_none());
        assert_eq!(describe("SR_NO_PBDS").map(|d| d.1.len()), Some(1));
    }
}
