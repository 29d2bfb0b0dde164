// The image's optional MPI layer (`kiln image build --mpi`): what a SageMaker job on several
// instances needs beyond kiln (dist/launcher.h): Open MPI (mpirun, orted, libmpi.so.40, which
// kiln dlopen()s, its plugins and help files), OpenSSH (sshd, ssh, ssh-keygen), /bin/sh (sshd
// runs orted through root's shell), sshd's /run/sshd, and the key pair every host trusts at
// /etc/kiln/ssh. All taken from this machine (Debian's openmpi-bin and openssh-server), each
// program with the libraries the dynamic loader resolves for it.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "kiln/image/rootfs.h"

namespace kiln::image {

// `key_dir` holds id_ed25519 and id_ed25519.pub (the image's key). `libraries` gets every shared
// library added. Throws kiln::Error naming the missing program and the package to install.
Rootfs mpi_rootfs(const std::filesystem::path& key_dir, std::vector<std::string>* libraries);

}  // namespace kiln::image
