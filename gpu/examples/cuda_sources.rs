//! Writes the CUDA C++ source of every kernel variant into a directory (`<name>.cu`), with a
//! manifest `loops.tsv` (name, then the elements per iteration of each steady-state loop)
//! for `gpu/cuda-check/sass_cost.py`. Needs a wgpu adapter (lavapipe will do), no NVIDIA
//! driver: `cargo run -p tokenmath-gpu --features cuda --example cuda_sources -- DIR`.

use std::io::Write;

fn main() {
    let Some(dir) = std::env::args().nth(1) else {
        eprintln!("usage: cuda_sources DIR");
        std::process::exit(2);
    };
    let sources = tokenmath_gpu::codegen::cuda_sources().unwrap_or_else(|e| {
        eprintln!("cuda_sources: {e}");
        std::process::exit(1);
    });
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(&dir)?;
        let mut manifest = std::fs::File::create(format!("{dir}/loops.tsv"))?;
        for k in &sources {
            std::fs::write(format!("{dir}/{}.cu", k.name), &k.source)?;
            let loops: Vec<String> = k.loop_elements.iter().map(|e| e.to_string()).collect();
            writeln!(manifest, "{}\t{}", k.name, loops.join("\t"))?;
        }
        Ok(())
    };
    if let Err(e) = write() {
        eprintln!("cuda_sources: {dir}: {e}");
        std::process::exit(1);
    }
    println!("{} kernel variants written to {dir}", sources.len());
}
