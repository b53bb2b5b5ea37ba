//! INQUIRY (standard and VPD), TEST UNIT READY, READ CAPACITY(16), READ(10)/WRITE(10).

use super::{data_out, malformed, no_data, read_sized};
use crate::scsi::cdb;
use crate::scsi::error::ScsiError;
use crate::scsi::retry::exec;
use crate::scsi::transport::{DataDir, ScsiTransport};
use crate::scsi::wire::capacity::{self, Capacity, Lba};
use crate::scsi::wire::inquiry::{self, StandardInquiry};
use crate::scsi::wire::vpd::{self, DeviceId};

/// The largest standard INQUIRY data (ADDITIONAL LENGTH is one byte).
const INQUIRY_MAX: usize = 5 + 255;
/// First allocation for VPD pages.
const VPD_INITIAL: usize = 255;

fn alloc16(n: usize) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}

/// Standard INQUIRY: vendor, product, TPGS, ...
pub fn inquiry_standard(t: &dyn ScsiTransport) -> Result<StandardInquiry, ScsiError> {
    let buf = read_sized(
        t,
        INQUIRY_MAX,
        INQUIRY_MAX,
        |n| cdb::inquiry(false, 0, alloc16(n)),
        |b, _| inquiry::required_len(b),
    )?;
    inquiry::parse(&buf).map_err(|e| malformed(t, &cdb::inquiry(false, 0, alloc16(INQUIRY_MAX)), e))
}

/// The raw bytes of VPD page `page` (re-issued with the page's own length if needed).
pub fn vpd_page(t: &dyn ScsiTransport, page: u8) -> Result<Vec<u8>, ScsiError> {
    read_sized(
        t,
        VPD_INITIAL,
        usize::from(u16::MAX),
        |n| cdb::inquiry(true, page, alloc16(n)),
        |b, _| vpd::required_len(b),
    )
}

fn vpd_parsed<T>(
    t: &dyn ScsiTransport,
    page: u8,
    parse: impl Fn(&[u8]) -> Result<T, crate::scsi::wire::ParseError>,
) -> Result<T, ScsiError> {
    let buf = vpd_page(t, page)?;
    parse(&buf).map_err(|e| malformed(t, &cdb::inquiry(true, page, alloc16(buf.len())), e))
}

/// VPD 0x00: supported page codes.
pub fn vpd_supported_pages(t: &dyn ScsiTransport) -> Result<Vec<u8>, ScsiError> {
    vpd_parsed(t, vpd::PAGE_SUPPORTED, vpd::parse_supported)
}

/// VPD 0x80: the unit serial number.
pub fn vpd_unit_serial(t: &dyn ScsiTransport) -> Result<String, ScsiError> {
    vpd_parsed(t, vpd::PAGE_UNIT_SERIAL, vpd::parse_unit_serial)
}

/// VPD 0x83: device identification (WWID, target port group, relative port, names).
pub fn vpd_device_id(t: &dyn ScsiTransport) -> Result<DeviceId, ScsiError> {
    vpd_parsed(t, vpd::PAGE_DEVICE_ID, vpd::parse_device_id)
}

/// TEST UNIT READY: `Ok` when the path is ready; the error's condition says why not
/// (standby, unavailable, transitioning, ...). Unit attentions are retried.
pub fn test_unit_ready(t: &dyn ScsiTransport) -> Result<(), ScsiError> {
    no_data(t, &cdb::test_unit_ready())
}

/// READ CAPACITY(16).
pub fn read_capacity16(t: &dyn ScsiTransport) -> Result<Capacity, ScsiError> {
    let c = cdb::read_capacity16(32);
    let mut buf = [0u8; capacity::LEN];
    let done = exec(t, &c, DataDir::FromDevice(&mut buf))?;
    capacity::parse(&buf[..done.transferred(buf.len())]).map_err(|e| malformed(t, &c, e))
}

fn rw_args(lba: Lba, len: usize, block_len: u32) -> Result<(u32, u16), ScsiError> {
    let invalid = |why: String| ScsiError::Invalid(why);
    let lba32 =
        u32::try_from(lba.0).map_err(|_| invalid(format!("LBA {} needs READ/WRITE(16)", lba.0)))?;
    let bl = usize::try_from(block_len).map_err(|_| invalid("block length".into()))?;
    if bl == 0 || len == 0 || !len.is_multiple_of(bl) {
        return Err(invalid(format!(
            "{len} bytes is not a whole number of {block_len}-byte blocks"
        )));
    }
    let blocks = u16::try_from(len / bl)
        .map_err(|_| invalid(format!("{} blocks in one READ/WRITE(10)", len / bl)))?;
    Ok((lba32, blocks))
}

/// READ(10) into `buf` (a whole number of `block_len`-byte blocks) from `lba`.
pub fn read_blocks(
    t: &dyn ScsiTransport,
    lba: Lba,
    buf: &mut [u8],
    block_len: u32,
) -> Result<(), ScsiError> {
    let (lba32, blocks) = rw_args(lba, buf.len(), block_len)?;
    exec(t, &cdb::read10(lba32, blocks), DataDir::FromDevice(buf)).map(|_| ())
}

/// WRITE(10) of `data` (a whole number of `block_len`-byte blocks) at `lba`. Under a
/// persistent reservation that excludes this I_T nexus the error's condition is
/// `ReservationConflict`.
pub fn write_blocks(
    t: &dyn ScsiTransport,
    lba: Lba,
    data: &[u8],
    block_len: u32,
) -> Result<(), ScsiError> {
    let (lba32, blocks) = rw_args(lba, data.len(), block_len)?;
    data_out(t, &cdb::write10(lba32, blocks), data)
}
