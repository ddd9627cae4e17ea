//! The C ABI's launch path against cubecl's compiled kernels, without a GPU.
//!
//! 1. (always; needs a wgpu adapter, lavapipe in CI) every kernel variant the launchers can
//!    choose: its entry point, buffer count, info-struct size and cube size as cubecl's CUDA
//!    compiler laid them out equal what `cuda_launch::abi` passes to `cuLaunchKernel`.
//! 2. (when `TKM_CUDA_ROOT` names a CUDA root with `lib/libnvrtc.so.*` on the loader's path,
//!    as `gpu/cuda-check/run.sh` sets it up from NVIDIA's pip wheels) every variant compiled
//!    by NVRTC through cudarc for `sm_90` with the launch path's options, and its PTX entry
//!    point — name, one `.u64` per buffer, then the info struct by value — equal to what the
//!    launcher passes.

use std::path::PathBuf;

use tokenmath_gpu::codegen::{cuda_sources, KernelSource};
use tokenmath_gpu::cuda_launch::abi::{Kernel, Launch};
use tokenmath_gpu::cuda_launch::nvrtc::{compile_ptx, include_dirs, ptx_entries, PtxParam};

/// The variants the launch path launches, with their kernels.
fn launched() -> Vec<(KernelSource, Kernel)> {
    let sources = cuda_sources().expect("CUDA sources (needs a wgpu adapter: mesa-vulkan-drivers)");
    let all = sources.len();
    let out: Vec<_> = sources.into_iter().filter_map(|s| Kernel::of_variant(&s.name).map(|k| (s, k))).collect();
    // Everything but the fma probe and the copy kernel.
    assert_eq!(out.len(), all - 2);
    out
}

/// The launcher's parameter block for `k`, with placeholder addresses.
fn launch_of(k: Kernel) -> Launch {
    let (buffers, scalars) = k.params();
    let mut l = Launch::new(k);
    for i in 0..buffers {
        l = l.buffer(0x1_0000 * (i as u64 + 1), 64, 1);
    }
    for s in 0..scalars {
        l = l.scalar(s as u32);
    }
    l.finish().unwrap()
}

/// `max(offset + bytes)` over the shared arrays a generated source declares:
/// `// Shared array size: 128, 512 bytes` then `… &dynamic_shared_mem[1044]);`.
fn declared_shared_bytes(source: &str) -> usize {
    let lines: Vec<&str> = source.lines().collect();
    let mut end = 0;
    for (i, l) in lines.iter().enumerate() {
        let Some(rest) = l.strip_prefix("// Shared array size: ") else { continue };
        let bytes: usize = rest.split(", ").nth(1).and_then(|b| b.strip_suffix(" bytes")).unwrap().parse().unwrap();
        let decl = lines[i + 1];
        let at = decl.find("dynamic_shared_mem[").unwrap() + "dynamic_shared_mem[".len();
        let offset: usize = decl[at..decl[at..].find(']').unwrap() + at].parse().unwrap();
        end = end.max(offset + bytes);
    }
    end
}

#[test]
fn every_variant_takes_the_parameters_the_launcher_passes() {
    for (src, k) in launched() {
        let (buffers, _) = k.params();
        assert_eq!(src.abi.entry, k.entry(), "{}", src.name);
        assert_eq!(src.abi.buffers, buffers, "{}", src.name);
        assert_eq!(src.abi.info_bytes, launch_of(k).info_bytes(), "{}", src.name);
        assert_eq!(src.abi.cube_threads, k.cube_threads(), "{}", src.name);
        // The info struct is a kernel parameter, not a pointer to device memory.
        assert!(src.source.contains("const __grid_constant__ info_st info"), "{}", src.name);
        // The lengths in it are declared, never read (no kernel calls `len()`), so the
        // launcher's values for them cannot change a result.
        assert_eq!(src.source.matches("static_meta").count(), 1, "{}", src.name);
        // The dynamic shared memory a launch must provide covers every shared array the
        // source declares (cubecl assigns their offsets in a different order on every
        // generation, the total stays).
        assert_eq!(src.abi.shared_bytes, declared_shared_bytes(&src.source), "{}", src.name);
        // The fast row kernel merges its planes' segments in shared memory.
        assert_eq!(src.abi.shared_bytes > 0, matches!(k, Kernel::FastRows { .. }), "{}", src.name);
    }
}

#[test]
fn every_variant_compiles_with_nvrtc_for_sm_90_and_its_entry_matches() {
    let Some(root) = std::env::var_os("TKM_CUDA_ROOT").map(PathBuf::from) else {
        eprintln!("skipped: set TKM_CUDA_ROOT (gpu/cuda-check/run.sh does) to compile with NVRTC");
        return;
    };
    let includes = include_dirs(&root);
    let variants = launched();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let failures: Vec<String> = std::thread::scope(|s| {
        let chunks: Vec<_> = variants.chunks(variants.len().div_ceil(threads)).collect();
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                let includes = &includes;
                s.spawn(move || {
                    let mut bad = Vec::new();
                    for (src, k) in chunk {
                        let ptx = match compile_ptx(&src.source, 90, includes) {
                            Ok(p) => p,
                            Err(e) => {
                                bad.push(format!("{}: {e}", src.name));
                                continue;
                            }
                        };
                        let (buffers, _) = k.params();
                        let mut want = vec![PtxParam::U64; buffers];
                        want.push(PtxParam::Bytes(launch_of(*k).info_bytes()));
                        let entries = ptx_entries(&ptx);
                        if entries != vec![(k.entry(), want.clone())] {
                            bad.push(format!("{}: PTX entries {entries:?}, the launcher passes {want:?}", src.name));
                        }
                    }
                    bad
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    assert!(failures.is_empty(), "{} of {} variants:\n{}", failures.len(), variants.len(), failures.join("\n"));
    println!("NVRTC (sm_90a): {} launch-path variants compiled, entry points as launched", variants.len());
}
