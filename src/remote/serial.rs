//! The agent link over a serial line (USB CDC-ACM gadget serial, a UART, a pty), through the
//! `serialport` crate: a byte stream like TCP, with read deadlines from the port's timeout.
//!
//! A serial line has no connections: one host at a time talks to the agent, and a session ends
//! with the host's `Bye` (or a failed frame, after which the agent drops what is buffered and
//! waits for the next handshake).

use std::io::{self, Read, Write};
use std::time::Duration;

use anyhow::{Context, Result};
use serialport::{ClearBuffer, SerialPort};

use super::frame::Deadline;

/// Baud rate unless the address or `--baud` says otherwise.
pub const DEFAULT_BAUD: u32 = 115_200;

/// An open serial port.
pub struct SerialLink {
    port: Box<dyn SerialPort>,
    path: String,
}

impl SerialLink {
    /// Opens `path` at `baud` (8N1, no flow control).
    pub fn open(path: &str, baud: u32) -> Result<SerialLink> {
        let port = serialport::new(path, baud)
            .timeout(Duration::from_secs(1))
            .open()
            .with_context(|| {
                format!(
                    "cannot open the serial port {path} at {baud} baud: check the device exists and that this user may use it (the `dialout` group)"
                )
            })?;
        Ok(SerialLink {
            port,
            path: path.to_string(),
        })
    }

    /// A second handle on the same port (for the agent's reader thread).
    pub fn try_clone(&self) -> io::Result<SerialLink> {
        Ok(SerialLink {
            port: self.port.try_clone().map_err(io::Error::other)?,
            path: self.path.clone(),
        })
    }

    /// Drops whatever the port has buffered (after a failed frame, to resynchronise).
    pub fn clear_input(&self) {
        let _ = self.port.clear(ClearBuffer::Input);
    }

    /// The device path.
    pub fn path(&self) -> &str {
        &self.path
    }
}

impl Read for SerialLink {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.port.read(buf)
    }
}

impl Write for SerialLink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.port.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.port.flush()
    }
}

impl Deadline for SerialLink {
    /// The port's timeout (no deadline: a day); a timed-out read is `TimedOut`.
    fn set_read_deadline(&mut self, remaining: Option<Duration>) -> io::Result<()> {
        let t = remaining
            .unwrap_or(Duration::from_secs(86_400))
            .max(Duration::from_millis(1));
        self.port.set_timeout(t).map_err(io::Error::other)
    }
}
