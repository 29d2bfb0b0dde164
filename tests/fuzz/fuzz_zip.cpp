// The zip reader (io/zip.h): the central directory, then every entry read (CRC, inflate).
#include <string>

#include "fuzz.h"
#include "kiln/io/zip.h"

KILN_FUZZ(input) {
  kiln::io::ZipReader zip(input, "fuzz.zip");
  for (const kiln::io::ZipEntry& e : zip.entries()) {
    std::string scratch;
    zip.read(e, scratch, uint64_t(64) << 20);
  }
}
