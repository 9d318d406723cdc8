//! The C ABI (`include/eqrt.h` is its documentation and the contract of every function).
//!
//! Design:
//! - Every entry point runs inside [`guard`]: a `catch_unwind` boundary, so a panic becomes
//!   `EQ_ERR_PANIC` and never unwinds into C. Failures store a message in a thread-local slot
//!   read by `eq_last_error`; success clears it.
//! - Handles are ids, not addresses: `eq_net*` / `eq_options*` values are keys into a global
//!   registry of live objects and are never reused. A freed, forged or mistyped handle is not
//!   found and gives `EQ_ERR_INVALID_HANDLE` instead of touching freed memory. The registry
//!   holds each object behind `Arc<Mutex<_>>`, so calls on one net from two threads are
//!   serialised and a free during another thread's call cannot pull the net out from under it.
//! - Nothing here allocates on the `eq_net_set_input` / `eq_net_run` / `eq_net_get_output`
//!   success paths beyond what `Net` does (it does not).

// Every function's safety contract (valid pointers, lengths, NUL-terminated strings) is
// written once in include/eqrt.h.
#![allow(clippy::missing_safety_doc)]

use crate::error::Error;
use crate::net::{Net, Options, PrecisionChoice};
use crate::target::{CpuSelection, Target};
use crate::tensor::Shape;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Status codes (`eq_status` in the header); keep the numbers in sync with eqrt.h.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum Status {
    Ok = 0,
    InvalidArgument = 1,
    NullPointer = 2,
    Io = 3,
    Parse = 4,
    Weights = 5,
    Shape = 6,
    UnknownBlob = 7,
    Panic = 8,
    BufferTooSmall = 9,
    Utf8 = 10,
    InvalidHandle = 11,
    Model = 12,
    Run = 13,
}

impl Status {
    pub const ALL: [Status; 14] = [
        Status::Ok,
        Status::InvalidArgument,
        Status::NullPointer,
        Status::Io,
        Status::Parse,
        Status::Weights,
        Status::Shape,
        Status::UnknownBlob,
        Status::Panic,
        Status::BufferTooSmall,
        Status::Utf8,
        Status::InvalidHandle,
        Status::Model,
        Status::Run,
    ];

    /// The constant's name in eqrt.h.
    pub fn name(self) -> &'static CStr {
        match self {
            Status::Ok => c"EQ_OK",
            Status::InvalidArgument => c"EQ_ERR_INVALID_ARGUMENT",
            Status::NullPointer => c"EQ_ERR_NULL_POINTER",
            Status::Io => c"EQ_ERR_IO",
            Status::Parse => c"EQ_ERR_PARSE",
            Status::Weights => c"EQ_ERR_WEIGHTS",
            Status::Shape => c"EQ_ERR_SHAPE",
            Status::UnknownBlob => c"EQ_ERR_UNKNOWN_BLOB",
            Status::Panic => c"EQ_ERR_PANIC",
            Status::BufferTooSmall => c"EQ_ERR_BUFFER_TOO_SMALL",
            Status::Utf8 => c"EQ_ERR_UTF8",
            Status::InvalidHandle => c"EQ_ERR_INVALID_HANDLE",
            Status::Model => c"EQ_ERR_MODEL",
            Status::Run => c"EQ_ERR_RUN",
        }
    }
}

/// `eq_precision` values.
pub const EQ_PRECISION_AUTO: c_int = 0;
pub const EQ_PRECISION_FP32: c_int = 1;
pub const EQ_PRECISION_INT8: c_int = 2;
pub const EQ_PRECISION_INT7: c_int = 3;

/// Opaque to C: an `eq_net*` is a registry id, never dereferenced.
#[repr(C)]
pub struct EqNet {
    _private: [u8; 0],
}

/// Opaque to C: an `eq_options*` is a registry id, never dereferenced.
#[repr(C)]
pub struct EqOptions {
    _private: [u8; 0],
}

/// `eq_shape`: ncnn's (dims, w, h, d, c); unused trailing dimensions are 1.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EqShape {
    pub dims: c_int,
    pub w: c_int,
    pub h: c_int,
    pub d: c_int,
    pub c: c_int,
}

impl EqShape {
    fn from_shape(s: Shape) -> EqShape {
        // Blob shapes are bounded by MAX_ELEMENTS (2^30), so every field fits an int.
        let int = |v: usize| c_int::try_from(v).unwrap_or(c_int::MAX);
        EqShape {
            dims: c_int::from(s.dims),
            w: int(s.w),
            h: int(s.h),
            d: int(s.d),
            c: int(s.c),
        }
    }
}

/// A failed call: the code returned to C and the message behind `eq_last_error`.
#[derive(Debug)]
struct Failure {
    status: Status,
    msg: String,
}

type CResult<T = ()> = Result<T, Failure>;

