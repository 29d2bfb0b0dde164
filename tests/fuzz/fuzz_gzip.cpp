// gzip (io/gzip.h): members, header flags, bounded output (64 MiB here).
#include "fuzz.h"
#include "kiln/io/gzip.h"

KILN_FUZZ(input) { kiln::io::gunzip(input, "fuzz.gz", size_t(64) << 20); }
