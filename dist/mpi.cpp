// Open MPI through dlopen (see mpi.h). In Open MPI's ABI every handle (MPI_Comm, MPI_Datatype,
// MPI_Op) is a pointer to a predefined object exported by libmpi under a fixed name
// (MPI_COMM_WORLD is &ompi_mpi_comm_world), so the handles are those objects' addresses.
#include "kiln/dist/mpi.h"

#include <dlfcn.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <list>
#include <mutex>
#include <thread>

#include "kiln/core/error.h"
#include "kiln/dist/mpi_abi.h"

namespace kiln::dist {

bool launched_by_mpirun() {
  const char* s = std::getenv("OMPI_COMM_WORLD_SIZE");
  return s && *s;
}

struct Mpi::Api {
  void* lib = nullptr;
  abi::Init_thread init_thread = nullptr;
  abi::Finalize finalize = nullptr;
  abi::Comm_int comm_rank = nullptr, comm_size = nullptr;
  abi::Allreduce allreduce = nullptr;
  abi::Allgather allgather = nullptr;
  abi::Bcast bcast = nullptr;
  abi::Barrier barrier = nullptr;
  abi::Abort abort = nullptr;
  abi::Get_library_version get_library_version = nullptr;
  abi::Handle comm_world = nullptr, t_float = nullptr, t_double = nullptr, t_uint64 = nullptr, t_byte = nullptr,
              op_sum = nullptr, op_max = nullptr;

  void* sym(const char* name) const {
    void* p = dlsym(lib, name);
    if (!p)
      throw Error(std::string("libmpi has no symbol ") + name,
                  "kiln needs Open MPI 4.x (Debian 12: apt-get install openmpi-bin); set KILN_LIBMPI to its libmpi.so.40");
    return p;
  }
  template <class F>
  void load(F& f, const char* name) const {
    f = reinterpret_cast<F>(sym(name));
  }
};

// The deadline watch: each collective registers itself for its duration; a thread of its own
// looks at the oldest one twice a second.
struct Mpi::Watch {
  struct Call {
    const char* what;
    std::chrono::steady_clock::time_point deadline;
  };
  Mpi* owner = nullptr;
  std::mutex mu;
  std::condition_variable cv;
  std::list<Call> calls;
  double seconds = 0;
  bool stop = false;
  std::thread thread;

  void run() {
    std::unique_lock<std::mutex> lk(mu);
    while (!stop) {
      cv.wait_for(lk, std::chrono::milliseconds(500));
      const auto now = std::chrono::steady_clock::now();
      for (const Call& c : calls) {
        if (now < c.deadline) continue;
        std::fprintf(stderr,
                     "kiln: rank %d: %s did not complete within %.0f s: another rank is stuck, has died or cannot "
                     "be reached; ending the job\n---> HINT: see the other ranks' output; --dist-timeout sets "
                     "this limit\n",
                     owner->rank(), c.what, seconds);
        std::fflush(stderr);
        owner->abort(124);
      }
    }
  }
};

namespace {

// Registers one collective with the watch while it runs.
class Watched {
 public:
  Watched(Mpi::Watch* w, const char* what) : w_(w) {
    if (!w_) return;
    std::lock_guard<std::mutex> lock(w_->mu);
    if (w_->seconds <= 0) {
      w_ = nullptr;
      return;
    }
    it_ = w_->calls.insert(w_->calls.end(),
                           {what, std::chrono::steady_clock::now() + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                                                         std::chrono::duration<double>(w_->seconds))});
  }
  ~Watched() {
    if (!w_) return;
    std::lock_guard<std::mutex> lock(w_->mu);
    w_->calls.erase(it_);
  }

 private:
  Mpi::Watch* w_;
  std::list<Mpi::Watch::Call>::iterator it_;
};

std::unique_ptr<Mpi> g_mpi;
std::mutex g_init_mutex;

void check(int rc, const char* call) {
  // MPI_COMM_WORLD's default handler (MPI_ERRORS_ARE_FATAL) aborts the job before we get here;
  // this catches a handler changed by someone else.
  if (rc != 0) throw Error(std::string(call) + " failed with MPI error " + std::to_string(rc));
}

// MPI counts are int: long buffers go in chunks.
template <class F>
void chunked(int64_t n, F&& f) {
  constexpr int64_t kChunk = INT_MAX / 2;
  for (int64_t off = 0; off < n; off += kChunk) f(off, static_cast<int>(std::min(kChunk, n - off)));
}

}  // namespace

