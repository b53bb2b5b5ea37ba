//! `xsm drivers` (and the DRIVERS block of `xsm --help`): one line per SR driver.

use std::io::Write;

/// Writes the drivers table: `<plugin> <type> <description>` per line.
pub fn write(out: &mut dyn Write) -> std::io::Result<()> {
    for d in drivers::DRIVERS {
        let i = d.info();
        writeln!(
            out,
            "  {:<14} {:<10} {}",
            i.plugin, i.sr_type, i.description
        )?;
    }
    Ok(())
}

/// `xsm --list-plugins`: `<plugin> <type>` per driver, for install.sh.
pub fn write_plugins(out: &mut dyn Write) -> std::io::Result<()> {
    drivers::DRIVERS
        .iter()
        .try_for_each(|d| writeln!(out, "{} {}", d.info().plugin, d.info().sr_type))
}
