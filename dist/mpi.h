// kiln's window on Open MPI: the few collectives data-parallel training needs, over
// MPI_COMM_WORLD. libmpi.so.40 (Debian 12's Open MPI 4.1) is dlopen()ed when a job is
// distributed, so `kiln train` on one instance neither loads nor needs MPI, and the kiln binary
// links nothing of it. Handles are Open MPI's ABI (pointers to its predefined objects, found by
// name); tests/dist checks the declarations against <mpi.h> when libopenmpi-dev is installed.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace kiln::dist {

// True when this process was started by Open MPI's mpirun/orted (OMPI_COMM_WORLD_SIZE is set).
bool launched_by_mpirun();

class Mpi {
 public:
  // dlopen()s libmpi (KILN_LIBMPI overrides the name), then MPI_Init_thread asking for
  // MPI_THREAD_MULTIPLE: the reducer's thread and the training thread both call MPI, and a
  // deadline abort may come from either. Throws kiln::Error when the library or a symbol is
  // missing (with the package to install) or the thread level is below what is needed.
  static Mpi& init();
  // The instance made by init(); asserts that there is one.
  static Mpi& get();
  static bool initialized();
  ~Mpi();
  Mpi(const Mpi&) = delete;
  Mpi& operator=(const Mpi&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  std::string library_version() const;

  // In place, MPI_SUM over every rank. Counts are split into chunks below INT_MAX elements.
  void allreduce_sum(float* data, int64_t n);
  void allreduce_sum(double* data, int64_t n);
  void allreduce_max(double* data, int64_t n);
  // out gets size() values: rank r's `value` at index r.
  void allgather(uint64_t value, uint64_t* out);
  void broadcast(void* data, int64_t bytes, int root);
  void barrier();
  // Every collective above is watched: one that has not returned after `seconds` (a rank
  // stuck or gone without mpirun noticing) prints what was waited for and aborts the job
  // (exit 124). 0 turns the watch off (the default).
  void set_deadline(double seconds);
  // MPI_Abort on MPI_COMM_WORLD: mpirun ends every rank. Does not return.
  [[noreturn]] void abort(int code);
  void finalize();  // at a clean end; the instance stays, unusable

  struct Watch;  // (implementation: the deadline watch)

 private:
  Mpi();
  struct Api;
  std::unique_ptr<Api> api_;
  std::unique_ptr<Watch> watch_;
  int rank_ = 0, size_ = 1;
  bool finalized_ = false;
};

}  // namespace kiln::dist
