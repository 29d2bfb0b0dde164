// kiln as a library: the one header a program that builds, loads, trains or runs a model
// includes (`#include <kiln/kiln.h>`, with `pkg-config --cflags kiln` or CMake's kiln::kiln).
// These headers are kiln's stable API (docs/embedding.md says what that promises); they need
// only the C++20 standard library: oneDNN, OpenMP and the rest stay inside libkiln.
// The other installed headers (kiln/aws, data, image, serve, train, dist, and the io formats
// not listed here) are included one by one and are not yet stable.
#pragma once

#include "kiln/core/error.h"
#include "kiln/core/version.h"
#include "kiln/engine/cpu.h"
#include "kiln/engine/ops.h"
#include "kiln/engine/sgd.h"
#include "kiln/engine/tensor.h"
#include "kiln/io/array.h"
#include "kiln/io/npy.h"
#include "kiln/io/pth.h"
#include "kiln/io/safetensors.h"
#include "kiln/io/weights.h"
#include "kiln/layers/batch_norm.h"
#include "kiln/layers/conv2d.h"
#include "kiln/layers/init.h"
#include "kiln/layers/linear.h"
#include "kiln/layers/module.h"
#include "kiln/models/argmax.h"
#include "kiln/models/classifier.h"
#include "kiln/models/model_dir.h"
#include "kiln/models/resnet.h"
