// dist/mpi_abi.h against Open MPI's own <mpi.h> (libopenmpi-dev): every function type kiln calls
// through dlsym has the arity and argument types of MPI's declaration (handles may be void*,
// as Open MPI's handles are pointers), and the constants are MPI's. Compiled only when <mpi.h>
// is found; nothing here links or calls libmpi.
#include <doctest/doctest.h>

#define OMPI_SKIP_MPICXX 1  // the C API only
#include <mpi.h>

#include <type_traits>

#include "kiln/dist/mpi_abi.h"

namespace abi = kiln::dist::abi;

namespace {

template <class A, class B>
constexpr bool kCompatible = std::is_same_v<A, B> || (std::is_pointer_v<A> && std::is_pointer_v<B>);

template <class F, class G>
struct SameShape : std::false_type {};
template <class R, class... A, class... B>
  requires(sizeof...(A) == sizeof...(B))
struct SameShape<R (*)(A...), R (*)(B...)> : std::bool_constant<(kCompatible<A, B> && ...)> {};

static_assert(SameShape<decltype(&MPI_Init_thread), abi::Init_thread>::value);
static_assert(SameShape<decltype(&MPI_Finalize), abi::Finalize>::value);
static_assert(SameShape<decltype(&MPI_Comm_rank), abi::Comm_int>::value);
static_assert(SameShape<decltype(&MPI_Comm_size), abi::Comm_int>::value);
static_assert(SameShape<decltype(&MPI_Allreduce), abi::Allreduce>::value);
static_assert(SameShape<decltype(&MPI_Allgather), abi::Allgather>::value);
static_assert(SameShape<decltype(&MPI_Bcast), abi::Bcast>::value);
static_assert(SameShape<decltype(&MPI_Barrier), abi::Barrier>::value);
static_assert(SameShape<decltype(&MPI_Abort), abi::Abort>::value);
static_assert(SameShape<decltype(&MPI_Get_library_version), abi::Get_library_version>::value);
static_assert(std::is_pointer_v<MPI_Comm> && std::is_pointer_v<MPI_Datatype> && std::is_pointer_v<MPI_Op>);
static_assert(MPI_THREAD_MULTIPLE == abi::kThreadMultiple);
static_assert(MPI_MAX_LIBRARY_VERSION_STRING == abi::kMaxLibraryVersion);
// The shape check itself must be able to fail.
static_assert(!SameShape<decltype(&MPI_Bcast), abi::Barrier>::value);
static_assert(!SameShape<int (*)(int), int (*)(double)>::value);

}  // namespace

TEST_CASE("mpi abi: MPI_IN_PLACE is kiln's kInPlace") { CHECK(MPI_IN_PLACE == abi::kInPlace); }