fn fail(status: Status, msg: impl Into<String>) -> Failure {
    Failure {
        status,
        msg: msg.into(),
    }
}

fn null(what: &str) -> Failure {
    fail(Status::NullPointer, format!("{what} is NULL"))
}

/// Maps a runtime error to a status; `running` tells layer errors at run time from load time.
fn from_error(e: Error, running: bool) -> Failure {
    let status = match &e {
        Error::Io { .. } => Status::Io,
        Error::Param { .. } => Status::Parse,
        Error::Weights { .. } => Status::Weights,
        Error::Graph { .. } => Status::Model,
        Error::Layer { .. } if running => Status::Run,
        Error::Layer { .. } => Status::Model,
        // At load, the only input error is an input shape given for a blob that is not an
        // input of the model.
        Error::Input { .. } => Status::UnknownBlob,
        Error::Panic { .. } => Status::Panic,
    };
    fail(status, e.to_string())
}

thread_local! {
    static LAST_ERROR: RefCell<Option<CString>> = const { RefCell::new(None) };
}

fn set_last_error(msg: Option<String>) {
    let msg =
        msg.map(|m| CString::new(m.replace('\0', "\\0")).unwrap_or_else(|_| c"error".to_owned()));
    // try_with / try_borrow_mut: never panic here, even during thread teardown.
    let _ = LAST_ERROR.try_with(|slot| {
        if let Ok(mut slot) = slot.try_borrow_mut() {
            *slot = msg;
        }
    });
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic payload".to_string()
    }
}

/// The panic boundary every status-returning entry point goes through.
fn guard(f: impl FnOnce() -> CResult) -> c_int {
    let status = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => {
            set_last_error(None);
            Status::Ok
        }
        Ok(Err(failure)) => {
            set_last_error(Some(failure.msg));
            failure.status
        }
        Err(payload) => {
            set_last_error(Some(format!(
                "panic inside eq-runtime: {}",
                panic_message(&*payload)
            )));
            // A payload whose destructor panics must not unwind from here either.
            if let Err(again) = catch_unwind(AssertUnwindSafe(move || drop(payload))) {
                std::mem::forget(again);
            }
            Status::Panic
        }
    };
    status as c_int
}

/// Live objects of one kind, by id.
struct Registry<T> {
    live: Mutex<BTreeMap<usize, Arc<Mutex<T>>>>,
}

/// Ids for both kinds come from one counter, so an options id is never a live net id.
/// Multiples of 16 look like ordinary aligned pointers in a debugger; 0 is never used.
static NEXT_ID: Mutex<usize> = Mutex::new(0x1000);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The registry's maps stay consistent even if a holder panicked.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<T> Registry<T> {
    const fn new() -> Registry<T> {
        Registry {
            live: Mutex::new(BTreeMap::new()),
        }
    }

    fn insert(&self, value: T) -> CResult<usize> {
        let id = {
            let mut next = lock(&NEXT_ID);
            let id = *next;
            *next = next
                .checked_add(16)
                .ok_or_else(|| fail(Status::InvalidArgument, "handle ids exhausted"))?;
            id
        };
        lock(&self.live).insert(id, Arc::new(Mutex::new(value)));
        Ok(id)
    }

    fn get(&self, id: usize, kind: &str) -> CResult<Arc<Mutex<T>>> {
        if id == 0 {
            return Err(null(kind));
        }
        lock(&self.live).get(&id).cloned().ok_or_else(|| {
            fail(
                Status::InvalidHandle,
                format!("{kind} {id:#x} is not a live handle (already freed, or not one)"),
            )
        })
    }

    fn remove(&self, id: usize, kind: &str) -> CResult<Arc<Mutex<T>>> {
        lock(&self.live).remove(&id).ok_or_else(|| {
            fail(
                Status::InvalidHandle,
                format!("{kind} {id:#x} is not a live handle (double free?)"),
            )
        })
    }
}

struct NetState {
    net: Net,
    /// NUL-terminated copies of the names, returned to C by pointer.
    input_names: Vec<CString>,
    output_names: Vec<CString>,
    /// True after a successful run and until the next `set_input` or failed run.
    outputs_valid: bool,
}

static NETS: Registry<NetState> = Registry::new();
static OPTIONS: Registry<Options> = Registry::new();

/// Runs `f` with the net locked. A net whose lock was poisoned (a call panicked while using
/// it) is refused: its buffers may be half-written.
fn with_net<R>(net: *const EqNet, f: impl FnOnce(&mut NetState) -> CResult<R>) -> CResult<R> {
    let state = NETS.get(net.addr(), "net")?;
    let mut state = state.lock().map_err(|_| {
        fail(
            Status::Panic,
            "an earlier call panicked while using this net; free it and load it again",
        )
    })?;
    #[cfg(test)]
    tests::maybe_injected_panic();
    f(&mut state)
}

