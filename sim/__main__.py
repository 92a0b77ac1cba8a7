import argparse
import os

import uvicorn

parser = argparse.ArgumentParser(description="Hypereal's upstream simulator.")
parser.add_argument("--host", default=os.environ.get("SIM_HOST", "127.0.0.1"))
parser.add_argument("--port", type=int, default=int(os.environ.get("SIM_PORT", "9100")))
args = parser.parse_args()
uvicorn.run("sim.app:app", host=args.host, port=args.port, log_level="warning", access_log=False)
