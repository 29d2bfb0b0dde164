// torch.save checkpoints (io/pth.h): zip + restricted unpickler + tensor views.
#include "fuzz.h"
#include "kiln/io/pth.h"

KILN_FUZZ(input) { kiln::io::parse_pth(input, "fuzz.pth"); }