fn with_options<R>(
    opts: *const EqOptions,
    f: impl FnOnce(&mut Options) -> CResult<R>,
) -> CResult<R> {
    let o = OPTIONS.get(opts.addr(), "options")?;
    let mut o = lock(&o);
    f(&mut o)
}

/// A NUL-terminated UTF-8 string argument.
unsafe fn str_arg<'a>(p: *const c_char, what: &str) -> CResult<&'a str> {
    if p.is_null() {
        return Err(null(what));
    }
    CStr::from_ptr(p).to_str().map_err(|e| {
        fail(
            Status::Utf8,
            format!(
                "{what} is not valid UTF-8 (bad byte at {})",
                e.valid_up_to()
            ),
        )
    })
}

/// A NUL-terminated path argument (any bytes on Unix).
unsafe fn path_arg(p: *const c_char, what: &str) -> CResult<std::path::PathBuf> {
    if p.is_null() {
        return Err(null(what));
    }
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        Ok(std::ffi::OsStr::from_bytes(CStr::from_ptr(p).to_bytes()).into())
    }
    #[cfg(not(unix))]
    {
        Ok(str_arg(p, what)?.into())
    }
}

/// A caller buffer of `len` items; NULL is allowed only for an empty buffer.
unsafe fn slice_arg<'a, T>(p: *const T, len: usize, what: &str) -> CResult<&'a [T]> {
    if len == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(null(what));
    }
    if !p.is_aligned() {
        return Err(fail(
            Status::InvalidArgument,
            format!("{what} is not aligned for its element type"),
        ));
    }
    if len > isize::MAX as usize / std::mem::size_of::<T>().max(1) {
        return Err(fail(
            Status::InvalidArgument,
            format!("{what}: length {len} is impossibly large"),
        ));
    }
    Ok(std::slice::from_raw_parts(p, len))
}

unsafe fn out_arg<'a, T>(p: *mut T, what: &str) -> CResult<&'a mut T> {
    if p.is_null() {
        return Err(null(what));
    }
    if !p.is_aligned() {
        return Err(fail(
            Status::InvalidArgument,
            format!("{what} is not aligned"),
        ));
    }
    Ok(&mut *p)
}

/// An out-parameter the caller may leave NULL.
unsafe fn optional_out<'a, T>(p: *mut T, what: &str) -> CResult<Option<&'a mut T>> {
    if p.is_null() {
        Ok(None)
    } else {
        out_arg(p, what).map(Some)
    }
}

fn non_negative(v: c_int, what: &str) -> CResult<usize> {
    usize::try_from(v)
        .map_err(|_| fail(Status::InvalidArgument, format!("{what} is negative ({v})")))
}

fn handle<T>(id: usize) -> *mut T {
    std::ptr::without_provenance_mut(id)
}

// ---------------------------------------------------------------- library

#[no_mangle]
pub extern "C" fn eq_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

#[no_mangle]
pub extern "C" fn eq_status_string(status: c_int) -> *const c_char {
    Status::ALL
        .iter()
        .find(|s| **s as c_int == status)
        .map_or(c"EQ_ERR_UNKNOWN_STATUS", |s| s.name())
        .as_ptr()
}

#[no_mangle]
pub extern "C" fn eq_last_error() -> *const c_char {
    catch_unwind(|| {
        LAST_ERROR
            .try_with(|slot| match slot.try_borrow().as_deref() {
                Ok(Some(msg)) => msg.as_ptr(),
                _ => c"".as_ptr(),
            })
            .unwrap_or(c"".as_ptr())
    })
    .unwrap_or(c"".as_ptr())
}

// ---------------------------------------------------------------- options

#[no_mangle]
pub unsafe extern "C" fn eq_options_new(out: *mut *mut EqOptions) -> c_int {
    guard(|| {
        let out = out_arg(out, "out")?;
        *out = std::ptr::null_mut();
        *out = handle(OPTIONS.insert(Options::default())?);
        Ok(())
    })
}

#[no_mangle]
pub extern "C" fn eq_options_free(opts: *mut EqOptions) -> c_int {
    guard(|| {
        if opts.is_null() {
            return Ok(());
        }
        drop(OPTIONS.remove(opts.addr(), "options")?);
        Ok(())
    })
}

#[no_mangle]
pub extern "C" fn eq_options_set_threads(opts: *mut EqOptions, threads: c_int) -> c_int {
    guard(|| {
        let threads = non_negative(threads, "threads")?;
        if threads > crate::pool::MAX_THREADS {
            let msg = format!("{threads} threads: at most {}", crate::pool::MAX_THREADS);
            return Err(fail(Status::InvalidArgument, msg));
        }
        with_options(opts, |o| {
            o.threads = threads;
            Ok(())
        })
    })
}

