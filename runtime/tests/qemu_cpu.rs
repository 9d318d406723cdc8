//! Checks that an emulated test pass really runs on the CPU it claims: scripts/test-aarch64.sh
//! sets `EQ_EXPECT_CPU` (cortex-a53 / cortex-a72) for each qemu pass. Without it, does nothing.

#[test]
fn runs_on_the_expected_cpu() {
    let Ok(expected) = std::env::var("EQ_EXPECT_CPU") else {
        return;
    };
    let (part, midr) = cpu_part();
    let want = match expected.as_str() {
        "cortex-a53" => 0xd03,
        "cortex-a72" => 0xd08,
        other => panic!("EQ_EXPECT_CPU={other}: unknown CPU"),
    };
    println!("MIDR_EL1 = {midr:#x}, part {part:#x} ({expected})");
    assert_eq!(part, want, "expected {expected}, MIDR_EL1 = {midr:#x}");
    // The runtime's own read, gated on the kernel's HWCAP_CPUID, sees the same core.
    assert_eq!(eq_runtime::cpu::current_part(), Some(part as u32));
    #[cfg(target_arch = "aarch64")]
    assert!(
        !std::arch::is_aarch64_feature_detected!("dotprod"),
        "{expected} has no dot-product instructions, but the CPU reports them"
    );
}

/// (part number, MIDR_EL1). Linux (and qemu-user) emulate this register read at EL0.
#[cfg(target_arch = "aarch64")]
fn cpu_part() -> (u64, u64) {
    let midr: u64;
    // SAFETY: reads an ID register; no memory access, no side effects.
    unsafe { std::arch::asm!("mrs {}, midr_el1", out(reg) midr) };
    ((midr >> 4) & 0xfff, midr)
}

#[cfg(not(target_arch = "aarch64"))]
fn cpu_part() -> (u64, u64) {
    panic!("EQ_EXPECT_CPU is only meaningful on aarch64")
}
