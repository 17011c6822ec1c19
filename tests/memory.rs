//! An in-memory transport: [`coserve::serve_connection`] over a script of
//! input bytes, recording what the server writes. Shared by the test
//! binaries (`tests.rs`, `allocations.rs`).

#![allow(dead_code)]

use std::io::{self, Cursor, Read, Write};
use std::time::Duration;

use coserve::{Config, Handler, Transport};

/// Reads from a script, at most `chunk` bytes a read; records what is
/// written.
pub struct Memory {
    input: Cursor<Vec<u8>>,
    pub output: Vec<u8>,
    chunk: usize,
}

impl Memory {
    pub fn new(input: impl Into<Vec<u8>>, chunk: usize) -> Memory {
        Memory {
            input: Cursor::new(input.into()),
            output: Vec::new(),
            chunk,
        }
    }
}

impl Read for Memory {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.chunk);
        self.input.read(&mut buf[..n])
    }
}

impl Write for Memory {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.output.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Transport for Memory {
    fn set_read_timeout(&mut self, _: Option<Duration>) -> io::Result<()> {
        Ok(())
    }
    fn set_write_timeout(&mut self, _: Option<Duration>) -> io::Result<()> {
        Ok(())
    }
    fn shutdown_write(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Serves the whole script, read `chunk` bytes at a time, with `handler`
/// and the default config; returns what the server wrote.
pub fn serve_script(input: &[u8], chunk: usize, handler: &dyn Handler) -> Vec<u8> {
    let mut io = Memory::new(input, chunk);
    coserve::serve_connection(&mut io, None, &Config::new(), handler);
    io.output
}