#[no_mangle]
pub extern "C" fn eq_options_set_memory_limit(opts: *mut EqOptions, bytes: usize) -> c_int {
    guard(|| {
        with_options(opts, |o| {
            o.memory_limit = (bytes > 0).then_some(bytes);
            Ok(())
        })
    })
}

#[no_mangle]
pub extern "C" fn eq_options_set_fp16_weights(opts: *mut EqOptions, on: c_int) -> c_int {
    guard(|| {
        with_options(opts, |o| {
            o.fp16_weights = on != 0;
            Ok(())
        })
    })
}

/// Checks CPU ids against this machine.
fn checked_cpus(cpus: Vec<usize>) -> CResult<Vec<usize>> {
    for (i, c) in cpus.iter().enumerate() {
        if cpus[..i].contains(c) {
            return Err(fail(
                Status::InvalidArgument,
                format!("cpu {c} is listed twice"),
            ));
        }
    }
    CpuSelection::Cpus(cpus)
        .resolve(&Target::detect())
        .map_err(|e| fail(Status::InvalidArgument, e))
}

#[no_mangle]
pub unsafe extern "C" fn eq_options_set_cpus(
    opts: *mut EqOptions,
    cpus: *const c_int,
    count: usize,
) -> c_int {
    guard(|| {
        let list = slice_arg(cpus, count, "cpus")?
            .iter()
            .map(|&c| non_negative(c, "cpu id"))
            .collect::<CResult<Vec<usize>>>()?;
        let list = if list.is_empty() {
            list
        } else {
            checked_cpus(list)?
        };
        with_options(opts, |o| {
            o.cpus = list;
            Ok(())
        })
    })
}

#[no_mangle]
pub unsafe extern "C" fn eq_options_set_cluster(
    opts: *mut EqOptions,
    cluster: *const c_char,
) -> c_int {
    guard(|| {
        let text = str_arg(cluster, "cluster")?;
        let selection: CpuSelection = text
            .parse()
            .map_err(|e: String| fail(Status::InvalidArgument, e))?;
        let cpus = match selection {
            CpuSelection::Cpus(list) => checked_cpus(list)?,
            named => named
                .resolve(&Target::detect())
                .map_err(|e| fail(Status::InvalidArgument, e))?,
        };
        with_options(opts, |o| {
            o.cpus = cpus;
            Ok(())
        })
    })
}

#[no_mangle]
pub extern "C" fn eq_options_set_precision(opts: *mut EqOptions, precision: c_int) -> c_int {
    guard(|| {
        let p = match precision {
            EQ_PRECISION_AUTO => PrecisionChoice::Auto,
            EQ_PRECISION_FP32 => PrecisionChoice::Fp32,
            EQ_PRECISION_INT8 => PrecisionChoice::Int8,
            EQ_PRECISION_INT7 => PrecisionChoice::Int7,
            other => {
                let msg = format!("unknown precision {other}: expected EQ_PRECISION_*");
                return Err(fail(Status::InvalidArgument, msg));
            }
        };
        with_options(opts, |o| {
            o.precision = p;
            Ok(())
        })
    })
}

#[no_mangle]
pub unsafe extern "C" fn eq_options_set_input_shape(
    opts: *mut EqOptions,
    name: *const c_char,
    dims: c_int,
    w: c_int,
    h: c_int,
    d: c_int,
    c: c_int,
) -> c_int {
    guard(|| {
        let name = str_arg(name, "name")?;
        let dims = u8::try_from(dims)
            .ok()
            .filter(|d| (1..=4).contains(d))
            .ok_or_else(|| fail(Status::Shape, format!("dims must be 1 to 4, not {dims}")))?;
        let dim =
            |v: c_int, what: &str| non_negative(v, what).map_err(|f| fail(Status::Shape, f.msg));
        let (w, h, d, c) = (dim(w, "w")?, dim(h, "h")?, dim(d, "d")?, dim(c, "c")?);
        // Dimensions beyond `dims` must be 1, so the element count is unambiguous.
        let unused = [(h, 2), (d, 4), (c, 3)];
        if let Some((v, _)) = unused.iter().find(|&&(v, from)| dims < from && v != 1) {
            return Err(fail(
                Status::Shape,
                format!("a {dims}-d shape needs 1 in its unused dimensions, got {v}"),
            ));
        }
        let shape = Shape::checked(dims, w, h, d, c).map_err(|e| fail(Status::Shape, e.0))?;
        with_options(opts, |o| {
            o.input_shapes.retain(|(n, _)| n != name);
            o.input_shapes.push((name.to_string(), shape));
            Ok(())
        })
    })
}

// ---------------------------------------------------------------- net

