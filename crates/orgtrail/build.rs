//! Link options of the `orgtrail` binary.

fn main() {
    let target = std::env::var("TARGET").unwrap_or_default();
    if target.ends_with("-linux-gnu") {
        // Packed relative relocations (DT_RELR, glibc 2.36+, Debian 12+). A position-independent
        // binary of this size has about 240,000 relative relocations; as classic RELA entries they take
        // 5.6 MB, which the loader reads at every start (resident memory of every process); packed,
        // a few hundred KB. The address-space randomization of a PIE stays.
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
