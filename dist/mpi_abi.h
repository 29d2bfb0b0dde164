// The slice of Open MPI 4.x's C ABI (libmpi.so.40) that dist/mpi.cpp calls through dlsym:
// function types with every handle as an opaque pointer (Open MPI's handles are pointers to
// structs), the names of the predefined objects behind MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM, ...,
// and the constants. tests/dist/test_mpi_abi.cpp compares each of these with <mpi.h>.
#pragma once

namespace kiln::dist::abi {

using Handle = void*;  // MPI_Comm, MPI_Datatype, MPI_Op

using Init_thread = int (*)(int* argc, char*** argv, int required, int* provided);
using Finalize = int (*)();
using Comm_int = int (*)(Handle comm, int* out);  // MPI_Comm_rank, MPI_Comm_size
using Allreduce = int (*)(const void* sendbuf, void* recvbuf, int count, Handle type, Handle op, Handle comm);
using Allgather = int (*)(const void* sendbuf, int sendcount, Handle sendtype, void* recvbuf, int recvcount,
                          Handle recvtype, Handle comm);
using Bcast = int (*)(void* buf, int count, Handle type, int root, Handle comm);
using Barrier = int (*)(Handle comm);
using Abort = int (*)(Handle comm, int code);
using Get_library_version = int (*)(char* version, int* len);

inline constexpr const char* kCommWorld = "ompi_mpi_comm_world";
inline constexpr const char* kFloat = "ompi_mpi_float";
inline constexpr const char* kDouble = "ompi_mpi_double";
inline constexpr const char* kUint64 = "ompi_mpi_uint64_t";
inline constexpr const char* kByte = "ompi_mpi_byte";
inline constexpr const char* kOpSum = "ompi_mpi_op_sum";
inline constexpr const char* kOpMax = "ompi_mpi_op_max";

inline void* const kInPlace = reinterpret_cast<void*>(1);  // MPI_IN_PLACE
inline constexpr int kThreadMultiple = 3;                   // MPI_THREAD_MULTIPLE
inline constexpr int kMaxLibraryVersion = 256;              // MPI_MAX_LIBRARY_VERSION_STRING

}  // namespace kiln::dist::abi