/// The options to load with: the handle's, or defaults for NULL. With a CPU list and no
/// thread count, one thread per listed CPU.
fn load_options(opts: *const EqOptions) -> CResult<Options> {
    let mut o = if opts.is_null() {
        Options::default()
    } else {
        with_options(opts, |o| Ok(o.clone()))?
    };
    if o.threads == 0 && !o.cpus.is_empty() {
        o.threads = o.cpus.len();
    }
    Ok(o)
}

fn names(list: impl Iterator<Item = String>) -> Vec<CString> {
    // Blob names come from whitespace-separated tokens and cannot hold NUL; be safe anyway.
    list.map(|n| CString::new(n.replace('\0', "?")).unwrap_or_default())
        .collect()
}

fn register(net: Net, out: &mut *mut EqNet) -> CResult {
    let input_names = names(net.inputs().map(|(n, _)| n.to_string()));
    let output_names = names(net.outputs().map(|(n, _)| n.to_string()));
    let id = NETS.insert(NetState {
        net,
        input_names,
        output_names,
        outputs_valid: false,
    })?;
    *out = handle(id);
    Ok(())
}

#[no_mangle]
pub unsafe extern "C" fn eq_net_load(
    param_path: *const c_char,
    bin_path: *const c_char,
    opts: *const EqOptions,
    out: *mut *mut EqNet,
) -> c_int {
    guard(|| {
        let out = out_arg(out, "out")?;
        *out = std::ptr::null_mut();
        let param = path_arg(param_path, "param_path")?;
        let bin = path_arg(bin_path, "bin_path")?;
        let o = load_options(opts)?;
        let net = Net::load(&param, &bin, &o).map_err(|e| from_error(e, false))?;
        register(net, out)
    })
}

#[no_mangle]
pub unsafe extern "C" fn eq_net_load_memory(
    param: *const c_void,
    param_len: usize,
    bin: *const c_void,
    bin_len: usize,
    opts: *const EqOptions,
    out: *mut *mut EqNet,
) -> c_int {
    guard(|| {
        let out = out_arg(out, "out")?;
        *out = std::ptr::null_mut();
        if param.is_null() {
            return Err(null("param"));
        }
        let param = slice_arg(param.cast::<u8>(), param_len, "param")?;
        let bin = slice_arg(bin.cast::<u8>(), bin_len, "bin")?;
        let o = load_options(opts)?;
        let net = Net::from_memory(param, bin, &o).map_err(|e| from_error(e, false))?;
        register(net, out)
    })
}

#[no_mangle]
pub extern "C" fn eq_net_free(net: *mut EqNet) -> c_int {
    guard(|| {
        if net.is_null() {
            return Ok(());
        }
        // Dropped here unless another thread is inside a call on this net: then when that
        // call ends.
        drop(NETS.remove(net.addr(), "net")?);
        Ok(())
    })
}

