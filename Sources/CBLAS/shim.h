// OpenBLAS's CBLAS interface (Debian libopenblas-dev), including openblas_set_num_threads.
#include <cblas.h>

// A read prefetch hint for the fast-weight backward passes, which walk per-step matrices
// backwards in time (Swift has no prefetch of its own).
static inline void lmtrain_prefetch(const void *address) { __builtin_prefetch(address, 0, 3); }

// The vector extensions of this CPU (cpuid leaves 1 and 7), for choosing an OpenBLAS kernel:
// bit 0 AVX2, 1 FMA, 2 AVX-512F, 3 AVX-512DQ, 4 AVX-512BW, 5 AVX-512VL, each only where the
// operating system saves the registers it needs (XCR0). 0 on other architectures.
#if defined(__x86_64__)
#include <cpuid.h>
static inline unsigned int lmtrain_cpu_features(void) {
    unsigned int a, b, c, d, features = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    int fma = (c >> 12) & 1, osxsave = (c >> 27) & 1;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    features |= ((b >> 5) & 1) << 0;   // AVX2
    features |= (unsigned)fma << 1;
    features |= ((b >> 16) & 1) << 2;  // AVX-512F
    features |= ((b >> 17) & 1) << 3;  // AVX-512DQ
    features |= ((b >> 30) & 1) << 4;  // AVX-512BW
    features |= ((b >> 31) & 1) << 5;  // AVX-512VL
    if (osxsave) {
        unsigned int low, high;
        __asm__ volatile("xgetbv" : "=a"(low), "=d"(high) : "c"(0));
        // XMM, YMM (bits 1, 2) and opmask, ZMM halves (bits 5-7).
        if ((low & 0x6) != 0x6) features = 0;                   // no AVX state: nothing usable
        else if ((low & 0xe6) != 0xe6) features &= ~0x3cu;      // AVX state only: no AVX-512
    } else {
        features = 0;
    }
    return features;
}
#else
static inline unsigned int lmtrain_cpu_features(void) { return 0; }
#endif

// A spin-wait hint for the worker pool of Tensor/Parallel.swift (PAUSE on x86_64, YIELD on
// arm64): lets the sibling hyperthread run and keeps a spinning loop from flooding the memory
// pipeline while it waits for the next parallel region.
static inline void lmtrain_spin_pause(void) {
#if defined(__x86_64__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}
