// NumPy .npy (io/npy.h): magic, version, the header dict, data size.
#include "fuzz.h"
#include "kiln/io/npy.h"

KILN_FUZZ(input) { kiln::io::parse_npy(input, "fuzz.npy"); }
