#!/usr/bin/env bash
# kiln as an installed library, as a user outside the tree sees it (docs/embedding.md):
#   1. `meson install --destdir` into a temporary folder; the files an install must have
#      (libkiln.so with its soname, libkiln.a, the headers, kiln.pc, the CMake package, kiln);
#   2. every header of the source tree is either installed or listed as internal, and no internal
#      one is installed; every installed header compiles on its own with -Werror, and all it
#      includes comes from the installed prefix or the C/C++ standard libraries (dpkg says which
#      package owns each file: libc6-dev, libstdc++-12-dev, linux-libc-dev, libgcc-12-dev);
#   3. the version: headers, library and kiln.pc all say meson's project version;
#   4. libkiln.so exports kiln's own names only (kiln.map): no httplib::, nlohmann::, dnnl:: or
#      std:: symbols, but the API (kiln::models::load_resnet) and kiln's typeinfo;
#   5. tools/examples/embed_resnet.cpp built out of the tree with pkg-config (shared and static)
#      and with CMake (kiln::kiln and kiln::kiln_static), each run and its output compared with
#      the in-tree example's, and each made to catch a kiln::IoError thrown inside the library.
# usage: check_install.sh BUILD_ROOT SOURCE_ROOT VERSION SOVERSION IN_TREE_EXAMPLE [INTERNAL_HEADER...]
set -euo pipefail
build=$1 src=$2 version=$3 soversion=$4 in_tree_example=$5
shift 5
internal=("$@")

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "check_install: FAILED: $*" >&2; exit 1; }
step() { echo "== $*"; }

step "meson install --destdir $tmp/stage"
meson install -C "$build" --no-rebuild --quiet --destdir "$tmp/stage" >"$tmp/install.log" 2>&1 ||
  { cat "$tmp/install.log"; fail "meson install"; }
