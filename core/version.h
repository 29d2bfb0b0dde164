// kiln's version, for programs that embed the library. The macros are the version of the
// headers a program was compiled against; kiln::version() is the version of the libkiln it
// runs with (they differ when a program built against one release loads another's shared
// library). The root meson.build refuses to configure when these numbers differ from
// meson's project version, which is also kiln.pc's and kilnConfigVersion.cmake's.
#pragma once

#define KILN_VERSION_MAJOR 0
#define KILN_VERSION_MINOR 1
#define KILN_VERSION_PATCH 0
#define KILN_VERSION_STRING "0.1.0"

namespace kiln {

// "MAJOR.MINOR.PATCH" of the library itself (compiled into libkiln).
const char* version();

}  // namespace kiln
