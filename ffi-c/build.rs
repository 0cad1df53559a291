//! Gives the shared library a soname carrying the ABI major version, so that programs
//! linked against libferrows.so.0 keep working across compatible releases.

fn main() {
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").expect("cargo sets the version");
    let minor = std::env::var("CARGO_PKG_VERSION_MINOR").expect("cargo sets the version");
    // Before 1.0 a minor release may break the ABI (semver), so it is part of the soname.
    let soname = if major == "0" {
        format!("libferrows.so.0.{minor}")
    } else {
        format!("libferrows.so.{major}")
    };
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,{soname}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