# The install directories meson was configured with (any --prefix / --libdir works).
read -r prefix libdir includedir bindir < <(meson introspect "$build" --buildoptions | python3 -c '
import json, sys
o = {x["name"]: x["value"] for x in json.load(sys.stdin)}
print(*[o[k] for k in ("prefix", "libdir", "includedir", "bindir")])')
abs() { case $1 in /*) echo "$tmp/stage$1" ;; *) echo "$tmp/stage$prefix/$1" ;; esac; }
root=$tmp/stage$prefix lib=$(abs "$libdir") inc=$(abs "$includedir") bin=$(abs "$bindir")

step "installed files under $prefix"
for f in "$lib/libkiln.so.$version" "$lib/libkiln.a" "$inc/kiln/kiln.h" "$inc/kiln/core/version.h" \
         "$lib/pkgconfig/kiln.pc" "$lib/pkgconfig/kiln-static.pc" "$lib/cmake/kiln/kilnConfig.cmake" "$lib/cmake/kiln/kilnConfigVersion.cmake" \
         "$bin/kiln"; do
  [ -f "$f" ] || fail "missing ${f#"$tmp/stage"}"
done
for l in "libkiln.so.$soversion" libkiln.so; do
  [ "$(readlink -f "$lib/$l")" = "$lib/libkiln.so.$version" ] || fail "$l does not link to libkiln.so.$version"
done
soname=$(readelf -d "$lib/libkiln.so.$version" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ "$soname" = "libkiln.so.$soversion" ] || fail "soname is '$soname', expected libkiln.so.$soversion"
installed_version=$("$bin/kiln" version)
[ "$installed_version" = "kiln $version" ] || fail "installed kiln version: '$installed_version', expected 'kiln $version'"

step "libkiln.so exports kiln's API only"
# Demangled, without address and type: "kiln::...", "typeinfo for kiln::...", "vtable for kiln::...".
nm -D --defined-only -C "$lib/libkiln.so.$version" | cut -d' ' -f3- >"$tmp/exports.txt"
foreign=$(grep -E '(^|[ <,(])(httplib|nlohmann|dnnl)::' "$tmp/exports.txt" | grep -v '^kiln::' | head -5 || true)
[ -z "$foreign" ] || fail "libkiln.so exports other libraries' symbols (kiln.map): $foreign"
not_kiln=$(grep -Ev '^((typeinfo|typeinfo name|vtable|VTT|construction vtable|guard variable|TLS init function|TLS wrapper function) for |(non-virtual |virtual |covariant return )thunk to )?kiln::' "$tmp/exports.txt" | head -5 || true)
[ -z "$not_kiln" ] || fail "libkiln.so exports names outside kiln:: (kiln.map): $not_kiln"
for sym in 'kiln::models::load_resnet(std::filesystem::__cxx11::path const&, kiln::models::LoadResNetOptions const&)' \
           'typeinfo for kiln::IoError' 'typeinfo for kiln::FormatError' 'vtable for kiln::models::ResNet'; do
  grep -qxF "$sym" "$tmp/exports.txt" || fail "libkiln.so does not export $sym"
done
echo "$(wc -l <"$tmp/exports.txt") symbols exported, all kiln::"

step "public and internal headers"
# Every header of a library folder is installed as kiln/<folder>/<file>.h or is internal.
(cd "$src" && ls core/*.h io/*.h engine/*.h layers/*.h models/*.h aws/*.h data/*.h image/*.h \
   serve/*.h train/*.h dist/*.h) | sort >"$tmp/source.txt"
(cd "$inc/kiln" && find . -name '*.h' ! -path ./kiln.h | sed 's|^\./||') | sort >"$tmp/installed.txt"
printf '%s\n' "${internal[@]}" | sort >"$tmp/internal.txt"
leaked=$(comm -12 "$tmp/installed.txt" "$tmp/internal.txt")
[ -z "$leaked" ] || fail "internal headers installed: $leaked"
unlisted=$(comm -23 "$tmp/source.txt" <(sort -u "$tmp/installed.txt" "$tmp/internal.txt"))
[ -z "$unlisted" ] || fail "headers neither installed nor listed in kiln_internal_headers (<area>/meson.build): $unlisted"
stray=$(comm -13 "$tmp/source.txt" "$tmp/installed.txt")
[ -z "$stray" ] || fail "installed headers that are not in the tree: $stray"
[ "$(wc -l <"$tmp/installed.txt")" -gt 40 ] || fail "only $(wc -l <"$tmp/installed.txt") headers installed"

step "each installed header compiles alone ($(($(wc -l <"$tmp/installed.txt") + 1)) headers)"
mkdir -p "$tmp/hdr"
compile_header() {  # header relative to kiln/; writes its dependency list
  local h=$1 out=$tmp/hdr/${1//\//_}
  printf '#include <kiln/%s>\n' "$h" >"$out.cpp"
  c++ -std=c++20 -Wall -Wextra -Wpedantic -Werror -fsyntax-only -I"$inc" -MD -MF "$out.d" "$out.cpp" \
    2>"$out.err" || { echo "kiln/$h:"; cat "$out.err"; return 1; }
}
export -f compile_header
export tmp inc
{ echo kiln.h; cat "$tmp/installed.txt"; } | xargs -P "$(nproc)" -I{} bash -c 'compile_header {}' ||
  fail "an installed header does not compile on its own"
# What they include: the prefix, or files of the C and C++ standard libraries' packages.
sed -e 's/^[^:]*://' -e 's/\\$//' "$tmp"/hdr/*.d | tr -s ' ' '\n' | grep . | grep -v "^$tmp/" |
  xargs -r realpath | sort -u >"$tmp/system-headers.txt"
[ -s "$tmp/system-headers.txt" ] || fail "no standard headers seen (dependency files empty?)"
dpkg -S $(cat "$tmp/system-headers.txt") 2>/dev/null | sed 's/: .*//' | tr -d ' ' | tr ',' '\n' | sort -u >"$tmp/packages.txt" || true
others=$(grep -Evx 'libc6-dev(:amd64)?|libstdc\+\+-[0-9]+-dev(:amd64)?|linux-libc-dev(:amd64)?|libgcc-[0-9]+-dev(:amd64)?' "$tmp/packages.txt" || true)
[ -z "$others" ] || fail "installed headers include files of other packages: $others"
owned=$(dpkg -S $(cat "$tmp/system-headers.txt") 2>/dev/null | sed 's/^[^:]*: //' | sort -u | wc -l)
[ "$owned" -eq "$(wc -l <"$tmp/system-headers.txt")" ] ||
  fail "installed headers include files no package owns: $(dpkg -S $(cat "$tmp/system-headers.txt") 2>&1 >/dev/null | head -3)"

step "pkg-config"
export PKG_CONFIG_PATH=$lib/pkgconfig
# kiln.pc is relocatable (prefix=${pcfiledir}/...: pkgconfig.relocatable, the default of a new
# build dir); one configured before that default names $prefix, which lies under the stage here.
pc_args=()
grep -q '^prefix=${pcfiledir}/' "$lib/pkgconfig/kiln.pc" || pc_args=(--define-variable=prefix="$root")
pkg-config() { command pkg-config "${pc_args[@]}" "$@"; }
for pc in kiln kiln-static; do
  [ "$(pkg-config --modversion $pc)" = "$version" ] || fail "$pc.pc version $(pkg-config --modversion $pc)"
done
cat >"$tmp/version.cpp" <<'EOF'
#include <cstdio>
#include <kiln/kiln.h>
int main() { std::printf("%s %s %d.%d.%d\n", KILN_VERSION_STRING, kiln::version(), KILN_VERSION_MAJOR,
                         KILN_VERSION_MINOR, KILN_VERSION_PATCH); }
EOF
# The README's line, word for word (the shared library).
c++ "$tmp/version.cpp" -o "$tmp/version" $(pkg-config --cflags --libs kiln)
export LD_LIBRARY_PATH=$lib
[ "$("$tmp/version")" = "$version $version $version" ] || fail "versions: $("$tmp/version")"

# The example's output (random init, 3 steps), in the tree (static area libraries): every
# out-of-tree build must print the same.
"$in_tree_example" >"$tmp/expected.txt" 2>"$tmp/expected.err" ||
  { cat "$tmp/expected.err"; fail "the in-tree example failed"; }
grep -q loss "$tmp/expected.txt" || fail "the in-tree example printed no loss: $(cat "$tmp/expected.txt")"
check_example() {  # binary, how it was built, "shared"|"static"
  local exe=$1 how=$2 kind=$3
  # Outputs captured first: with pipefail, `ldd | grep -q` fails when grep's early exit kills ldd
  # with SIGPIPE (seen once).
  local dynamic deps
  dynamic=$(readelf -d "$exe") deps=$(ldd "$exe")
  if grep -q "NEEDED.*\[libkiln.so.$soversion\]" <<<"$dynamic"; then
    [ "$kind" = shared ] || fail "$how: linked libkiln.so, expected libkiln.a"
    grep -q "libkiln.so.$soversion => $lib/" <<<"$deps" || fail "$how: libkiln.so not from the install: $(grep kiln <<<"$deps")"
  else
    [ "$kind" = static ] || fail "$how: does not link libkiln.so.$soversion"
  fi
  "$exe" >"$tmp/got.txt" 2>"$tmp/got.err" || { cat "$tmp/got.err"; fail "$how: the example failed"; }
  diff "$tmp/expected.txt" "$tmp/got.txt" || fail "$how: output differs from the in-tree example's"
  # A kiln::IoError thrown inside libkiln is caught by type in the program: exit 2, the example's
  # IoError handler (1 would be its kiln::Error one, 134 std::terminate).
  local rc=0
  "$exe" "$tmp/absent.pth" 1 >"$tmp/got.txt" 2>"$tmp/got.err" || rc=$?
  [ "$rc" = 2 ] && grep -q "absent.pth" "$tmp/got.err" ||
    fail "$how: a missing weights file gave exit $rc, expected 2 (kiln::IoError caught): $(cat "$tmp/got.err")"
  echo "$how: same output as the in-tree example ($(wc -l <"$tmp/expected.txt") lines); kiln::IoError caught"
}
example=$src/tools/examples/embed_resnet.cpp

step "embed_resnet with pkg-config, shared"
c++ "$example" -o "$tmp/embed_shared" $(pkg-config --cflags --libs kiln)
check_example "$tmp/embed_shared" "pkg-config (shared)" shared

step "embed_resnet with pkg-config, static"
c++ "$example" -o "$tmp/embed_static" $(pkg-config --static --cflags --libs kiln-static)
check_example "$tmp/embed_static" "pkg-config (static)" static

step "embed_resnet with CMake (find_package(kiln), kiln::kiln)"
mkdir -p "$tmp/cmake-app"
cp "$example" "$tmp/cmake-app/app.cpp"
cat >"$tmp/cmake-app/CMakeLists.txt" <<'EOF'
cmake_minimum_required(VERSION 3.20)
project(app CXX)
find_package(kiln 0.1 REQUIRED)
add_executable(app app.cpp)
target_link_libraries(app PRIVATE kiln::kiln)
EOF
cmake -S "$tmp/cmake-app" -B "$tmp/cmake-build" -DCMAKE_PREFIX_PATH="$root" >"$tmp/cmake.log" 2>&1 ||
  { cat "$tmp/cmake.log"; fail "cmake configure"; }
grep -qx "kiln_DIR:PATH=$lib/cmake/kiln" "$tmp/cmake-build/CMakeCache.txt" ||
  fail "CMake found another kiln: $(grep kiln_DIR "$tmp/cmake-build/CMakeCache.txt")"
cmake --build "$tmp/cmake-build" >"$tmp/cmake-build.log" 2>&1 || { cat "$tmp/cmake-build.log"; fail "cmake build"; }
unset LD_LIBRARY_PATH  # CMake's build tree has an rpath to the library it linked
check_example "$tmp/cmake-build/app" "CMake (kiln::kiln)" shared

step "embed_resnet with CMake (find_package(kiln), kiln::kiln_static)"
mkdir -p "$tmp/cmake-static-app"
cp "$example" "$tmp/cmake-static-app/app.cpp"
cat >"$tmp/cmake-static-app/CMakeLists.txt" <<'EOF'
cmake_minimum_required(VERSION 3.20)
project(app CXX)
find_package(kiln 0.1 REQUIRED)
if(NOT TARGET kiln::kiln_static)
  message(FATAL_ERROR "no kiln::kiln_static; missing: ${kiln_STATIC_MISSING}")
endif()
add_executable(app app.cpp)
target_link_libraries(app PRIVATE kiln::kiln_static)
EOF
cmake -S "$tmp/cmake-static-app" -B "$tmp/cmake-static-build" -DCMAKE_PREFIX_PATH="$root" >"$tmp/cmake.log" 2>&1 ||
  { cat "$tmp/cmake.log"; fail "cmake configure (kiln::kiln_static)"; }
cmake --build "$tmp/cmake-static-build" >"$tmp/cmake-build.log" 2>&1 ||
  { cat "$tmp/cmake-build.log"; fail "cmake build (kiln::kiln_static)"; }
check_example "$tmp/cmake-static-build/app" "CMake (kiln::kiln_static)" static
echo "check_install: all checks passed"
