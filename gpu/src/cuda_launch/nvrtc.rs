//! Compiling a kernel variant with NVRTC, as cubecl's CUDA runtime does, through cudarc's
//! dynamically loaded `libnvrtc` (no GPU or driver needed), and reading the compiled entry
//! point's parameter list back from the PTX.
//!
//! The options are cubecl-cuda 0.10's (`compute/context.rs`, `compile_kernel`):
//! `--gpu-architecture=sm_XY` (`sm_XYa` from compute capability 9.0, the architecture-specific
//! target), `--include-path=` the CUDA headers (and CCCL's, where present), `-lineinfo`.
//! A failed compile returns NVRTC's log in [`CompileError`] (the launch path will report it
//! through its status and keep the last log for the caller to query).

use std::ffi::{CStr, CString};
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

use cudarc::nvrtc::result;

/// A kernel NVRTC did not compile, or NVRTC itself not found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompileError {
    /// Compute capability as `10·major + minor`.
    pub arch: u32,
    /// NVRTC's log (or why NVRTC could not run).
    pub log: String,
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NVRTC could not compile for {}: {}", arch_option(self.arch), self.log)
    }
}

impl std::error::Error for CompileError {}

/// The `--gpu-architecture` option for compute capability `arch` (`10·major + minor`), as
/// cubecl's runtime chooses it.
pub fn arch_option(arch: u32) -> String {
    if arch >= 90 {
        format!("--gpu-architecture=sm_{arch}a")
    } else {
        format!("--gpu-architecture=sm_{arch}")
    }
}

/// The include directories NVRTC needs for the generated sources (`cuda_runtime.h`, the
/// `cuda_fp16.h` family) under a CUDA root: `include/`, and `include/cccl` where present.
pub fn include_dirs(cuda_root: &std::path::Path) -> Vec<PathBuf> {
    let include = cuda_root.join("include");
    let cccl = include.join("cccl");
    let mut dirs = vec![include];
    if cccl.exists() {
        dirs.push(cccl);
    }
    dirs
}

/// Compiles `source` for compute capability `arch` and returns the PTX. A missing
/// `libnvrtc` (cudarc panics when it cannot load it) is a [`CompileError`] too.
pub fn compile_ptx(source: &str, arch: u32, includes: &[PathBuf]) -> Result<String, CompileError> {
    let err = |log: String| CompileError { arch, log };
    let src = CString::new(source).map_err(|_| err("the source contains a NUL byte".into()))?;
    let mut options = vec![arch_option(arch), "-lineinfo".to_string()];
    options.extend(includes.iter().map(|d| format!("--include-path={}", d.display())));
    let run = || -> Result<String, CompileError> {
        let prog = result::create_program(&src, None).map_err(|e| err(format!("nvrtcCreateProgram: {e:?}")))?;
        // Safe: `prog` is a live program until the `destroy_program` below; the options are
        // copied by cudarc into C strings for the call.
        let out = unsafe {
            match result::compile_program(prog, &options) {
                Ok(()) => result::get_ptx(prog).map_err(|e| err(format!("nvrtcGetPTX: {e:?}"))).map(|ptx| {
                    // NUL-terminated C text.
                    let bytes: Vec<u8> = ptx.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
                    String::from_utf8_lossy(&bytes).into_owned()
                }),
                Err(e) => {
                    let log = result::get_program_log(prog)
                        .map(|l| CStr::from_ptr(l.as_ptr()).to_string_lossy().into_owned())
                        .unwrap_or_else(|le| format!("(no log: {le:?})"));
                    Err(err(format!("{e:?}\n{log}")))
                }
            }
        };
        // Safe: `prog` came from `create_program` and is destroyed once.
        let _ = unsafe { result::destroy_program(prog) };
        out
    };
    catch_unwind(AssertUnwindSafe(run)).unwrap_or_else(|payload| {
        let msg = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown panic".into());
        Err(err(format!("libnvrtc could not be loaded: {msg}")))
    })
}

/// One parameter of a PTX entry point.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PtxParam {
    /// A 64-bit value (a buffer's device address).
    U64,
    /// A by-value block of bytes (the `__grid_constant__` info struct).
    Bytes(usize),
    /// Anything else, as written.
    Other(String),
}

/// The `.entry` points of a PTX module with their parameters, in order.
pub fn ptx_entries(ptx: &str) -> Vec<(String, Vec<PtxParam>)> {
    let mut out = Vec::new();
    let mut lines = ptx.lines();
    while let Some(line) = lines.next() {
        let Some(rest) = line.trim().strip_prefix(".visible .entry ").or_else(|| line.trim().strip_prefix(".entry "))
        else {
            continue;
        };
        let name = rest.trim_end_matches('(').trim().to_string();
        let mut params = Vec::new();
        for p in lines.by_ref() {
            let p = p.trim().trim_end_matches(',');
            if p.starts_with(')') {
                break;
            }
            if !p.starts_with(".param") {
                continue;
            }
            params.push(if p.starts_with(".param .u64") {
                PtxParam::U64
            } else if let Some(size) = p.contains(".b8").then(|| bracketed(p)).flatten() {
                PtxParam::Bytes(size)
            } else {
                PtxParam::Other(p.to_string())
            });
        }
        out.push((name, params));
    }
    out
}

/// `N` of a trailing `[N]`.
fn bracketed(p: &str) -> Option<usize> {
    let open = p.rfind('[')?;
    let close = p.rfind(']')?;
    p.get(open + 1..close)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_parameters_are_read_from_ptx() {
        let ptx = "//\n.version 8.8\n.target sm_90a\n\n\t// .globl\tgrad\n.visible .entry grad(\n\
                   \t.param .u64 .ptr .align 1 grad_param_0,\n\t.param .u64 .ptr .align 1 grad_param_1,\n\
                   \t.param .align 4 .b8 grad_param_2[96]\n)\n.maxntid 256, 1, 1\n{\n\tret;\n}\n";
        assert_eq!(
            ptx_entries(ptx),
            vec![("grad".to_string(), vec![PtxParam::U64, PtxParam::U64, PtxParam::Bytes(96)])]
        );
        assert_eq!(arch_option(90), "--gpu-architecture=sm_90a");
        assert_eq!(arch_option(86), "--gpu-architecture=sm_86");
    }
}
