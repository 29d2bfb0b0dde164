// Writes the Python-made request fixtures (list in fixtures.h).
#include "fixtures.h"

#include <mutex>

#include "helpers.h"

namespace kiln::test {

namespace {

const char* kScript = R"PY(
import json, numpy as np
from PIL import Image
rng = np.random.default_rng(1234)
mean = np.array([0.507, 0.487, 0.441], dtype=np.float32).reshape(3, 1, 1)
std = np.array([0.267, 0.256, 0.276], dtype=np.float32).reshape(3, 1, 1)
def norm(hwc):  # (...,32,32,3) uint8 -> (...,3,32,32) float32, as ToTensor + Normalize
    x = np.moveaxis(hwc.astype(np.float32) / np.float32(255), -1, -3)
    return ((x - mean) / std).astype(np.float32)

np.save('batch4_f32.npy', rng.standard_normal((4, 3, 32, 32)).astype(np.float32))
u8 = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
np.save('batch4_u8.npy', u8)
np.save('batch4_u8_norm.npy', norm(u8))
np.save('single_f32.npy', rng.standard_normal((3, 32, 32)).astype(np.float32))
np.save('batch4_f64.npy', rng.standard_normal((4, 3, 32, 32)))
np.save('wrong_shape.npy', np.zeros((2, 3, 28, 28), np.float32))
np.save('wrong_dtype.npy', np.zeros((1, 3, 32, 32), np.int32))
np.save('empty.npy', np.zeros((0, 3, 32, 32), np.float32))
np.save('fortran.npy', np.asfortranarray(rng.standard_normal((1, 3, 32, 32)).astype(np.float32)))
bad = np.zeros((1, 3, 32, 32), np.float32); bad[0, 1, 2, 3] = np.nan
np.save('nan.npy', bad)

img = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
Image.fromarray(img).save('img32.png')
np.save('img32_norm.npy', norm(img))
yy, xx = np.mgrid[0:48, 0:64]
rgb = np.stack([xx * 4, yy * 5, (xx + yy) * 2], -1).astype(np.uint8)
rgba = np.concatenate([rgb, rng.integers(0, 256, (48, 64, 1), dtype=np.uint8)], -1)
Image.fromarray(rgba, 'RGBA').save('img64x48_rgba.png')
np.save('img64x48_pil.npy', np.asarray(Image.fromarray(rgb).resize((32, 32), Image.BILINEAR)))
yy, xx = np.mgrid[0:17, 0:20]
gray = (xx * 12 + yy * 3).astype(np.uint8)
Image.fromarray(gray, 'L').save('img20x17_gray.png')
up = np.asarray(Image.fromarray(gray, 'L').resize((32, 32), Image.BILINEAR))
np.save('img20x17_pil.npy', np.stack([up, up, up], -1))
Image.fromarray(img).save('img32.jpg', quality=95)
np.save('img32_jpg_pil.npy', np.asarray(Image.open('img32.jpg').convert('RGB')))

chw = rng.standard_normal((2, 3, 32, 32)).astype(np.float32)
json.dump({'instances': chw.tolist()}, open('batch2_chw.json', 'w'))
np.save('batch2_chw_expected.npy', chw)
hwc = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
json.dump({'instances': hwc.tolist()}, open('batch2_hwc.json', 'w'))
np.save('batch2_hwc_expected.npy', norm(hwc))
json.dump(chw.tolist(), open('bare_list.json', 'w'))
)PY";

}  // namespace

std::filesystem::path fixtures_dir() {
  static std::once_flag once;
  static std::filesystem::path dir;
  std::call_once(once, [] {
    dir = make_temp_dir("serve-fixtures");
    run_python(dir, "make_fixtures.py", kScript);
  });
  return dir;
}

}  // namespace kiln::test
