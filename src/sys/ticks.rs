//! A cheap clock for timing lock waits: the CPU's constant-rate counter where there is one (the
//! invariant TSC on x86-64, the virtual counter on aarch64), else the monotonic clock in
//! nanoseconds.
//!
//! A contended lock acquisition is timed on every occurrence (its wait feeds the lock's
//! histogram), and two `clock_gettime` calls cost ~50 ns on this class of VM, a third of a
//! contended hand-over between two processes; `rdtsc` costs ~10 ns. On x86-64 the TSC is used
//! only when the CPU declares it invariant (constant rate) **and** the kernel chose it as its own
//! clock source (it does so only after checking the cores agree); otherwise the monotonic clock.
//! [`ns_per_tick`] converts, calibrated once per process by whoever reads the figures (never on
//! the lock's path: the first reading in a process spins 5 ms to calibrate).

use std::sync::OnceLock;

/// Which source [`ticks`] reads, decided once.
fn counter_is_usable() -> bool {
    static USABLE: OnceLock<bool> = OnceLock::new();
    *USABLE.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            // CPUID 0x8000_0007 EDX bit 8: invariant TSC (constant rate in every P- and C-state).
            // Leaf 0x8000_0000 says which extended leaves exist before that one is asked for.
            let max = std::arch::x86_64::__cpuid(0x8000_0000).eax;
            let invariant = max >= 0x8000_0007 && std::arch::x86_64::__cpuid(0x8000_0007).edx & (1 << 8) != 0;
            // The kernel keeps the TSC as its clock only if the cores' counters are in sync.
            invariant
                && std::fs::read_to_string("/sys/devices/system/clocksource/clocksource0/current_clocksource")
                    .is_ok_and(|s| s.trim() == "tsc")
        }
        #[cfg(target_arch = "aarch64")]
        {
            true // the generic timer's virtual count: always constant-rate
        }
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        {
            false
        }
    })
}

/// The current count: counter ticks, or nanoseconds where there is no usable counter.
#[inline]
pub(crate) fn ticks() -> u64 {
    if !counter_is_usable() {
        return super::monotonic_ns();
    }
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: `rdtsc` has no preconditions (user space may read the TSC on Linux).
        unsafe { std::arch::x86_64::_rdtsc() }
    }
    #[cfg(target_arch = "aarch64")]
    {
        let v: u64;
        // SAFETY: CNTVCT_EL0 is readable from EL0 on Linux; the read has no side effect.
        unsafe { std::arch::asm!("mrs {}, cntvct_el0", out(reg) v, options(nomem, nostack)) };
        v
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        super::monotonic_ns()
    }
}

/// Nanoseconds per tick of [`ticks`]: 1.0 without a counter; the counter's declared frequency
/// on aarch64; on x86-64 measured against the monotonic clock over 5 ms, once per process.
pub(crate) fn ns_per_tick() -> f64 {
    static RATE: OnceLock<f64> = OnceLock::new();
    *RATE.get_or_init(|| {
        if !counter_is_usable() {
            return 1.0;
        }
        #[cfg(target_arch = "aarch64")]
        {
            let f: u64;
            // SAFETY: CNTFRQ_EL0 is readable from EL0 on Linux; the read has no side effect.
            unsafe { std::arch::asm!("mrs {}, cntfrq_el0", out(reg) f, options(nomem, nostack)) };
            if f > 0 {
                return 1e9 / f as f64;
            }
        }
        let (n0, t0) = (super::monotonic_ns(), ticks());
        while super::monotonic_ns() - n0 < 5_000_000 {
            std::hint::spin_loop();
        }
        let (n1, t1) = (super::monotonic_ns(), ticks());
        if t1 > t0 { (n1 - n0) as f64 / (t1 - t0) as f64 } else { 1.0 }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_convert_to_the_monotonic_clock_within_a_few_percent() {
        let rate = ns_per_tick();
        let (n0, t0) = (crate::sys::monotonic_ns(), ticks());
        std::thread::sleep(std::time::Duration::from_millis(20));
        let (n1, t1) = (crate::sys::monotonic_ns(), ticks());
        let by_ticks = (t1 - t0) as f64 * rate;
        let by_clock = (n1 - n0) as f64;
        assert!((by_ticks / by_clock - 1.0).abs() < 0.05, "{by_ticks} ns by ticks, {by_clock} ns by the clock");
    }
}
