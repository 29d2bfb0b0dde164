// The restricted unpickler (io/pickle.h) on arbitrary bytes, with its default limits.
#include "fuzz.h"
#include "kiln/io/pickle.h"

KILN_FUZZ(input) { kiln::io::unpickle(input, "fuzz.pkl"); }
