// NumPy's .npy format (versions 1.0, 2.0 and 3.0 read; 1.0 written, 2.0 when the header needs it).
// Little-endian or byte-order-free dtypes only (<f4 <f8 <f2 <i8 <i4 <i2 |i1 |u1 |b1), C order only:
// a Fortran-order or big-endian file is rejected with an error saying how to re-save it.
// Every size in the header is checked against the bytes actually present before anything is allocated.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

#include "kiln/io/array.h"

namespace kiln::io {

// `what` names the source in error messages (a file name, "request body", ...).
NamedArray parse_npy(std::string_view bytes, const std::string& what);
NamedArray read_npy(const std::filesystem::path& path);

std::string encode_npy(const NamedArray& array);
void write_npy(const std::filesystem::path& path, const NamedArray& array);  // atomic

// "<f4", "|u1", ... for a dtype, and back (throws kiln::Error naming `what` on an unknown descr).
std::string npy_descr(DType dtype);
DType dtype_from_npy_descr(const std::string& descr, const std::string& what);

}  // namespace kiln::io
