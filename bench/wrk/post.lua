-- Closed loop: every connection sends its next request as soon as the last one is answered.
dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")
