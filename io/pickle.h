// A RESTRICTED unpickler: reads Python pickles (protocols 0-5 opcodes) into a small tree of
// values without executing anything. Only an allow-list of globals may be referenced (see
// allowed_pickle_globals(); docs/io.md): what torch.save state_dicts and numpy / CIFAR pickles
// need. Any other global ("os system", "builtins eval", ...) is rejected with a kiln::Error when
// its GLOBAL opcode is read, before any call. Stack, memo, nesting and sizes are bounded.
// Values live in an arena owned by the Pickle document (cycles through the memo cannot leak).
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "kiln/io/array.h"

namespace kiln::io {

enum class PickleKind {
  none, boolean, integer, floating, str, bytes, list, tuple, dict, set,
  global,        // an allowed global itself, e.g. the class torch.FloatStorage
  ndarray,       // numpy array (numpy.core.multiarray._reconstruct + BUILD), in `array`
  dtype,         // numpy.dtype(...): `array.dtype` holds it
  storage,       // torch storage from a persistent id ('storage', type, key, location, numel)
  tensor,        // torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)
  object,        // a value of an allowed class we keep but do not interpret (e.g. torch.Size)
};

struct PickleValue {
  PickleKind kind = PickleKind::none;
  bool boolean = false;
  int64_t integer = 0;
  double floating = 0;
  std::string text;  // str (UTF-8), bytes, global "module.name", storage key
  std::vector<PickleValue*> items;                            // list, tuple, set
  std::vector<std::pair<PickleValue*, PickleValue*>> entries;  // dict, in insertion order
  NamedArray array;  // ndarray data; storage/tensor: dtype (and storage numel in shape[0])
  // tensor: the storage it views and the view's geometry (in elements)
  const PickleValue* storage = nullptr;
  int64_t storage_offset = 0;
  std::vector<int64_t> size, stride;

  const char* kind_name() const;
  bool is_text() const { return kind == PickleKind::str || kind == PickleKind::bytes; }
  // dict lookup by a str or bytes key (CIFAR's py2 pickles have bytes keys); nullptr if absent.
  const PickleValue* get(std::string_view key) const;
  // The same, throwing kiln::Error "<what>: missing key 'data'" when absent or not a dict.
  const PickleValue& at(std::string_view key, const std::string& what) const;
  int64_t as_int(const std::string& what) const;          // integer or bool
  std::string_view as_text(const std::string& what) const;  // str or bytes
  const NamedArray& as_ndarray(const std::string& what) const;
  const std::vector<PickleValue*>& as_sequence(const std::string& what) const;  // list or tuple
};

class Pickle {
 public:
  const PickleValue& root() const { return *root_; }

 private:
  friend class Unpickler;
  std::deque<PickleValue> arena_;
  PickleValue* root_ = nullptr;
};

struct UnpickleLimits {
  size_t max_stack = size_t(1) << 20;     // values on the stack (and mark depth)
  size_t max_memo = size_t(1) << 22;      // memo entries
  size_t max_values = size_t(1) << 22;    // values created in all (each ~250 bytes)
  // Memory budget: bytes of values, text, arrays and item lists made, in all. 0: 64 MiB plus 16x
  // the pickle's size (a legitimate pickle makes about 3x; a memoized value copied by an allowed
  // call over and over asks for far more and is stopped with an error saying by how much).
  uint64_t max_bytes = 0;
};

// `what` names the source in error messages.
Pickle unpickle(std::string_view bytes, const std::string& what, const UnpickleLimits& limits = {});

// "collections.OrderedDict", "torch._utils._rebuild_tensor_v2", ... (for docs and messages)
const std::vector<std::string>& allowed_pickle_globals();

}  // namespace kiln::io