Mpi& Mpi::init() {
  std::lock_guard<std::mutex> lock(g_init_mutex);
  if (g_mpi) return *g_mpi;
  std::unique_ptr<Mpi> m(new Mpi());
  m->api_ = std::make_unique<Api>();
  Api& a = *m->api_;
  const char* name = std::getenv("KILN_LIBMPI");
  if (!name || !*name) name = "libmpi.so.40";
  // RTLD_GLOBAL: Open MPI's own plugins (mca_*.so, dlopen()ed by libmpi) resolve libmpi's and
  // libopen-pal's symbols through the global scope.
  a.lib = dlopen(name, RTLD_NOW | RTLD_GLOBAL);
  if (!a.lib)
    throw Error(std::string("cannot load ") + name + ": " + dlerror(),
                "a distributed job needs Open MPI 4.x: apt-get install openmpi-bin (Debian 12), "
                "or build the image with `kiln image build --mpi`");
  a.load(a.init_thread, "MPI_Init_thread");
  a.load(a.finalize, "MPI_Finalize");
  a.load(a.comm_rank, "MPI_Comm_rank");
  a.load(a.comm_size, "MPI_Comm_size");
  a.load(a.allreduce, "MPI_Allreduce");
  a.load(a.allgather, "MPI_Allgather");
  a.load(a.bcast, "MPI_Bcast");
  a.load(a.barrier, "MPI_Barrier");
  a.load(a.abort, "MPI_Abort");
  a.load(a.get_library_version, "MPI_Get_library_version");
  a.comm_world = a.sym(abi::kCommWorld);
  a.t_float = a.sym(abi::kFloat);
  a.t_double = a.sym(abi::kDouble);
  a.t_uint64 = a.sym(abi::kUint64);
  a.t_byte = a.sym(abi::kByte);
  a.op_sum = a.sym(abi::kOpSum);
  a.op_max = a.sym(abi::kOpMax);

  int provided = 0;
  check(a.init_thread(nullptr, nullptr, abi::kThreadMultiple, &provided), "MPI_Init_thread");
  if (provided < abi::kThreadMultiple)
    throw Error("Open MPI gives thread level " + std::to_string(provided) + ", kiln needs MPI_THREAD_MULTIPLE (" +
                    std::to_string(abi::kThreadMultiple) + ")",
                "use Debian's Open MPI 4.1 (built with thread support)");
  check(a.comm_rank(a.comm_world, &m->rank_), "MPI_Comm_rank");
  check(a.comm_size(a.comm_world, &m->size_), "MPI_Comm_size");
  g_mpi = std::move(m);
  return *g_mpi;
}

Mpi::Mpi() = default;

Mpi::~Mpi() {
  if (watch_ && watch_->thread.joinable()) {
    {
      std::lock_guard<std::mutex> lock(watch_->mu);
      watch_->stop = true;
    }
    watch_->cv.notify_all();
    watch_->thread.join();
  }
}

void Mpi::set_deadline(double seconds) {
  if (!watch_) {
    watch_ = std::make_unique<Watch>();
    watch_->owner = this;
    watch_->thread = std::thread([w = watch_.get()] { w->run(); });
  }
  std::lock_guard<std::mutex> lock(watch_->mu);
  watch_->seconds = seconds;
}

Mpi& Mpi::get() {
  KILN_ASSERT(g_mpi != nullptr, "Mpi::init() was not called");
  return *g_mpi;
}

bool Mpi::initialized() { return g_mpi != nullptr; }

std::string Mpi::library_version() const {
  char buf[abi::kMaxLibraryVersion] = {};
  int len = 0;
  api_->get_library_version(buf, &len);
  std::string v(buf, static_cast<size_t>(std::clamp(len, 0, abi::kMaxLibraryVersion - 1)));
  while (!v.empty() && (v.back() == '\n' || v.back() == '\0')) v.pop_back();
  return v.substr(0, v.find(','));
}

void Mpi::allreduce_sum(float* data, int64_t n) {
  Watched w(watch_.get(), "MPI_Allreduce of gradients");
  chunked(n, [&](int64_t off, int count) {
    check(api_->allreduce(abi::kInPlace, data + off, count, api_->t_float, api_->op_sum, api_->comm_world),
          "MPI_Allreduce");
  });
}

void Mpi::allreduce_sum(double* data, int64_t n) {
  Watched w(watch_.get(), "MPI_Allreduce of metrics");
  chunked(n, [&](int64_t off, int count) {
    check(api_->allreduce(abi::kInPlace, data + off, count, api_->t_double, api_->op_sum, api_->comm_world),
          "MPI_Allreduce");
  });
}

void Mpi::allreduce_max(double* data, int64_t n) {
  Watched w(watch_.get(), "MPI_Allreduce (max)");
  chunked(n, [&](int64_t off, int count) {
    check(api_->allreduce(abi::kInPlace, data + off, count, api_->t_double, api_->op_max, api_->comm_world),
          "MPI_Allreduce");
  });
}

void Mpi::allgather(uint64_t value, uint64_t* out) {
  Watched w(watch_.get(), "MPI_Allgather of weight checksums");
  check(api_->allgather(&value, 1, api_->t_uint64, out, 1, api_->t_uint64, api_->comm_world), "MPI_Allgather");
}

void Mpi::broadcast(void* data, int64_t bytes, int root) {
  Watched w(watch_.get(), "MPI_Bcast");
  chunked(bytes, [&](int64_t off, int count) {
    check(api_->bcast(static_cast<char*>(data) + off, count, api_->t_byte, root, api_->comm_world), "MPI_Bcast");
  });
}

void Mpi::barrier() {
  Watched w(watch_.get(), "MPI_Barrier");
  check(api_->barrier(api_->comm_world), "MPI_Barrier");
}

void Mpi::abort(int code) {
  api_->abort(api_->comm_world, code);
  std::_Exit(code);  // MPI_Abort does not return; this is for a library that does
}

void Mpi::finalize() {
  if (finalized_) return;
  finalized_ = true;
  check(api_->finalize(), "MPI_Finalize");
}

}  // namespace kiln::dist
