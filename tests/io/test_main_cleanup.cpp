// Removes this run's work directory (generated fixtures, outputs) when the test program exits.
#include "fixtures.h"

static kiln_test::WorkDirCleanup cleanup;
