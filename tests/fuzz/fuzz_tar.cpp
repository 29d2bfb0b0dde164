// tar (io/tar.h): ustar, GNU long names, pax records; symlinks kept.
#include "fuzz.h"
#include "kiln/io/tar.h"

KILN_FUZZ(input) { kiln::io::parse_tar(input, "fuzz.tar", true); }
