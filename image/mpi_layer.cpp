// The MPI layer (see mpi_layer.h).
#include "kiln/image/mpi_layer.h"

#include <set>

#include "kiln/core/atomic_file.h"
#include "kiln/core/error.h"

namespace kiln::image {

namespace fs = std::filesystem;

namespace {

// Debian 12's paths (openmpi-bin, libopenmpi3, libpmix2, openssh-server, openssh-client, dash).
const char* const kPrograms[][2] = {
    {"/usr/bin/mpirun", "openmpi-bin"}, {"/usr/bin/orterun", "openmpi-bin"}, {"/usr/bin/orted", "openmpi-bin"},
    {"/usr/sbin/sshd", "openssh-server"}, {"/usr/bin/ssh", "openssh-client"},
    {"/usr/bin/ssh-keygen", "openssh-client"}, {"/bin/sh", "dash"},
};
const char* const kLibmpi = "/usr/lib/x86_64-linux-gnu/libmpi.so.40";
// Folders taken whole: plugins (dlopen()ed by path), help texts, default parameters.
const char* const kTrees[] = {
    "/usr/lib/x86_64-linux-gnu/openmpi", "/usr/lib/x86_64-linux-gnu/pmix2/lib/pmix",
    "/usr/lib/x86_64-linux-gnu/pmix2/share", "/usr/share/openmpi", "/etc/openmpi",
};

bool is_shared_object(const fs::path& p) {
  const std::string n = p.filename().string();
  return n.size() > 3 && (n.ends_with(".so") || n.find(".so.") != std::string::npos);
}

}  // namespace

Rootfs mpi_rootfs(const fs::path& key_dir, std::vector<std::string>* libraries) {
  Rootfs r;
  std::set<std::string> libs;
  const std::string interp = elf_interpreter("/usr/sbin/sshd");
  auto add_with_libraries = [&](const std::string& path) {
    r.add_host_path(path);
    const fs::path real = fs::canonical(path);
    for (const std::string& lib : is_shared_object(real) ? loader_dependencies(real, interp) : loader_dependencies(real))
      if (libs.insert(lib).second) r.add_host_path(lib);
  };
  for (const auto& [program, package] : kPrograms) {
    std::error_code ec;
    if (!fs::exists(program, ec))
      throw Error(std::string("kiln image build --mpi: ") + program + " is missing",
                  std::string("apt-get install ") + package);
    add_with_libraries(program);
  }
  if (!fs::exists(kLibmpi)) throw Error(std::string("kiln image build --mpi: ") + kLibmpi + " is missing",
                                        "apt-get install openmpi-bin");
  add_with_libraries(kLibmpi);
  for (const char* tree : kTrees) {
    std::error_code ec;
    if (!fs::is_directory(tree, ec)) continue;
    for (const auto& e : fs::recursive_directory_iterator(tree)) {
      if (e.is_directory()) continue;
      // Plugins bring their own libraries; a plugin whose libraries are not installed here is
      // left out (Open MPI skips components it cannot open).
      if (e.is_regular_file() && is_shared_object(e.path())) {
        try {
          add_with_libraries(e.path().string());
        } catch (const Error&) {
        }
        continue;
      }
      r.add_host_path(e.path().string());
    }
  }
  r.add_dir("/run/sshd", 0755);  // sshd's privilege separation directory
  for (const char* name : {"id_ed25519", "id_ed25519.pub"}) {
    const fs::path key = key_dir / name;
    if (!fs::is_regular_file(key))
      throw Error("kiln image build --mpi: no " + key.string(),
                  "pass --ssh-key-dir with id_ed25519 and id_ed25519.pub (ssh-keygen -t ed25519 -N '' -f DIR/id_ed25519)");
    r.add_bytes(std::string("/etc/kiln/ssh/") + name, read_file(key), name == std::string("id_ed25519") ? 0600 : 0644);
  }
  if (libraries) libraries->assign(libs.begin(), libs.end());
  return r;
}

}  // namespace kiln::image
