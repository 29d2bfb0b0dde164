// ImageNet-pretrained ResNet weights as torchvision publishes them (`resnet34(pretrained=True)`:
// the IMAGENET1K_V1 files), fetched over verified HTTPS from the address torchvision uses and
// cached where torch hub caches them ($TORCH_HOME/hub/checkpoints, TORCH_HOME defaulting to
// $XDG_CACHE_HOME/torch, then ~/.cache/torch), so a machine that already has them downloads
// nothing and PyTorch and kiln share one copy. A file is accepted only when its SHA-256 starts
// with the hex its name carries ("resnet34-b627a593.pth"), as torch.hub's check_hash does.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace kiln::data {

struct PretrainedFile {
  std::string arch;  // "resnet34"
  std::string url;   // https://download.pytorch.org/models/resnet34-b627a593.pth
  std::string file_name() const;      // resnet34-b627a593.pth
  std::string sha256_prefix() const;  // b627a593
};

// The published file for an architecture; throws kiln::Error listing the known ones.
PretrainedFile imagenet_weights(const std::string& arch);
const std::vector<PretrainedFile>& all_imagenet_weights();

// The SHA-256 prefix a torchvision file name carries ("name-<hex>.ext"), "" when none.
std::string hash_prefix_of(const std::string& file_name);

std::filesystem::path torch_hub_checkpoints();  // $TORCH_HOME/hub/checkpoints

struct PretrainedOptions {
  std::string url;                    // "" = the published one; another https:// file name must carry its prefix
  std::filesystem::path cache_dir;    // "" = torch_hub_checkpoints()
  std::vector<std::filesystem::path> search;  // checked first (a SageMaker `pretrained` channel)
  std::string ca_bundle;              // "" = KILN_CA_BUNDLE, else the system's
  int timeout_s = 60;
  bool quiet = false;
};

// The path of verified weights: found in `search`, in the cache, or downloaded into the cache
// (atomically; a damaged download writes nothing). Throws with where to put the file by hand.
std::filesystem::path fetch_pretrained(const std::string& arch, const PretrainedOptions& opts);

}  // namespace kiln::data
