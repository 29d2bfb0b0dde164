// Request bodies written once per test run by Python, the way clients write them: numpy's np.save
// (what SageMaker's NumpySerializer sends), PIL's PNG and JPEG encoders, and json.dumps; with the
// expected normalized inputs computed by numpy/PIL for comparison.
#pragma once

#include <filesystem>

namespace kiln::test {

// The directory holding the fixtures (created on first call):
//   batch4_f32.npy     float32 (4,3,32,32) normalized (the reference's test batch shape)
//   batch4_u8.npy      uint8 (4,32,32,3) raw pixels; batch4_u8_norm.npy its normalization (fp32)
//   single_f32.npy     float32 (3,32,32); batch4_f64.npy float64 (4,3,32,32)
//   wrong_shape.npy    float32 (2,3,28,28); wrong_dtype.npy int32 (1,3,32,32); empty.npy (0,3,32,32)
//   fortran.npy        float32 (1,3,32,32) in Fortran order; nan.npy with a NaN
//   img32.png / img32_norm.npy         32x32 RGB PNG and its normalization
//   img64x48_rgba.png / img64x48_pil.npy   RGBA, PIL's Image.resize((32,32), BILINEAR) of its RGB
//   img20x17_gray.png / img20x17_pil.npy   grayscale, enlarged the same way (expanded to RGB)
//   img32.jpg / img32_jpg_pil.npy      JPEG (quality 95) and PIL's decoding of it
//   batch2_chw.json, batch2_hwc.json, bare_list.json: instances (CHW normalized / HWC pixels)
//   batch2_chw_expected.npy, batch2_hwc_expected.npy: the float32 normalized inputs
std::filesystem::path fixtures_dir();

}  // namespace kiln::test
