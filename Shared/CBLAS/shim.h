#ifndef CANDLECAST_CBLAS_SHIM_H
#define CANDLECAST_CBLAS_SHIM_H
#include <cblas.h>
#if defined(__x86_64__)
#include <cpuid.h>
#include <xmmintrin.h>
#endif

/// The widest vector extension this CPU and its OS both enable: 0 none known, 1 AVX, 2 AVX2 with FMA,
/// 3 AVX-512 (F, DQ, BW, VL); -1 on CPUs other than x86-64. XGETBV is checked so that a kernel chosen from this
/// never uses registers the OS does not save.
static inline int candlecast_cpu_vector_level(void) {
#if defined(__x86_64__)
    unsigned int a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, fma = (c >> 12) & 1;
    if (!osxsave || !avx) return 0;
    unsigned int xcr0_low, xcr0_high;
    __asm__ volatile("xgetbv" : "=a"(xcr0_low), "=d"(xcr0_high) : "c"(0));
    if ((xcr0_low & 0x6) != 0x6) return 0;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 1;
    int avx2 = (b >> 5) & 1;
    int avx512 = ((b >> 16) & 1) && ((b >> 17) & 1) && ((b >> 30) & 1) && ((b >> 31) & 1) && ((xcr0_low & 0xe0) == 0xe0);
    if (avx512 && avx2 && fma) return 3;
    if (avx2 && fma) return 2;
    return 1;
#else
    return -1;
#endif
}

/// The thread's floating-point control word (MXCSR on x86-64), to restore after `candlecast_flush_denormals`.
static inline unsigned int candlecast_floating_point_mode(void) {
#if defined(__x86_64__)
    return _mm_getcsr();
#else
    return 0;
#endif
}

static inline void candlecast_set_floating_point_mode(unsigned int mode) {
#if defined(__x86_64__)
    _mm_setcsr(mode);
#else
    (void)mode;
#endif
}

/// Flush-to-zero (results) and denormals-are-zero (inputs) on this thread: subnormal floats cost 10-100x per
/// operation on x86, and the LSTM's weights and Adam's moments drift into that range late in training.
static inline void candlecast_flush_denormals(void) {
#if defined(__x86_64__)
    _mm_setcsr(_mm_getcsr() | 0x8040);
#endif
}

char *openblas_get_corename(void);
#endif
