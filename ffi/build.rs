//! Link arguments of the shared library only (`cargo:rustc-cdylib-link-arg` does not reach
//! the staticlib or the rlib): a version script that exports nothing but `tkm_*`, and a
//! soname carrying the ABI version (`libtokenmath.so.0.MINOR` while the version is 0.x,
//! `libtokenmath.so.MAJOR` from 1.0 on).
fn main() {
    println!("cargo:rerun-if-changed=tokenmath.map");
    println!("cargo:rerun-if-changed=build.rs");
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target_os != "linux" {
        return;
    }
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rustc-cdylib-link-arg=-Wl,--version-script={dir}/tokenmath.map");
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").expect("cargo sets the version");
    let minor = std::env::var("CARGO_PKG_VERSION_MINOR").expect("cargo sets the version");
    let soname = if major == "0" { format!("libtokenmath.so.0.{minor}") } else { format!("libtokenmath.so.{major}") };
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,{soname}");
}
