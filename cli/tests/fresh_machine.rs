//! `./test.sh` on a fresh machine: the prerequisites the README's test command needs
//! (cmake, g++, pkg-config, an MPI, python3 with pip, chromium, NumPy and safetensors, cbindgen
//! 0.29.4, lavapipe) are checked before any build, and a
//! missing one stops it with one line naming the install command.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("cli/ is in the repository").to_path_buf()
}

/// The first of `/usr/bin/{name}` and `/bin/{name}` that exists.
fn system_tool(name: &str) -> PathBuf {
    ["/usr/bin", "/bin"].iter().map(|d| Path::new(d).join(name)).find(|p| p.exists()).expect(name)
}

#[cfg(unix)]
#[test]
fn test_sh_stops_before_building_when_prerequisites_are_missing() {
    use std::os::unix::fs::{symlink, PermissionsExt};
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fresh-machine");
    let _ = fs::remove_dir_all(&dir);
    let bin = dir.join("bin");
    fs::create_dir_all(&bin).unwrap();
    // A machine with a shell and coreutils but none of the prerequisites, and a `cargo`
    // that records being called: the build must not start.
    for tool in ["bash", "env", "awk", "id", "dirname"] {
        symlink(system_tool(tool), bin.join(tool)).unwrap();
    }
    let marker = dir.join("cargo-was-called");
    let cargo = bin.join("cargo");
    fs::write(&cargo, format!("#!{}\ntouch {}\n", system_tool("bash").display(), marker.display())).unwrap();
    fs::set_permissions(&cargo, fs::Permissions::from_mode(0o755)).unwrap();

    let out = Command::new(bin.join("bash"))
        .arg(repo_root().join("test.sh"))
        .env_clear()
        .env("PATH", &bin)
        .env("TOKENMATH_ICD_DIRS", dir.join("no-icd"))
        .output()
        .expect("run test.sh");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(!out.status.success(), "{stderr}");
    assert!(!marker.exists(), "test.sh started cargo before checking its prerequisites");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(
            "test.sh: missing cmake, g++, pkg-config, MPI (mpicc, mpirun), lavapipe (Mesa's CPU Vulkan driver), python3 with pip, \
             chromium, numpy and safetensors for python3, cbindgen 0.29.4; install with: "
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "apt-get install -y cmake g++ pkg-config libopenmpi-dev openmpi-bin mesa-vulkan-drivers libvulkan1 python3-pip chromium && \
             python3 -m pip install numpy safetensors && cargo install cbindgen --version 0.29.4 --locked"
        ),
        "{stderr}"
    );
}
