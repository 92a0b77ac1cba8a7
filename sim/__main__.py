"""``python -m sim [--host H] [--port P]`` (or SIM_HOST / SIM_PORT): serve the simulator with uvicorn."""

import argparse
import os

import uvicorn

parser = argparse.ArgumentParser(description="Hypereal's upstream provider simulator.")
parser.add_argument("--host", default=os.environ.get("SIM_HOST", "127.0.0.1"))
parser.add_argument("--port", type=int, default=int(os.environ.get("SIM_PORT", "9100")))
parser.add_argument("--log-level", default="warning")
args = parser.parse_args()
# Hung requests (hang=1) would otherwise hold shutdown until their clients give up.
uvicorn.run(
    "sim.app:app",
    host=args.host,
    port=args.port,
    log_level=args.log_level,
    access_log=False,
    timeout_graceful_shutdown=1,
)
