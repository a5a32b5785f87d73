// Open MPI's C interface for Swift. MPI's handles (MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM, ...)
// are macros over addresses of library symbols, which Swift cannot import: the functions
// below pass them, and each returns MPI's error code.
#include <mpi.h>

static inline int lmtrain_mpi_init_funneled(int *provided) {
    return MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, provided);
}

static inline int lmtrain_mpi_rank(int *rank) { return MPI_Comm_rank(MPI_COMM_WORLD, rank); }

static inline int lmtrain_mpi_size(int *size) { return MPI_Comm_size(MPI_COMM_WORLD, size); }

static inline int lmtrain_mpi_sum_floats(float *values, int count) {
    return MPI_Allreduce(MPI_IN_PLACE, values, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
}

static inline int lmtrain_mpi_sum_doubles(double *values, int count) {
    return MPI_Allreduce(MPI_IN_PLACE, values, count, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
}

static inline int lmtrain_mpi_max_doubles(double *values, int count) {
    return MPI_Allreduce(MPI_IN_PLACE, values, count, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
}

static inline int lmtrain_mpi_gather_floats(const float *values, int count, float *output) {
    return MPI_Allgather(values, count, MPI_FLOAT, output, count, MPI_FLOAT, MPI_COMM_WORLD);
}

static inline int lmtrain_mpi_broadcast_bytes(void *bytes, int count) {
    return MPI_Bcast(bytes, count, MPI_BYTE, 0, MPI_COMM_WORLD);
}

static inline int lmtrain_mpi_barrier(void) { return MPI_Barrier(MPI_COMM_WORLD); }

static inline int lmtrain_mpi_abort(int code) { return MPI_Abort(MPI_COMM_WORLD, code); }

static inline int lmtrain_mpi_finalize(void) { return MPI_Finalize(); }
