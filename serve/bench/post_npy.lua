-- wrk script: POST one NPY body (path in $KILN_BENCH_BODY) to /invocations, as the SageMaker
-- SDK's NumpySerializer does. Usage: KILN_BENCH_BODY=x.npy wrk -s post_npy.lua http://HOST:PORT/invocations
local f = assert(io.open(os.getenv("KILN_BENCH_BODY"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*all")
f:close()
wrk.headers["Content-Type"] = "application/x-npy"
wrk.headers["Accept"] = "application/x-npy"
