// safetensors (io/safetensors.h): header JSON, offsets, coverage of the data.
#include "fuzz.h"
#include "kiln/io/safetensors.h"

KILN_FUZZ(input) {
  kiln::io::Metadata meta;
  kiln::io::parse_safetensors(input, "fuzz.safetensors", &meta);
}
