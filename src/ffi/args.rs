//! Checked conversions between C arguments and Rust values, and the
//! library's allocations handed to C.

use crate::error::Error;
use std::ffi::{c_char, CStr};

fn invalid(what: &str) -> Error {
    Error::InvalidArgument(what.to_string())
}

/// A `(ptr, len)` byte buffer; `ptr` may be NULL only when `len` is 0.
///
/// # Safety
/// `ptr` must be NULL or valid for reads of `len` bytes for the duration of the call.
pub unsafe fn bytes<'a>(ptr: *const c_char, len: usize, what: &str) -> Result<&'a [u8], Error> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(invalid(&format!("{what} is NULL with length {len}")));
    }
    Ok(std::slice::from_raw_parts(ptr.cast(), len))
}

/// A non-empty key.
///
/// # Safety
/// As for [`bytes()`].
pub unsafe fn key<'a>(ptr: *const c_char, len: usize) -> Result<&'a [u8], Error> {
    non_empty(ptr, len, "key")
}

/// A non-empty `(ptr, len)` buffer named `what` (a lock name or holder).
///
/// # Safety
/// As for [`bytes()`].
pub unsafe fn non_empty<'a>(ptr: *const c_char, len: usize, what: &str) -> Result<&'a [u8], Error> {
    let b = bytes(ptr, len, what)?;
    if b.is_empty() {
        return Err(invalid(&format!("{what} is empty")));
    }
    Ok(b)
}

/// A NUL-terminated UTF-8 string.
///
/// # Safety
/// `ptr` must be NULL or point to a NUL-terminated string.
pub unsafe fn text<'a>(ptr: *const c_char, what: &str) -> Result<&'a str, Error> {
    if ptr.is_null() {
        return Err(invalid(&format!("{what} is NULL")));
    }
    CStr::from_ptr(ptr)
        .to_str()
        .map_err(|_| invalid(&format!("{what} is not UTF-8")))
}

/// A required output pointer.
pub fn out<'a, T>(ptr: *mut T, what: &str) -> Result<&'a mut T, Error> {
    // SAFETY: non-NULL output pointers point to writable storage (the API contract).
    unsafe { ptr.as_mut() }.ok_or_else(|| invalid(&format!("{what} is NULL")))
}

/// Copies `data` into `malloc`ed memory with a trailing NUL (freed by `floyd_free`).
pub fn alloc_bytes(data: &[u8]) -> Result<*mut c_char, Error> {
    // SAFETY: malloc of len + 1 bytes, checked for NULL, then fully initialised.
    unsafe {
        let p = libc::malloc(data.len() + 1).cast::<u8>();
        if p.is_null() {
            return Err(Error::Io(format!(
                "out of memory allocating {} bytes",
                data.len() + 1
            )));
        }
        std::ptr::copy_nonoverlapping(data.as_ptr(), p, data.len());
        *p.add(data.len()) = 0;
        Ok(p.cast())
    }
}

/// Writes a library-allocated copy of `msg` to `*errmsg` when `errmsg` is not NULL.
///
/// # Safety
/// `errmsg` must be NULL or point to a writable `char*`.
pub unsafe fn set_errmsg(errmsg: *mut *mut c_char, msg: &str) {
    if let Some(slot) = errmsg.as_mut() {
        if let Ok(p) = alloc_bytes(msg.replace('\0', " ").as_bytes()) {
            *slot = p;
        }
    }
}
