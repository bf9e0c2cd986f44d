//! What is running right now (target and input), a watchdog for hangs, the panic
//! hook, and the allocation-free dump of the current input used when the process
//! is about to die (a refused allocation, a hang).

use std::ffi::CString;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::Target;

static INPUT_PTR: AtomicPtr<u8> = AtomicPtr::new(std::ptr::null_mut());
static INPUT_LEN: AtomicUsize = AtomicUsize::new(0);
static TARGET: AtomicU8 = AtomicU8::new(0);
/// Milliseconds since [`epoch`] (plus one) at which the running execution began;
/// 0 when nothing runs.
static START_MS: AtomicU64 = AtomicU64::new(0);
static LIMIT_MS: AtomicU64 = AtomicU64::new(u64::MAX);
static DUMPED: AtomicBool = AtomicBool::new(false);
static FINDINGS_DIR: OnceLock<CString> = OnceLock::new();
static WATCHDOG: OnceLock<()> = OnceLock::new();
static HOOK: OnceLock<()> = OnceLock::new();
static LAST_PANIC: Mutex<Option<String>> = Mutex::new(None);

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    epoch().elapsed().as_millis() as u64 + 1
}

/// Sets the folder findings are written to (the first call wins).
pub fn set_findings_dir(dir: &std::path::Path) {
    let _ = std::fs::create_dir_all(dir);
    let s = dir.to_string_lossy().into_owned();
    let _ = FINDINGS_DIR.set(CString::new(s).unwrap_or_default());
}

/// An execution of `target` over `input` begins; it may run for `limit`.
pub fn begin(target: Target, input: &[u8], limit: Duration) {
    INPUT_PTR.store(input.as_ptr() as *mut u8, Ordering::SeqCst);
    INPUT_LEN.store(input.len(), Ordering::SeqCst);
    TARGET.store(target as u8, Ordering::SeqCst);
    LIMIT_MS.store(limit.as_millis() as u64, Ordering::SeqCst);
    START_MS.store(now_ms(), Ordering::SeqCst);
}

/// The execution begun by [`begin`] is over.
pub fn end() {
    START_MS.store(0, Ordering::SeqCst);
    INPUT_PTR.store(std::ptr::null_mut(), Ordering::SeqCst);
    INPUT_LEN.store(0, Ordering::SeqCst);
}

/// FNV-1a, 64 bits: names findings after their content.
pub fn fnv64(b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &x in b {
        h ^= x as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

struct StackBuf {
    b: [u8; 1024],
    n: usize,
}

impl StackBuf {
    fn push(&mut self, s: &[u8]) {
        for &c in s {
            if self.n < self.b.len() - 1 {
                self.b[self.n] = c;
                self.n += 1;
            }
        }
    }
    fn hex(&mut self, v: u64) {
        for i in (0..16).rev() {
            let d = ((v >> (i * 4)) & 0xf) as u8;
            self.push(&[if d < 10 { b'0' + d } else { b'a' + d - 10 }]);
        }
    }
    fn dec(&mut self, mut v: u64) {
        let mut d = [0u8; 20];
        let mut i = d.len();
        loop {
            i -= 1;
            d[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.push(&d[i..]);
    }
}

fn write_all(fd: libc::c_int, mut b: &[u8]) {
    while !b.is_empty() {
        let n = unsafe { libc::write(fd, b.as_ptr() as *const libc::c_void, b.len()) };
        if n <= 0 {
            return;
        }
        b = &b[n as usize..];
    }
}

/// Writes the running input to `<findings>/<target>-<kind>-<hash>.bin` and a line
/// to stderr, with system calls only (safe inside the allocator). Only the first
/// call in a process writes.
pub fn emergency_dump(kind: &str, detail: u64) {
    if DUMPED.swap(true, Ordering::SeqCst) {
        return;
    }
    let ptr = INPUT_PTR.load(Ordering::SeqCst);
    let len = INPUT_LEN.load(Ordering::SeqCst);
    let input: &[u8] = if ptr.is_null() {
        &[]
    } else {
        // The execution that registered it is still running (it is what called
        // us, or what the watchdog found stuck).
        unsafe { std::slice::from_raw_parts(ptr, len) }
    };
    let target = Target::from_u8(TARGET.load(Ordering::SeqCst)).name();
    let mut path = StackBuf { b: [0; 1024], n: 0 };
    match FINDINGS_DIR.get() {
        Some(d) => path.push(d.as_bytes()),
        None => path.push(b"."),
    }
    path.push(b"/");
    path.push(target.as_bytes());
    path.push(b"-");
    path.push(kind.as_bytes());
    path.push(b"-");
    path.hex(fnv64(input));
    path.push(b".bin");
    let plen = path.n;
    path.b[plen] = 0;
    let fd = unsafe {
        libc::open(
            path.b.as_ptr() as *const libc::c_char,
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC,
            0o644,
        )
    };
    if fd >= 0 {
        write_all(fd, input);
        unsafe { libc::close(fd) };
    }
    let mut msg = StackBuf { b: [0; 1024], n: 0 };
    msg.push(b"jocky-fuzz: FINDING ");
    msg.push(kind.as_bytes());
    msg.push(b" (");
    msg.dec(detail);
    msg.push(b") in target ");
    msg.push(target.as_bytes());
    msg.push(b"; input saved to ");
    msg.push(&path.b[..plen]);
    msg.push(b"\n");
    write_all(2, &msg.b[..msg.n]);
}

/// Starts (once) a thread that ends the process with exit code 3 when an
/// execution runs past its limit, after saving its input as a `hang` finding.
pub fn start_watchdog() {
    WATCHDOG.get_or_init(|| {
        epoch();
        std::thread::Builder::new()
            .name("jocky-fuzz-watchdog".into())
            .spawn(|| loop {
                std::thread::sleep(Duration::from_millis(100));
                let start = START_MS.load(Ordering::SeqCst);
                if start == 0 {
                    continue;
                }
                let ran = now_ms().saturating_sub(start);
                if ran > LIMIT_MS.load(Ordering::SeqCst) && START_MS.load(Ordering::SeqCst) == start
                {
                    emergency_dump("hang", ran);
                    unsafe { libc::_exit(3) };
                }
            })
            .expect("spawn the watchdog");
    });
}

/// Installs (once) a panic hook that, while an execution runs, keeps the message,
/// place and backtrace of the last panic (of any thread) instead of printing it.
pub fn install_panic_hook() {
    HOOK.get_or_init(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if START_MS.load(Ordering::SeqCst) == 0 {
                // Not inside an execution: the usual report.
                previous(info);
                return;
            }
            let bt = std::backtrace::Backtrace::force_capture();
            let thread = std::thread::current();
            let msg = format!(
                "thread '{}' {info}\nbacktrace:\n{bt}",
                thread.name().unwrap_or("<unnamed>")
            );
            if let Ok(mut p) = LAST_PANIC.lock() {
                *p = Some(msg);
            }
        }));
    });
}

/// The panic the hook saw since the last call, if any.
pub fn take_panic() -> Option<String> {
    LAST_PANIC.lock().ok().and_then(|mut p| p.take())
}