unsafe fn name_at(
    net: *const EqNet,
    index: usize,
    name: *mut *const c_char,
    outputs: bool,
) -> CResult {
    let name = out_arg(name, "name")?;
    *name = std::ptr::null();
    with_net(net, |s| {
        let list = if outputs {
            &s.output_names
        } else {
            &s.input_names
        };
        let n = list.get(index).ok_or_else(|| {
            fail(
                Status::InvalidArgument,
                format!("index {index} is out of range ({} names)", list.len()),
            )
        })?;
        // The CString's heap buffer lives as long as the net.
        *name = n.as_ptr();
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn eq_net_input_count(net: *const EqNet, count: *mut usize) -> c_int {
    guard(|| {
        let count = out_arg(count, "count")?;
        *count = with_net(net, |s| Ok(s.input_names.len()))?;
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn eq_net_input_name(
    net: *const EqNet,
    index: usize,
    name: *mut *const c_char,
) -> c_int {
    guard(|| name_at(net, index, name, false))
}

#[no_mangle]
pub unsafe extern "C" fn eq_net_output_count(net: *const EqNet, count: *mut usize) -> c_int {
    guard(|| {
        let count = out_arg(count, "count")?;
        *count = with_net(net, |s| Ok(s.output_names.len()))?;
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn eq_net_output_name(
    net: *const EqNet,
    index: usize,
    name: *mut *const c_char,
) -> c_int {
    guard(|| name_at(net, index, name, true))
}

fn blob_shape(net: &Net, name: &str) -> CResult<Shape> {
    net.blob_shape(name).map_err(|_| {
        fail(
            Status::UnknownBlob,
            format!("no blob named `{name}` in this model"),
        )
    })
}

#[no_mangle]
pub unsafe extern "C" fn eq_net_blob_shape(
    net: *const EqNet,
    name: *const c_char,
    shape: *mut EqShape,
) -> c_int {
    guard(|| {
        let shape = out_arg(shape, "shape")?;
        let name = str_arg(name, "name")?;
        *shape = EqShape::from_shape(with_net(net, |s| blob_shape(&s.net, name))?);
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn eq_net_set_input(
    net: *mut EqNet,
    name: *const c_char,
    data: *const f32,
    count: usize,
) -> c_int {
    guard(|| {
        let name = str_arg(name, "name")?;
        let data = slice_arg(data, count, "data")?;
        with_net(net, |s| {
            let shape = blob_shape(&s.net, name)?;
            if !s.net.inputs().any(|(n, _)| n == name) {
                return Err(fail(
                    Status::InvalidArgument,
                    format!("`{name}` is not an input blob"),
                ));
            }
            if data.len() != shape.len() {
                return Err(fail(
                    Status::Shape,
                    format!(
                        "input `{name}`: got {} values, the model expects {} ({shape})",
                        data.len(),
                        shape.len()
                    ),
                ));
            }
            // Inputs may share memory with outputs (in-place layers).
            s.outputs_valid = false;
            s.net
                .set_input(name, data)
                .map_err(|e| fail(Status::InvalidArgument, e.to_string()))
        })
    })
}

#[no_mangle]
pub extern "C" fn eq_net_run(net: *mut EqNet) -> c_int {
    guard(|| {
        with_net(net, |s| {
            s.outputs_valid = false;
            s.net.run().map_err(|e| from_error(e, true))?;
            s.outputs_valid = true;
            Ok(())
        })
    })
}

#[no_mangle]
pub unsafe extern "C" fn eq_net_get_output(
    net: *const EqNet,
    name: *const c_char,
    buffer: *mut f32,
    capacity: usize,
    count: *mut usize,
    shape: *mut EqShape,
) -> c_int {
    guard(|| {
        let name = str_arg(name, "name")?;
        if buffer.is_null() && capacity > 0 {
            return Err(null("buffer"));
        }
        if !buffer.is_aligned() {
            return Err(fail(
                Status::InvalidArgument,
                "buffer is not aligned for float",
            ));
        }
        with_net(net, |s| {
            let blob_shape = blob_shape(&s.net, name)?;
            if !s.net.outputs().any(|(n, _)| n == name) {
                return Err(fail(
                    Status::InvalidArgument,
                    format!("`{name}` is not an output blob"),
                ));
            }
            // Size and shape are reported even when the copy fails.
            if let Some(count) = optional_out(count, "count")? {
                *count = blob_shape.len();
            }
            if let Some(shape) = optional_out(shape, "shape")? {
                *shape = EqShape::from_shape(blob_shape);
            }
            if buffer.is_null() {
                return Ok(()); // size query
            }
            if !s.outputs_valid {
                let msg = format!(
                    "output `{name}` is not available: call eq_net_run after eq_net_set_input"
                );
                return Err(fail(Status::InvalidArgument, msg));
            }
            let t = s
                .net
                .blob(name)
                .map_err(|e| fail(Status::UnknownBlob, e.to_string()))?;
            if capacity < t.data.len() {
                return Err(fail(
                    Status::BufferTooSmall,
                    format!(
                        "output `{name}` has {} values ({}), the buffer holds {capacity}",
                        t.data.len(),
                        t.shape
                    ),
                ));
            }
            let dst = std::slice::from_raw_parts_mut(buffer, t.data.len());
            dst.copy_from_slice(t.data);
            Ok(())
        })
    })
}

// ---------------------------------------------------------------- custom layers

/// Opaque to C: the params of the layer being created (valid during `create` only).
#[repr(C)]
pub struct EqLayerParams {
    _private: [u8; 0],
}

/// Opaque to C: the weight reader of the layer being created (valid during `create` only).
#[repr(C)]
pub struct EqWeights {
    _private: [u8; 0],
}

/// Bytes of the error buffer each callback receives (`EQ_CUSTOM_ERROR_LEN`).
pub const EQ_CUSTOM_ERROR_LEN: usize = 256;

type CreateFn = unsafe extern "C" fn(
    *mut c_void,
    *const EqLayerParams,
    *mut EqWeights,
    *mut *mut c_void,
    *mut c_char,
) -> c_int;
type ShapesFn = unsafe extern "C" fn(
    *mut c_void,
    *const EqShape,
    usize,
    *mut EqShape,
    *mut usize,
    *mut c_char,
) -> c_int;
type ForwardFn = unsafe extern "C" fn(
    *mut c_void,
    *const *const f32,
    *const EqShape,
    usize,
    *const *mut f32,
    *const EqShape,
    usize,
    *mut c_char,
) -> c_int;

/// `eq_custom_layer`: a layer type implemented in C (see eqrt.h).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct EqCustomLayer {
    pub user_data: *mut c_void,
    pub create: Option<CreateFn>,
    pub output_shapes: Option<ShapesFn>,
    pub forward: Option<ForwardFn>,
    pub destroy: Option<unsafe extern "C" fn(*mut c_void)>,
}

/// The callbacks, shared by the layers of one type.
#[derive(Clone, Copy)]
struct Callbacks(EqCustomLayer);

// SAFETY: eqrt.h requires callbacks and user data usable from any thread (one call at a
// time per net).
unsafe impl Send for Callbacks {}
unsafe impl Sync for Callbacks {}

/// One layer of a C type: its state from `create`, freed with `destroy`.
struct CLayer {
    cb: Callbacks,
    state: *mut c_void,
}

// SAFETY: as for `Callbacks`; the state belongs to this layer only.
unsafe impl Send for CLayer {}
unsafe impl Sync for CLayer {}

impl std::fmt::Debug for CLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CLayer({:p})", self.state)
    }
}

impl Drop for CLayer {
    fn drop(&mut self) {
        if let Some(destroy) = self.cb.0.destroy {
            // SAFETY: the state came from this type's `create`, destroyed once.
            unsafe { destroy(self.state) };
        }
    }
}

/// The message a callback left in its buffer, or a generic one.
fn callback_error(buf: &[c_char; EQ_CUSTOM_ERROR_LEN], what: &str, rc: c_int) -> String {
    let bytes: Vec<u8> = buf
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c.to_ne_bytes()[0])
        .collect();
    if bytes.is_empty() {
        format!("custom layer {what} callback failed (returned {rc})")
    } else {
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

fn to_shape(s: &EqShape) -> Result<Shape, crate::error::LayerError> {
    let dims = u8::try_from(s.dims)
        .ok()
        .filter(|d| (1..=4).contains(d))
        .ok_or_else(|| crate::error::invalid(format!("output dims {} not in 1..=4", s.dims)))?;
    let v = |x: c_int| usize::try_from(x).unwrap_or(0);
    let (h, d, c) = (
        if dims >= 2 { v(s.h) } else { 1 },
        if dims >= 4 { v(s.d) } else { 1 },
        if dims >= 3 { v(s.c) } else { 1 },
    );
    Shape::checked(dims, v(s.w), h, d, c)
}

impl crate::ops::Op for CLayer {
    fn output_shapes(&self, inputs: &[Shape]) -> crate::error::LayerResult<Vec<Shape>> {
        use crate::plan::MAX_IO;
        let f = self.cb.0.output_shapes.expect("checked at registration");
        if inputs.len() > MAX_IO {
            return Err(crate::error::invalid(format!("more than {MAX_IO} inputs")));
        }
        let mut ins = [EqShape::default(); MAX_IO];
        for (d, s) in ins.iter_mut().zip(inputs) {
            *d = EqShape::from_shape(*s);
        }
        let mut outs = [EqShape::default(); MAX_IO];
        let mut n = MAX_IO;
        let mut err = [0 as c_char; EQ_CUSTOM_ERROR_LEN];
        // SAFETY: arrays of the stated lengths; eqrt.h's contract for the callback.
        let rc = unsafe {
            f(
                self.state,
                ins.as_ptr(),
                inputs.len(),
                outs.as_mut_ptr(),
                &mut n,
                err.as_mut_ptr(),
            )
        };
        if rc != 0 {
            return Err(crate::error::invalid(callback_error(
                &err,
                "output_shapes",
                rc,
            )));
        }
        if n > MAX_IO {
            return Err(crate::error::invalid(format!(
                "{n} outputs, at most {MAX_IO}"
            )));
        }
        outs[..n].iter().map(to_shape).collect()
    }

    fn forward(
        &self,
        inputs: &[crate::tensor::Tensor],
        outputs: &mut [crate::tensor::TensorMut],
        _ctx: &mut crate::ops::Ctx,
    ) -> crate::error::LayerResult<()> {
        use crate::plan::MAX_IO;
        let f = self.cb.0.forward.expect("checked at registration");
        // The plan allows at most MAX_IO of each; no allocation here.
        let mut in_ptrs = [std::ptr::null::<f32>(); MAX_IO];
        let mut in_shapes = [EqShape::default(); MAX_IO];
        let mut out_ptrs = [std::ptr::null_mut::<f32>(); MAX_IO];
        let mut out_shapes = [EqShape::default(); MAX_IO];
        for (i, t) in inputs.iter().take(MAX_IO).enumerate() {
            in_ptrs[i] = t.data.as_ptr();
            in_shapes[i] = EqShape::from_shape(t.shape);
        }
        for (i, t) in outputs.iter_mut().take(MAX_IO).enumerate() {
            out_ptrs[i] = t.data.as_mut_ptr();
            out_shapes[i] = EqShape::from_shape(t.shape);
        }
        let mut err = [0 as c_char; EQ_CUSTOM_ERROR_LEN];
        // SAFETY: each pointer covers its blob's shape; eqrt.h's contract for the callback.
        let rc = unsafe {
            f(
                self.state,
                in_ptrs.as_ptr(),
                in_shapes.as_ptr(),
                inputs.len().min(MAX_IO),
                out_ptrs.as_ptr(),
                out_shapes.as_ptr(),
                outputs.len().min(MAX_IO),
                err.as_mut_ptr(),
            )
        };
        if rc != 0 {
            return Err(crate::error::invalid(callback_error(&err, "forward", rc)));
        }
        Ok(())
    }
}

fn create_layer(
    cb: Callbacks,
    pd: &crate::model::paramdict::ParamDict,
    w: &mut crate::model::weights::WeightReader,
) -> crate::error::Result<Box<dyn crate::ops::Op>> {
    let mut state = cb.0.user_data;
    if let Some(create) = cb.0.create {
        let mut err = [0 as c_char; EQ_CUSTOM_ERROR_LEN];
        state = std::ptr::null_mut();
        let params = (pd as *const crate::model::paramdict::ParamDict).cast::<EqLayerParams>();
        let weights = (w as *mut crate::model::weights::WeightReader).cast::<EqWeights>();
        // SAFETY: params and weights live for the call; eqrt.h's contract for the callback.
        let rc = unsafe {
            create(
                cb.0.user_data,
                params,
                weights,
                &mut state,
                err.as_mut_ptr(),
            )
        };
        if rc != 0 {
            return Err(crate::error::invalid(callback_error(&err, "create", rc)).into());
        }
    }
    Ok(Box::new(CLayer { cb, state }))
}

#[no_mangle]
pub unsafe extern "C" fn eq_options_register_layer(
    opts: *mut EqOptions,
    type_name: *const c_char,
    layer: *const EqCustomLayer,
) -> c_int {
    guard(|| {
        let kind = str_arg(type_name, "type_name")?;
        if layer.is_null() {
            return Err(null("layer"));
        }
        let cb = Callbacks(*layer);
        if cb.0.output_shapes.is_none() || cb.0.forward.is_none() {
            return Err(fail(
                Status::InvalidArgument,
                "layer->output_shapes and layer->forward are required",
            ));
        }
        if kind.is_empty() || kind.len() > crate::model::param::MAX_NAME {
            return Err(fail(
                Status::InvalidArgument,
                format!(
                    "type_name must have 1 to {} bytes",
                    crate::model::param::MAX_NAME
                ),
            ));
        }
        with_options(opts, |o| {
            o.custom_layers
                .register(kind, move |pd, w| create_layer(cb, pd, w));
            Ok(())
        })
    })
}

unsafe fn params_arg<'a>(
    params: *const EqLayerParams,
) -> CResult<&'a crate::model::paramdict::ParamDict> {
    if params.is_null() {
        return Err(null("params"));
    }
    Ok(&*params.cast::<crate::model::paramdict::ParamDict>())
}

fn key_arg(key: c_int) -> CResult<usize> {
    usize::try_from(key)
        .ok()
        .filter(|&k| k < crate::model::paramdict::MAX_KEYS)
        .ok_or_else(|| {
            fail(
                Status::InvalidArgument,
                format!("param key {key} not in 0..32"),
            )
        })
}

#[no_mangle]
pub unsafe extern "C" fn eq_layer_params_int(
    params: *const EqLayerParams,
    key: c_int,
    default_value: c_int,
    value: *mut c_int,
) -> c_int {
    guard(|| {
        let out = out_arg(value, "value")?;
        let pd = params_arg(params)?;
        *out = pd
            .int(key_arg(key)?, default_value)
            .map_err(|e| fail(Status::InvalidArgument, e.0))?;
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn eq_layer_params_float(
    params: *const EqLayerParams,
    key: c_int,
    default_value: f32,
    value: *mut f32,
) -> c_int {
    guard(|| {
        let out = out_arg(value, "value")?;
        let pd = params_arg(params)?;
        *out = pd
            .float(key_arg(key)?, default_value)
            .map_err(|e| fail(Status::InvalidArgument, e.0))?;
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn eq_weights_read(
    weights: *mut EqWeights,
    count: usize,
    out: *mut f32,
) -> c_int {
    guard(|| {
        if weights.is_null() {
            return Err(null("weights"));
        }
        if out.is_null() && count > 0 {
            return Err(null("out"));
        }
        if !out.is_aligned() {
            return Err(fail(
                Status::InvalidArgument,
                "out is not aligned for float",
            ));
        }
        let w = &mut *weights.cast::<crate::model::weights::WeightReader>();
        let v = w
            .raw(count, "custom layer weights")
            .map_err(|e| from_error(e, false))?;
        if count > 0 {
            std::slice::from_raw_parts_mut(out, count).copy_from_slice(&v);
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests;
