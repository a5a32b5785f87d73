// OpenBLAS's CBLAS interface (Debian libopenblas-dev), including openblas_set_num_threads.
#include <cblas.h>

// A read prefetch hint for the fast-weight backward passes, which walk per-step matrices
// backwards in time (Swift has no prefetch of its own).
static inline void lmtrain_prefetch(const void *address) { __builtin_prefetch(address, 0, 3); }
