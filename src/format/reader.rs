//! A bounds-checked cursor over bytes read from disk, shared by the record and
//! segment-file decoders: every read checks the length first, so no input makes
//! a decoder panic or read past its buffer.

use crate::error::DecodeError;
use crate::format::record::{u16_at, u32_at, u64_at};

pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    /// Bytes consumed so far.
    pub fn pos(&self) -> usize {
        self.pos
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).ok_or(DecodeError::Truncated)?;
        let s = self.buf.get(self.pos..end).ok_or(DecodeError::Truncated)?;
        self.pos = end;
        Ok(s)
    }

    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64_at(self.take(8)?, 0))
    }

    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32_at(self.take(4)?, 0))
    }

    /// A `u16 len + utf8` string of at most `max` bytes.
    pub fn str(&mut self, max: usize) -> Result<&'a str, DecodeError> {
        let len = u16_at(self.take(2)?, 0) as usize;
        if len > max {
            return Err(DecodeError::LengthOutOfBounds(len as u64));
        }
        std::str::from_utf8(self.take(len)?).map_err(|_| DecodeError::BadName)
    }

    /// Everything not consumed yet.
    pub fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos..];
        self.pos = self.buf.len();
        s
    }
}
